"""Command-line glue shared by the test.py scripts: flags, settings, loading networks."""

import argparse
import time
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
    p.add_argument("--mixed_precision", action="store_true",
                   help="run the networks in bfloat16 (CPU) or float16 (GPU); their outputs, the filter "
                        "and the written maps stay float32")
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


def build_networks(model_folder, builders, cfg_full=None, step=None, mixed_precision=False):
    """Builds and loads networks from a model folder: this project's or an original TF1 release.

    `builders`: {name ('scoordnet', 'oflownet'): callable(width) returning the built network};
    widths come from the folder's model.json (this project) or are 1.0 (original release).
    `step`: the checkpoint of that step (default: the newest). `mixed_precision`: the networks
    compute in bfloat16 / float16 (variables and outputs stay float32).
    Returns ({name: net}, checkpoint path).
    """
    from common.checkpoints import load_networks, network_widths  # TensorFlow: not for --help
    from common.distribute import precision_policy

    cfg_full = cfg_full or load_config()
    widths = network_widths(model_folder, {n: stage_config(cfg_full, n) for n in builders})
    with precision_policy(mixed_precision):
        nets = {name: build(widths.get(name, 1.0)) for name, build in builders.items()}
    _, path = load_networks(model_folder, nets, step=step)
    print(f"weights: {path}")
    return nets, str(Path(path).resolve())


class FrameClock:
    """Speed of a test loop: its first batch (graph tracing, first reads) apart from the frames after it."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.first = self.end = None
        self.cpu_first = self.cpu_end = None
        self.frames = self.total = 0

    def tick(self, frames):
        """After a batch of `frames` computed frames."""
        now = time.perf_counter()
        self.total += frames
        if self.first is None:
            if frames:
                self.first = now
                self.cpu_first = time.process_time()
        else:
            self.frames += frames

    def stop(self):
        """At the end (after the last file is written)."""
        self.end = time.perf_counter()
        self.cpu_end = time.process_time()

    def summary(self):
        """{startup_s, frames, seconds, frames_per_second (after the first batch), cpu_s and
        frames_per_cpu_second (CPU time of the whole process, every thread, after the first batch:
        what the other jobs of a shared machine change least), total_frames, total_s}."""
        end = self.end or time.perf_counter()
        first = self.first or end
        seconds = end - first
        cpu_end = self.cpu_end if self.cpu_end is not None else time.process_time()
        cpu = cpu_end - (self.cpu_first if self.cpu_first is not None else cpu_end)
        return {"startup_s": first - self.t0, "frames": self.frames, "seconds": seconds,
                "frames_per_second": self.frames / seconds if self.frames and seconds > 0 else None,
                "cpu_s": cpu, "frames_per_cpu_second": self.frames / cpu if self.frames and cpu > 0 else None,
                "total_frames": self.total, "total_s": end - self.t0}

    def line(self):
        s = self.summary()
        if not s["frames_per_second"]:
            return ""
        return (f" ({s['frames_per_second']:.2f} frames/s after a first batch of "
                f"{s['startup_s']:.1f} s)")
