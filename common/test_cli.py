"""Command-line glue shared by the test.py scripts: flags, settings, loading networks."""

import argparse
from pathlib import Path

from common.cli import HelpFormatter, add_config_flags, add_folder_flag, add_output_flags
from common.config import load_config, override, stage_config


def testing_parser(description):
    p = argparse.ArgumentParser(description=description,
                                formatter_class=HelpFormatter)
    add_folder_flag(p, "input_folder", "input folder: image_list.txt (+ label_list.txt to evaluate)",
                    required=True)
    add_folder_flag(p, "output_folder", "where the per-frame .npy files go", required=True)
    add_folder_flag(p, "model_folder", "checkpoint folder: this project's, or an original TF1 "
                    "release (model.ckpt-N)", required=True)
    add_config_flags(p)
    p.add_argument("--checkpoint", type=int, metavar="N",
                   help="test the checkpoint of step N (ckpt-N or model.ckpt-N; default: the newest)")
    p.add_argument("--batch_size", type=int, default=4, help="frames per network pass")
    p.add_argument("--sequence_length", type=int, help="frames per sequence (default: parent folder)")
    p.add_argument("--image_list", metavar="FILE",
                   help="the images to test, one per line, instead of IN/image_list.txt (output k = line k "
                        "of FILE); IN's labels and poses follow them when every image is a line of IN's list")
    add_output_flags(p)
    return p


def load_test_folder(args, sequence_length):
    """The test input folder (with --image_list, its images) and its run.json signature entries."""
    from common.data.scene import load_input_folder

    data = load_input_folder(args.input_folder, sequence_length, require_labels=False,
                             image_list=args.image_list)
    signature = {"input_folder": str(Path(args.input_folder).resolve())}
    if args.image_list:
        signature["image_list"] = str(Path(args.image_list).resolve())
    return data, signature


def test_settings(args, stage):
    cfg = stage_config(load_config(args.scene, args.config), stage)
    return override(cfg, sequence_length=args.sequence_length)


def build_networks(model_folder, builders, cfg_full=None, step=None):
    """Builds and loads networks from a model folder: this project's or an original TF1 release.

    `builders`: {name ('scoordnet', 'oflownet'): callable(width) returning the built network};
    widths come from the folder's model.json (this project) or are 1.0 (original release).
    `step`: the checkpoint of that step (default: the newest). Returns ({name: net}, checkpoint path).
    """
    from common.checkpoints import load_networks, network_widths  # TensorFlow: not for --help

    cfg_full = cfg_full or load_config()
    widths = network_widths(model_folder, {n: stage_config(cfg_full, n) for n in builders})
    nets = {name: build(widths.get(name, 1.0)) for name, build in builders.items()}
    _, path = load_networks(model_folder, nets, step=step)
    print(f"weights: {path}")
    return nets, str(Path(path).resolve())
