"""Shared command-line plumbing: original flag spellings, config lookup, one-line errors."""

import argparse
import os
import sys

from kfnet.errors import InputError, OutputError

STRATEGIES = ("default", "mirrored", "multiworker")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with the defaults shown, except for on/off switches (off unless given), flags
    without one (None: taken from the config or the data) and help that states its own."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.nargs == 0 or action.default is None or "default" in text:
            return text
        return super()._get_help_string(action)


def add_folder_flag(parser, name, help, required=False):
    """Adds --name plus the original project's spelling without underscores (--inputfolder)."""
    flags = ["--" + name]
    alias = "--" + name.replace("_", "")
    if alias != flags[0]:
        flags.append(alias)
    parser.add_argument(*flags, dest=name, required=required, help=help)


def add_config_flags(parser, scene_required=False):
    """--scene NAME (a file configs/**/NAME.yaml) or --config FILE.yaml."""
    group = parser.add_mutually_exclusive_group(required=scene_required)
    group.add_argument("--scene", help="scene settings by name, looked up in configs/ "
                       "(e.g. chess, fire, synthetic)")
    group.add_argument("--config", help="scene settings from this YAML file")


def parse_size(text):
    """'160x120' → (width, height)."""
    try:
        w, h = text.lower().split("x")
        w, h = int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got '{text}'") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got '{text}'")
    return w, h


def run(main, argv=None):
    """Runs main(argv); input errors become one line on stderr and exit code 2 (files that
    cannot be written: code 1). The folder locks main took are released when it ends."""
    from kfnet.locks import release_all

    try:
        code = main(argv)
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        release_all()
    sys.exit(code or 0)


def quiet_tensorflow():
    """Imports TensorFlow without its C++ start-up chatter (oneDNN, CUDA-stub and cuInit lines).

    TF 2.21 prints some of these before its log level applies, so stderr is pointed at
    /dev/null while importing; KFNET_TF_VERBOSE=1 keeps everything.
    """
    if os.environ.get("KFNET_TF_VERBOSE"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # triggers the cuInit message now, while muted
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
