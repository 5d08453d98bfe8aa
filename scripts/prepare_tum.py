"""Turns TUM RGB-D sequences (as downloaded and unpacked: rgb.txt, depth.txt, groundtruth.txt,
rgb/, depth/) into the input folders of docs/reference.md §2: OUT/train/ and OUT/test/, with labels, lists,
transform.txt (from the training sequences), poses/ (the ground truth interpolated at each
colour image's time) and timestamps.txt (pnp/solve.py's TUM files keep the dataset's times).

Colour and depth are paired by nearest timestamp (within --tolerance); depth is registered to
colour at 5000 units per metre. Intrinsics: fr1/fr2/fr3 by the folder name, or --focal/--cx/--cy.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

from common.cli import HelpFormatter, add_folder_flag, add_output_flags, run
from common.data.prepare import Camera
from common.data.raw import TUM_DEPTH_SCALE, TUM_INTRINSICS, tum_camera_name, tum_sequence
from common.data.rgbd import prepare_frames, report
from common.errors import InputError


def tum_camera(folders, args):
    """Camera from --focal/--focal_y/--cx/--cy, else the Kinect named by the folders."""
    given = [args.focal, args.cx, args.cy]
    if all(v is not None for v in given):
        fy = args.focal_y or args.focal
        return Camera(args.focal, fy, args.cx, args.cy, args.focal), "flags"
    if any(v is not None for v in given):
        raise InputError("--focal, --cx and --cy go together")
    names = {tum_camera_name(f) for f in folders}
    if None in names or len(names) != 1:
        raise InputError("cannot tell the camera (freiburg1/2/3) from the folder names "
                         f"{', '.join(Path(f).name for f in folders)}; give --focal --cx --cy")
    name = names.pop()
    fx, fy, cx, cy = TUM_INTRINSICS[name]
    return Camera(fx, fy, cx, cy, fx), name


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--train", nargs="+", required=True, metavar="SEQ",
                        help="training sequence folders (rgbd_dataset_freiburg1_xyz …)")
    parser.add_argument("--test", nargs="+", required=True, metavar="SEQ",
                        help="test sequence folders")
    add_folder_flag(parser, "output_folder", required=True,
                    help="where the <split>/ input folders are written")
    parser.add_argument("--focal", type=float, help="colour focal length fx in pixels")
    parser.add_argument("--focal_y", type=float, help="fy (default: --focal)")
    parser.add_argument("--cx", type=float, help="principal point x in pixels")
    parser.add_argument("--cy", type=float, help="principal point y in pixels")
    parser.add_argument("--depth_scale", type=float, default=TUM_DEPTH_SCALE,
                        help="depth PNG units per metre")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="largest colour-depth time difference in seconds")
    parser.add_argument("--max_gap", type=float, default=0.1,
                        help="largest gap between the ground-truth samples a pose is "
                             "interpolated between, seconds")
    parser.add_argument("--overwrite", action="store_true", help="recompute existing labels")
    add_output_flags(parser, quiet=False)
    args = parser.parse_args(argv)

    camera, source = tum_camera(args.train + args.test, args)
    print(f"intrinsics ({source}): fx {camera.focal:g}, fy {camera.focal_y:g}, centre "
          f"({camera.cx:g}, {camera.cy:g}); depth scale {args.depth_scale:g}")
    sets = {}
    for split, folders in (("train", args.train), ("test", args.test)):
        sets[split] = []
        for folder in folders:
            frames, skipped = tum_sequence(folder, args.tolerance, args.max_gap)
            print(f"{split}: {Path(folder).name}: {len(frames)} frames; skipped "
                  f"{skipped['no depth']} without depth within {args.tolerance:g} s and "
                  f"{skipped['no pose']} outside the ground truth")
            sets[split] += frames
    source = ";".join(str(Path(f).resolve()) for f in args.train + args.test)
    stats = prepare_frames(sets, args.output_folder, camera, args.depth_scale, source=source,
                           overwrite=args.overwrite, progress=args.progress)
    report(stats, args.output_folder)
    return 0



if __name__ == "__main__":
    run(main)
