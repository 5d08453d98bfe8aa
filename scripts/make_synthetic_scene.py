"""Renders a built-in synthetic room in the 7-Scenes layout (seq-XX/frame-NNNNNN.*, split files).

--room table (default): every sequence walks the same loop around a table in the middle of a
4 m × 3 m room, looking inwards, with its own hand-held noise; the last --test_sequences sequences
form the test split.
--room studio: a furnished 5.6 m × 4 m room textured with scikit-image's photographs; training
sequences walk one loop, test sequences walk other loops in turn (lower and tighter, higher and
wider, looking off-centre), farther from the training views than in the table room.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

from common.cli import add_folder_flag, add_output_flags, parse_size, run
from common.data.synthetic import (
    DEFAULT_ROOM,
    ROOMS,
    SceneSettings,
    intrinsics_for,
    write_scene,
)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Intrinsics: focal = 525·W/640 (fx = fy), principal point (W/2, H/2); depth is "
               "registered to colour. Also writes intrinsics.txt (fx fy cx cy).")
    add_folder_flag(parser, "output_folder", required=True,
                    help="folder to write the scene into (new, empty, or an earlier output "
                         "of this script)")
    parser.add_argument("--size", type=parse_size, default=(640, 480),
                        help="image size WIDTHxHEIGHT, multiples of 8 (default 640x480)")
    parser.add_argument("--frames", type=int, default=300, help="frames per sequence (default 300)")
    parser.add_argument("--sequences", type=int, default=3, help="number of sequences (default 3)")
    parser.add_argument("--test_sequences", type=int, default=1,
                        help="how many of the last sequences form the test split (default 1)")
    parser.add_argument("--loop_frames", type=int, default=None,
                        help="frames per walk around the loop (default: --frames, at least 200, "
                             "so the camera turns at most 1.8° per frame; shorter sequences walk "
                             "part of the loop)")
    parser.add_argument("--room", choices=ROOMS, default=DEFAULT_ROOM,
                        help=f"which room (default {DEFAULT_ROOM}); studio needs scikit-image")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of room and paths (default 0)")
    add_output_flags(parser, quiet=False)
    args = parser.parse_args(argv)

    width, height = args.size
    settings = SceneSettings(width=width, height=height, frames=args.frames,
                             sequences=args.sequences, test_sequences=args.test_sequences,
                             seed=args.seed, loop_frames=args.loop_frames, room=args.room)
    out = Path(args.output_folder)
    if not write_scene(out, settings, progress=args.progress):
        print(f"{out} already holds this scene; nothing to do")
        return 0
    f, cx, cy = intrinsics_for(width, height)
    print(f"wrote {settings.sequences} sequences × {settings.frames} frames of {width}x{height} "
          f"of the {settings.room} room to {out} (focal {f:g}, centre ({cx:g}, {cy:g}); "
          f"test: last {settings.test_sequences})")
    return 0


if __name__ == "__main__":
    run(main)
