"""Merges prepared input folders (several scenes' OUT/train/) into one input folder for
OFlowNet's scene-independent training.

Each scene keeps its own frame: labels and poses are written in that scene's normalized frame
(its transform.txt applied), so the merged folder's transform.txt is the identity. Sequences
keep their boundaries (a new sequence starts wherever the image folder changes).
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

import numpy as np
from tqdm import tqdm

from common.cli import HelpFormatter, add_folder_flag, add_output_flags, run
from common.data.labels import read_label, write_label
from common.data.prepare import format_matrix, write_text
from common.data.scene import load_input_folder
from common.errors import InputError
from common.formats import read_list, read_matrix_file
from common.geometry import transform_points


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--inputs", nargs="+", required=True, metavar="FOLDER",
                        help="prepared input folders (with image/label/pose lists)")
    add_folder_flag(parser, "output_folder", required=True, help="the merged input folder")
    add_output_flags(parser, quiet=False)
    args = parser.parse_args(argv)

    inputs = [Path(f).resolve() for f in args.inputs]
    if len(set(inputs)) != len(inputs):
        raise InputError("--inputs: a folder is given twice")
    out = Path(args.output_folder)
    if out.resolve() in inputs:
        raise InputError(f"--output_folder {out} is one of the inputs")
    folders, hw = [], None
    for folder in inputs:
        data = load_input_folder(folder)
        if hw is not None and data.image_hw != hw:
            raise InputError(f"{folder} has {data.image_hw[1]}x{data.image_hw[0]} images, "
                             f"{inputs[0]} {hw[1]}x{hw[0]}")
        hw = data.image_hw
        poses = read_list(folder / "pose_list.txt")
        if len(poses) != len(data.image_paths):
            raise InputError(f"{folder / 'pose_list.txt'} has {len(poses)} entries, the image "
                             f"list {len(data.image_paths)}")
        folders.append((folder, data, read_list(folder / "label_list.txt"), poses))
    images, labels, pose_files = [], [], []
    total = sum(len(d.image_paths) for _, d, _, _ in folders)
    with tqdm(total=total, desc="merging", unit="frame", disable=not args.progress) as bar:
        for n, (folder, data, label_paths, poses) in enumerate(folders):
            for k, (image, label_path, pose_path) in enumerate(zip(data.image_paths, label_paths,
                                                                   poses)):
                label = read_label(label_path, hw).astype(np.float64)
                valid = label[..., 3] > 0
                label[valid, :3] = transform_points(data.transform, label[valid, :3])
                rel_label = f"labels/{n:02d}/{k:06d}.label.bin"
                rel_pose = f"poses/{n:02d}/{k:06d}.pose.txt"
                (out / rel_label).parent.mkdir(parents=True, exist_ok=True)
                (out / rel_pose).parent.mkdir(parents=True, exist_ok=True)
                write_label(out / rel_label, label.astype(np.float32))
                write_text(out / rel_pose, format_matrix(data.transform @ read_matrix_file(pose_path)))
                images.append(image)
                labels.append(rel_label)
                pose_files.append(rel_pose)
                bar.update()
    write_text(out / "transform.txt", format_matrix(np.eye(4)))
    write_text(out / "pose_list.txt", "".join(f"{p}\n" for p in pose_files))
    write_text(out / "label_list.txt", "".join(f"{p}\n" for p in labels))
    write_text(out / "image_list.txt", "".join(f"{p}\n" for p in images))
    print(f"merged {len(folders)} folders, {total} frames → {out}")
    return 0


if __name__ == "__main__":
    run(main)
