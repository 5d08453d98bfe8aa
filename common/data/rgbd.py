"""Shared code of the raw-dataset preparations (TUM RGB-D, 12-Scenes, a generic RGB-D layout,
7-Scenes with calibrated registration or pseudo ground truth) on top of common.data.prepare.

Each preparation turns its download into `SourceFrame`s (colour, depth, camera-to-world pose
in memory) per split; `prepare_frames` writes the poses as 4×4 files into the output folder and
then makes labels, lists and transform.txt with the 7-Scenes code (same labels, resumability
and bad-input behaviour).
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.data.prepare import (  # noqa: F401 (register_depth_calibrated: public here too)
    Frame,
    format_matrix,
    image_size,
    prepare_split,
    register_depth_calibrated,
    scene_transform,
    write_text,
)
from common.errors import InputError
from common.poses import quaternion_to_rotation, rotation_to_quaternion

# 7-Scenes' Kinect depth→RGB extrinsics (points in the depth camera → points in the RGB camera),
# the calibration ACE's datasets/setup_7scenes.py uses (from the LIRIS Kinect calibration).
SEVEN_SCENES_DEPTH_TO_RGB = (
    9.9996518012567637e-01, 2.6765126468950343e-03, -7.9041012313000904e-03, -2.5558943178152542e-02,
    -2.7409311281316700e-03, 9.9996302803027592e-01, -8.1504520778013286e-03, 1.0109636268061706e-04,
    7.8819942130445332e-03, 8.1718328771890631e-03, 9.9993554558014031e-01, 2.0318321729487039e-03,
    0.0, 0.0, 0.0, 1.0,
)


def slerp(q0, q1, s):
    """Quaternion (w, x, y, z) a share s ∈ [0, 1] of the way from q0 to q1 (shortest arc)."""
    q0, q1 = np.asarray(q0, np.float64), np.asarray(q1, np.float64)
    q0, q1 = q0 / np.linalg.norm(q0), q1 / np.linalg.norm(q1)
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: linear interpolation is exact enough and stable
        q = q0 + s * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(dot)
    return (math.sin((1 - s) * theta) * q0 + math.sin(s * theta) * q1) / math.sin(theta)


def interpolate_pose(stamps, poses_n44, t, max_gap):
    """Camera-to-world pose at time t between the two nearest samples (translation linear,
    rotation by slerp), or None when t is outside the samples or they are > max_gap apart.

    stamps must be sorted; an exact hit returns that sample.
    """
    k = int(np.searchsorted(stamps, t))
    if k < len(stamps) and stamps[k] == t:
        return poses_n44[k].copy()
    if k == 0 or k == len(stamps) or stamps[k] - stamps[k - 1] > max_gap:
        return None
    s = (t - stamps[k - 1]) / (stamps[k] - stamps[k - 1])
    a, b = poses_n44[k - 1], poses_n44[k]
    pose = np.eye(4)
    pose[:3, :3] = quaternion_to_rotation(slerp(rotation_to_quaternion(a[:3, :3]),
                                                rotation_to_quaternion(b[:3, :3]), s))
    pose[:3, 3] = (1 - s) * a[:3, 3] + s * b[:3, 3]
    return pose


@dataclass
class SourceFrame:
    """One frame of a raw dataset: colour and depth files, camera-to-world pose (metres)."""

    image: Path
    depth: Path
    pose_cw: np.ndarray
    sequence: str  # output sub-folder of the frame's labels and pose
    stem: str  # file name stem of its label and pose
    timestamp: float | None = None  # seconds, when the dataset has them


def write_pose_files(frames, out_split, depth_scale):
    """Writes each frame's pose as poses/<sequence>/<stem>.pose.txt (kept when unchanged) and
    returns the frames for prepare_split."""
    out = []
    for f in frames:
        path = out_split / "poses" / f.sequence / f"{f.stem}.pose.txt"
        text = format_matrix(f.pose_cw)
        if not (path.is_file() and path.read_text() == text):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, text)
        out.append(Frame(Path(f.image).resolve(), Path(f.depth).resolve(), path.resolve(),
                         f"labels/{f.sequence}/{f.stem}.label.bin", depth_scale))
    return out


def prepare_frames(sets, out, camera, depth_scale=1000.0, source=None, overwrite=False,
                   progress=True):
    """Prepares {split: [SourceFrame]} into out/<split>/ (docs/reference.md §2 input folders).

    transform.txt comes from the "train" split (which must be among the sets); splits whose
    frames all have timestamps also get timestamps.txt (one per image_list line), which
    pnp/solve.py uses for its TUM files. Returns {split: (written, kept, valid share)}.
    """
    out = Path(out)
    for split, frames in sets.items():
        if not frames:
            raise InputError(f"no frames left for the {split} split")
        names = [(f.sequence, f.stem) for f in frames]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise InputError(f"two {split} frames are both {dup[0]}/{dup[1]}; give each "
                             f"sequence its own folder name")
    width, height = image_size([Frame(Path(f.image), Path(f.depth), Path(), "")
                                for frames in sets.values() for f in frames])
    if not (0 <= camera.cx < width and 0 <= camera.cy < height):
        raise InputError(f"principal point ({camera.cx:g}, {camera.cy:g}) lies outside the "
                         f"{width}x{height} images; give the intrinsics (--focal --cx --cy)")
    frames = {split: write_pose_files(fs, out / split, depth_scale) for split, fs in sets.items()}
    transform = scene_transform(frames["train"], camera, (height, width))
    stats = {}
    for split, fs in frames.items():
        stats[split] = prepare_split(fs, out / split, camera, (height, width), transform,
                                     overwrite=overwrite, progress=progress, desc=split,
                                     source=source)
        stamps = [f.timestamp for f in sets[split]]
        if all(t is not None for t in stamps):
            write_text(out / split / "timestamps.txt", "".join(f"{t:.6f}\n" for t in stamps))
    return stats


def report(stats, out):
    """Prints one line per split of prepare_frames' statistics."""
    for split, (written, kept, valid) in stats.items():
        share = f", {100 * valid:.1f}% valid cells" if valid is not None else ""
        print(f"{split}: {written} labels written, {kept} kept{share} → {Path(out) / split}")
