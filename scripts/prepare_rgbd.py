"""Turns one's own RGB-D captures into the input folders of docs/reference.md §2 (OUT/train/, OUT/test/).

Each sequence folder holds rgb/NAME.png|jpg, depth/NAME.png (uint16, --depth_scale units per
metre, 0 invalid, registered to the colour image and of its size) and poses/NAME.txt (4×4
camera-to-world, metres); the intrinsics `fx fy cx cy` come from --intrinsics FILE or the
first sequence's intrinsics.txt.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

from common.cli import HelpFormatter, add_folder_flag, add_output_flags, run
from common.data.prepare import Camera
from common.data.raw import generic_sequence, read_intrinsics
from common.data.rgbd import prepare_frames, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--train", nargs="+", required=True, metavar="SEQ",
                        help="training sequence folders")
    parser.add_argument("--test", nargs="+", required=True, metavar="SEQ",
                        help="test sequence folders")
    add_folder_flag(parser, "output_folder", required=True,
                    help="where the <split>/ input folders are written")
    parser.add_argument("--intrinsics", help="file with fx fy cx cy (default: "
                        "intrinsics.txt in the first training sequence)")
    parser.add_argument("--depth_scale", type=float, default=1000.0,
                        help="depth PNG units per metre (1000: millimetres)")
    parser.add_argument("--overwrite", action="store_true", help="recompute existing labels")
    add_output_flags(parser, quiet=False)
    args = parser.parse_args(argv)

    fx, fy, cx, cy = read_intrinsics(args.intrinsics or Path(args.train[0]) / "intrinsics.txt")
    camera = Camera(fx, fy, cx, cy, fx)
    sets = {"train": [f for s in args.train for f in generic_sequence(s)],
            "test": [f for s in args.test for f in generic_sequence(s)]}
    source = ";".join(str(Path(f).resolve()) for f in args.train + args.test)
    stats = prepare_frames(sets, args.output_folder, camera, args.depth_scale, source=source,
                           overwrite=args.overwrite, progress=args.progress)
    report(stats, args.output_folder)
    return 0


if __name__ == "__main__":
    run(main)
