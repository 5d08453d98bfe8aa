"""Shared command-line plumbing: original flag spellings, config lookup, one-line errors."""

import argparse
import os
import sys

from common.errors import InputError, OutputError

STRATEGIES = ("default", "mirrored", "multiworker")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help with the defaults shown, except for on/off switches (off unless given), flags
    without one (None: taken from the config or the data) and help that states its own.
    A description or epilog of several lines (a module docstring) keeps its line breaks."""

    def _fill_text(self, text, width, indent):
        if "\n" not in text.strip():
            return super()._fill_text(text, width, indent)
        import textwrap

        return "\n".join(indent + line for line in textwrap.dedent(text).strip("\n").splitlines())

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


def add_output_flags(parser, quiet=True, progress=True):
    """The two switches of every script with per-item output: --quiet (no per-frame lines) and
    --no_progress (no progress bars; args.progress False)."""
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no per-frame lines")
    if progress:
        parser.add_argument("--no_progress", dest="progress", action="store_false", help="no progress bars")


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
    from common.locks import release_all

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


# TensorFlow's start-up lines that say nothing about this run (matched anywhere in a line).
_STARTUP_NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
    "rebuild TensorFlow with the appropriate compiler flags",
)
_NO_GPU_NOISE = ("failed call to cuInit",)  # only noise where there is no GPU to initialize


def quiet_tensorflow(devices=False):
    """Imports TensorFlow without its C++ start-up chatter; with `devices`, prints the device line.

    TF 2.21 prints some lines before its log level applies, so stderr goes to a temporary file
    while importing; afterwards every captured line but the known start-up chatter (oneDNN,
    CUDA stub, CPU features, and cuInit where nvidia-smi sees no GPU) is printed again, so a real
    error (a CUDA library that does not load, a failed import) still shows. The default log level
    is 2: TensorFlow's errors show, its info and warnings do not. KFNET_TF_VERBOSE=1 keeps all.
    """
    verbose = bool(os.environ.get("KFNET_TF_VERBOSE"))
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not verbose:
        _import_capturing_stderr()
    if devices:
        report_devices()


def _import_capturing_stderr():
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the cuInit message comes now, while captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            noise = _STARTUP_NOISE + (() if nvidia_gpus() else _NO_GPU_NOISE)
            kept = [line for line in text.splitlines()
                    if line.strip() and not any(n in line for n in noise)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def nvidia_gpus():
    """Names of the GPUs `nvidia-smi -L` lists ([] without nvidia-smi or a driver)."""
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(":", 1)[1].split("(UUID")[0].strip()
            for line in out.splitlines() if line.startswith("GPU ") and ":" in line]


def _visible_count(listed):
    """How many of nvidia-smi's GPUs CUDA_VISIBLE_DEVICES leaves to TensorFlow."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return listed
    ids = [v for v in visible.split(",") if v.strip()]
    if ids and ids[0].strip() == "-1":
        return 0
    return min(listed, len(ids))


def device_line():
    """'devices: CPU, GPU:0 (NVIDIA A100-SXM4-40GB)': the physical devices TensorFlow uses."""
    import tensorflow as tf

    names = []
    for d in tf.config.list_physical_devices():
        name = d.name.replace("/physical_device:", "")
        if d.device_type == "GPU":
            try:
                detail = tf.config.experimental.get_device_details(d).get("device_name")
            except (ValueError, RuntimeError):
                detail = None
            if detail:
                name += f" ({detail})"
        if not d.device_type.startswith("XLA"):
            names.append(name)
    return "devices: " + ", ".join(names)


def report_devices():
    """Prints the device line; warns when nvidia-smi sees GPUs that TensorFlow does not."""
    import tensorflow as tf

    print(device_line(), flush=True)
    expected = _visible_count(len(nvidia_gpus()))
    seen = len(tf.config.list_physical_devices("GPU"))
    if seen < expected:
        print(f"warning: nvidia-smi lists {expected} GPU(s) visible to this process but TensorFlow "
              f"sees {seen}: {'this runs on the CPU' if seen == 0 else 'some GPUs stay idle'}. "
              "Install TensorFlow with its CUDA libraries (pip install -r requirements-gpu.txt, or "
              "pip install -e .[gpu]); KFNET_TF_VERBOSE=1 shows why TensorFlow found none",
              file=sys.stderr, flush=True)
