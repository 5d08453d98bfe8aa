"""Turns a 12-Scenes scene as downloaded (SCENE/info.txt, split.txt, data/frame-NNNNNN.color.jpg,
.depth.png, .pose.txt) into the input folders of docs/reference.md §2: OUT/train/ and OUT/test/.

The colour images (1296×968) are resized to the depth images' size (640×480) into
OUT/<split>/images/ with the intrinsics of info.txt scaled alike; depth is registered to colour.
The first frames (split.txt's frames=N) are the test split, the rest the training split; frames
with an invalid pose (-inf/NaN) are skipped and counted. --poses pgt FILE… takes the SfM pseudo
ground truth (`<apt>_<scene>_{train,test}.txt`) instead.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

import cv2

from common.cli import HelpFormatter, add_folder_flag, add_output_flags, run
from common.data.raw import read_pgt, resize_images, twelve_scenes_camera, twelve_scenes_frames
from common.data.rgbd import prepare_frames, report
from common.errors import InputError


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_folder_flag(parser, "dataset_folder", required=True,
                    help="scene folder with info.txt, split.txt and data/")
    add_folder_flag(parser, "output_folder", required=True,
                    help="where the <split>/ input folders are written")
    parser.add_argument("--poses", nargs="+", metavar=("pgt", "FILE"),
                        help="'pgt FILE [FILE]': SfM pseudo ground-truth files (default: the "
                             "dataset's own poses)")
    parser.add_argument("--overwrite", action="store_true", help="recompute existing labels")
    add_output_flags(parser, quiet=False)
    args = parser.parse_args(argv)

    scene = Path(args.dataset_folder)
    if not scene.is_dir():
        raise InputError(f"dataset folder not found: {scene}")
    lookup = None
    if args.poses:
        if args.poses[0] != "pgt" or len(args.poses) < 2:
            raise InputError("--poses: expected 'pgt FILE [FILE ...]'")
        pgt, _ = read_pgt(args.poses[1:])
        lookup = lambda stem: pgt.get(f"data/{stem}")  # noqa: E731
    sets, skipped = twelve_scenes_frames(scene, lookup)
    first_depth = next(f.depth for fs in sets.values() for f in fs)
    depth = cv2.imread(str(first_depth), cv2.IMREAD_UNCHANGED)
    if depth is None or depth.ndim != 2:
        raise InputError(f"depth image {first_depth} is not a single-channel 16-bit PNG")
    wh = (depth.shape[1], depth.shape[0])
    camera, depth_scale, colour_wh = twelve_scenes_camera(scene / "info.txt", wh)
    print(f"colour {colour_wh[0]}x{colour_wh[1]} → {wh[0]}x{wh[1]}: fx {camera.focal:.3f}, fy "
          f"{camera.focal_y:.3f}, centre ({camera.cx:.3f}, {camera.cy:.3f}); "
          f"{len(sets['train'])} train, {len(sets['test'])} test frames, {skipped} skipped "
          f"({'not in the pseudo ground truth' if lookup else 'invalid pose'})")
    out = Path(args.output_folder)
    for split, frames in sets.items():
        if frames:
            resize_images(frames, out / split / "images", wh, progress=args.progress)
    stats = prepare_frames(sets, out, camera, depth_scale, source=f"{scene.resolve()};poses={args.poses}",
                           overwrite=args.overwrite, progress=args.progress)
    report(stats, out)
    return 0


if __name__ == "__main__":
    run(main)
