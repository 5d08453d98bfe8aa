"""Turns a scene in the 7-Scenes layout (7-Scenes, 12-Scenes folders alike, the synthetic room) into
the input folders of docs/reference.md §2: OUT/train/ and OUT/test/, each with image_list.txt, label_list.txt,
pose_list.txt, transform.txt and labels/ (float32 h×w×4 scene coordinates at map resolution).

Intrinsics: --focal/--focal_y/--cx/--cy/--depth_focal override the scene config (--scene or
--config, else configs/defaults.yaml: 7-Scenes' RGB camera with registered depth). With none of
these given, a dataset holding intrinsics.txt (fx fy cx cy, written by make_synthetic_scene.py)
uses it, with registered depth. Real 7-Scenes: pass --scene chess (etc.), whose raw Kinect depth
(focal 585) is re-projected into the RGB camera (focal 525).

--registration calibrated also applies the depth→RGB extrinsics ACE and DSAC* use for 7-Scenes
(and maps the poses, which are the depth camera's, to the RGB camera); --poses pgt FILE… takes
the SfM pseudo ground truth (`<scene>_train.txt`, `<scene>_test.txt`) for every pose. Either
writes the poses used into OUT/<split>/poses/.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

from common.cli import add_config_flags, add_folder_flag, add_output_flags, run
from common.config import load_config
from common.data.prepare import SPLIT_FILES, Camera, prepare_scene
from common.data.raw import read_pgt, seven_scenes_frames
from common.data.rgbd import SEVEN_SCENES_DEPTH_TO_RGB, prepare_frames
from common.errors import InputError

INTRINSIC_FLAGS = ("focal", "focal_y", "cx", "cy", "depth_focal")


def read_intrinsics_file(path):
    """Camera of an intrinsics.txt `fx fy cx cy` (depth registered to colour)."""
    try:
        fx, fy, cx, cy = (float(v) for v in Path(path).read_text().split())
    except (OSError, ValueError):
        raise InputError(f"intrinsics file {path} must hold four numbers: fx fy cx cy") from None
    return Camera(focal=fx, focal_y=fy, cx=cx, cy=cy, depth_focal=fx)


def camera_from_args(args):
    """(Camera, where it came from): flags over the config, or the dataset's intrinsics.txt."""
    flags = {k: getattr(args, k) for k in INTRINSIC_FLAGS if getattr(args, k) is not None}
    own = Path(args.dataset_folder) / "intrinsics.txt"
    if not flags and args.scene is None and args.config is None and own.is_file():
        return read_intrinsics_file(own), f"{own}"
    cfg = load_config(args.scene, args.config)
    focal = float(flags.get("focal", cfg["focal"]))
    # --focal alone sets both focal lengths; a registered config stays registered.
    focal_y = flags.get("focal_y") or (focal if "focal" in flags else cfg.get("focal_y") or focal)
    registered = float(cfg["depth_focal"]) == float(cfg["focal"])
    depth_focal = flags.get("depth_focal", focal if registered else cfg["depth_focal"])
    camera = Camera(focal=focal, focal_y=float(focal_y), cx=float(flags.get("cx", cfg["cx"])),
                    cy=float(flags.get("cy", cfg["cy"])), depth_focal=float(depth_focal))
    source = args.scene or args.config or "configs/defaults.yaml"
    return camera, source + (" + flags" if flags else "")


def prepare_raw(args, camera, splits):
    """The pseudo-ground-truth / calibrated-registration path: poses written into OUT."""
    dataset = Path(args.dataset_folder)
    if not dataset.is_dir():
        raise InputError(f"dataset folder not found: {dataset}")
    pgt = None
    if args.poses:
        if args.poses[0] != "pgt" or len(args.poses) < 2:
            raise InputError("--poses: expected 'pgt FILE [FILE ...]'")
        pgt, _ = read_pgt(args.poses[1:])
    if args.registration == "calibrated":
        if camera.registered:
            raise InputError("--registration calibrated needs the raw Kinect depth's focal "
                             "length (--scene chess or --depth_focal 585)")
        camera = Camera(camera.focal, camera.focal_y, camera.cx, camera.cy, camera.depth_focal,
                        SEVEN_SCENES_DEPTH_TO_RGB)
    all_splits = list(dict.fromkeys(["train", *splits]))
    sets, skipped = seven_scenes_frames(dataset, all_splits, "pgt" if pgt else "original",
                                        args.registration, pgt)
    if pgt is not None:
        print(f"pseudo ground truth: {sum(map(len, sets.values()))} frames, {skipped} frames "
              f"without a pose skipped")
    source = f"{dataset.resolve()};poses={args.poses};registration={args.registration}"
    stats = prepare_frames(sets, args.output_folder, camera, source=source,
                           overwrite=args.overwrite, progress=args.progress)
    return {split: stats[split] for split in splits}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_folder_flag(parser, "dataset_folder", required=True,
                    help="scene folder with seq-XX/ folders, TrainSplit.txt and TestSplit.txt")
    add_folder_flag(parser, "output_folder", required=True,
                    help="where the <split>/ input folders are written")
    add_config_flags(parser)
    parser.add_argument("--focal", type=float, help="RGB focal length in pixels (7-Scenes: 525)")
    parser.add_argument("--focal_y", type=float,
                        help="vertical RGB focal length (default: --focal)")
    parser.add_argument("--cx", type=float, help="principal point x in pixels (7-Scenes: 320)")
    parser.add_argument("--cy", type=float, help="principal point y in pixels (7-Scenes: 240)")
    parser.add_argument("--depth_focal", type=float,
                        help="depth camera focal length; differs from --focal when depth is not "
                             "registered to colour (7-Scenes: 585), equal for registered depth")
    parser.add_argument("--splits", nargs="+", choices=sorted(SPLIT_FILES),
                        default=["train", "test"],
                        help="splits to prepare (default: train test); transform.txt always "
                             "comes from train")
    parser.add_argument("--registration", choices=("focal", "calibrated"), default="focal",
                        help="focal: depth re-projected with its own focal length only; "
                             "calibrated: with 7-Scenes' calibrated depth→RGB extrinsics too")
    parser.add_argument("--poses", nargs="+", metavar=("pgt", "FILE"),
                        help="'pgt FILE [FILE]': SfM pseudo ground-truth files (default: the "
                             "dataset's .pose.txt)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute labels that already exist")
    add_output_flags(parser, quiet=False)
    args = parser.parse_args(argv)

    camera, source = camera_from_args(args)
    print(f"intrinsics from {source}: focal {camera.focal:g}/{camera.focal_y:g}, centre "
          f"({camera.cx:g}, {camera.cy:g}), depth focal {camera.depth_focal:g}"
          + ("" if camera.registered else " (re-projecting depth into the colour camera)"))
    splits = list(dict.fromkeys(args.splits))
    if args.registration == "focal" and not args.poses:
        stats = prepare_scene(args.dataset_folder, args.output_folder, camera, splits=splits,
                              overwrite=args.overwrite, progress=args.progress)
    else:
        stats = prepare_raw(args, camera, splits)
    for split, (written, kept, valid) in stats.items():
        share = f", {100 * valid:.1f}% valid cells" if valid is not None else ""
        folder = Path(args.output_folder) / split
        print(f"{split}: {written} labels written, {kept} kept{share} → {folder}")
    return 0


if __name__ == "__main__":
    run(main)
