"""Small hand-made input folders for unit tests (the synthetic room lives in conftest.py)."""

import os
from pathlib import Path

import cv2
import numpy as np

from common.data.labels import write_label


def make_input_folder(root, sizes=(64, 80), frames=(6, 6), seed=0, transform=None, label_ext=".bin",
                      with_poses=False):
    """Random images in seq-01, seq-02, …; label of frame k in sequence s: x=k, y=s, z=column.

    Returns the folder Path. `transform` (4×4) is written as transform.txt when given.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    height, width = sizes
    h, w = height // 8, width // 8
    images, labels, poses = [], [], []
    for s, count in enumerate(frames, 1):
        seq = root / f"seq-{s:02d}"
        seq.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            path = seq / f"frame-{k:06d}.color.png"
            cv2.imwrite(str(path), img)
            images.append(str(path))
            lab = np.zeros((h, w, 4), np.float32)
            lab[..., 0], lab[..., 1] = k, s
            lab[..., 2] = np.arange(w)[None, :]
            lab[..., 3] = 1
            lab[0, 0, 3] = 0
            lpath = seq / f"frame-{k:06d}.label{label_ext}"
            write_label(lpath, lab)
            labels.append(os.path.relpath(lpath, root))
            if with_poses:
                ppath = seq / f"frame-{k:06d}.pose.txt"
                np.savetxt(ppath, np.eye(4))
                poses.append(str(ppath))
    (root / "image_list.txt").write_text("\n".join(images) + "\n")
    (root / "label_list.txt").write_text("\n".join(labels) + "\n")
    if with_poses:
        (root / "pose_list.txt").write_text("\n".join(poses) + "\n")
    if transform is not None:
        np.savetxt(root / "transform.txt", transform)
    return root


def rotation_z(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
