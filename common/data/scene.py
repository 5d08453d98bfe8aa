"""An input folder (docs/reference.md §2) read and checked before any work: lists, labels, transform, poses."""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.data.labels import LabelLayout, label_layout
from common.data.lists import sequence_ids
from common.errors import InputError
from common.formats import read_list, read_matrix_file
from common.geometry import CELL
from common.poses import check_rigid

IMAGE_LIST = "image_list.txt"
LABEL_LIST = "label_list.txt"
POSE_LIST = "pose_list.txt"
TRANSFORM = "transform.txt"


@dataclass
class InputFolder:
    """Everything a stage needs to know about one input folder, already validated."""

    folder: Path
    image_paths: list
    image_hw: tuple  # (H, W), the same for every image, multiples of CELL
    sequence_ids: np.ndarray  # [N] int, 0-based, non-decreasing
    transform: np.ndarray  # [4, 4] world → normalized frame
    label_paths: list | None = None
    label_layouts: list | None = None
    pose_paths: list | None = None

    def __len__(self):
        return len(self.image_paths)

    @property
    def map_hw(self):
        """(h, w) of the coordinate maps: H/8 × W/8."""
        return self.image_hw[0] // CELL, self.image_hw[1] // CELL

    @property
    def has_labels(self):
        return self.label_paths is not None

    @property
    def sequence_starts(self):
        """[N] bool: True where a new sequence begins."""
        starts = np.ones(len(self), dtype=bool)
        starts[1:] = self.sequence_ids[1:] != self.sequence_ids[:-1]
        return starts

    def read_poses(self):
        """[N, 4, 4] ground-truth camera-to-world poses from pose_list.txt."""
        if self.pose_paths is None:
            raise InputError(f"no {POSE_LIST} in {self.folder}")
        return np.stack([read_matrix_file(p) for p in self.pose_paths])


def _image_size(path, list_file, line):
    try:
        with Image.open(path) as im:
            if im.format not in ("PNG", "JPEG"):
                raise InputError(f"{list_file} line {line}: {path} is {im.format}, expected PNG or JPEG")
            return im.size[1], im.size[0]
    except FileNotFoundError:
        raise InputError(f"{list_file} line {line}: image not found: {path}") from None
    except (UnidentifiedImageError, OSError):
        raise InputError(f"{list_file} line {line}: cannot read image {path}") from None


def read_transform(folder):
    """transform.txt of a folder (4×4 rigid, world → normalized); identity with a warning if missing."""
    path = Path(folder) / TRANSFORM
    if not path.exists():
        print(f"warning: no {TRANSFORM} in {folder}: using the identity", file=sys.stderr)
        return np.eye(4)
    matrix = read_matrix_file(path, what="transform")
    problem = check_rigid(matrix)
    if problem:
        raise InputError(f"{path} {problem}")
    return matrix


def load_input_folder(folder, sequence_length=None, require_labels=True, check_images=True,
                      image_list=None):
    """Reads and validates an input folder; every problem is an InputError naming file and line.

    Labels are required for training (`require_labels`); for testing they are optional and
    used for evaluation when present. All images must share one size, a multiple of 8.
    `image_list`: another list of images to use instead of the folder's image_list.txt; the
    folder's labels and poses follow them when every image is a line of its own list (else the
    result has none, with a note).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"input folder not found: {folder}")
    own_list = folder / IMAGE_LIST
    if image_list is not None and not Path(image_list).is_file():
        raise InputError(f"--image_list {image_list} not found")
    image_list = own_list if image_list is None else Path(image_list)
    if not image_list.is_file():
        raise InputError(f"missing {image_list}")
    images = read_list(image_list)
    if not images:
        raise InputError(f"{image_list} is empty")

    image_hw = None
    for n, path in enumerate(images, 1):
        if not check_images and n > 1:
            break
        hw = _image_size(path, image_list, n)
        if image_hw is None:
            image_hw = hw
            if hw[0] % CELL or hw[1] % CELL:
                raise InputError(f"{image_list} line {n}: image {path} is {hw[1]}x{hw[0]}, "
                                 f"not a multiple of {CELL} in both sides")
        elif hw != image_hw:
            raise InputError(f"{image_list} line {n}: image {path} is {hw[1]}x{hw[0]}, "
                             f"the first image is {image_hw[1]}x{image_hw[0]}")

    data = InputFolder(folder=folder, image_paths=images, image_hw=image_hw,
                       sequence_ids=sequence_ids(images, sequence_length),
                       transform=read_transform(folder))

    rows = None  # the line of the folder's own lists that each image is (another image list given)
    if image_list != own_list:
        own = read_list(own_list) if own_list.is_file() else []
        line = {os.path.normpath(p): n for n, p in enumerate(own)}
        rows = [line.get(os.path.normpath(p)) for p in images]
        if None in rows:
            rows = None
            if (folder / LABEL_LIST).is_file() or (folder / POSE_LIST).is_file():
                missing = sum(os.path.normpath(p) not in line for p in images)
                print(f"note: {missing} of the {len(images)} images of {image_list} are not in {own_list}: "
                      "no labels or poses for them, no evaluation")
            if require_labels:
                raise InputError(f"{image_list}: images without labels (not lines of {own_list})")
            return data
        count, image_list = len(own), own_list

    def follow(entries):
        return entries if rows is None else [entries[n] for n in rows]

    label_list = folder / LABEL_LIST
    if label_list.is_file():
        labels = read_list(label_list)
        if len(labels) != (len(images) if rows is None else count):
            raise InputError(f"{label_list} has {len(labels)} entries, {image_list} has "
                             f"{len(images) if rows is None else count}")
        labels = follow(labels)
        layouts = []
        for n, path in enumerate(labels, 1):
            try:
                layouts.append(label_layout(path, image_hw))
            except InputError as e:
                raise InputError(f"{label_list} line {n if rows is None else rows[n - 1] + 1}: {e}") from None
        data.label_paths, data.label_layouts = labels, layouts
    elif require_labels:
        raise InputError(f"missing {label_list} (needed for training)")

    pose_list = folder / POSE_LIST
    if pose_list.is_file():
        poses = read_list(pose_list)
        if len(poses) != (len(images) if rows is None else count):
            raise InputError(f"{pose_list} has {len(poses)} entries, {image_list} has "
                             f"{len(images) if rows is None else count}")
        data.pose_paths = follow(poses)
    return data


def layout_arrays(layouts):
    """Per-frame label layout as int arrays (offset, rows, cols, stride) for graph code."""
    table = np.array([[lay.offset, lay.rows, lay.cols, lay.stride] for lay in layouts], dtype=np.int64)
    return table.reshape(-1, 4)


__all__ = ["InputFolder", "LabelLayout", "load_input_folder", "read_transform", "layout_arrays",
           "IMAGE_LIST", "LABEL_LIST", "POSE_LIST", "TRANSFORM"]
