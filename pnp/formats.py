"""Pose files other tools read: ACE's and DSAC*'s `poses_<scene>.txt`, TUM trajectories.

ACE (nianticlabs/ace, test_ace.py; read back by its eval_poses.py) writes one line per test
image, in the order of its sorted rgb/ folder:
    name qw qx qy qz tx ty tz r_err_deg t_err_m inliers
DSAC* (vislearn/dsacstar, test.py) writes the same without the inlier count. Both store the
world-to-camera pose (the inverse of ours) and name an image by the file name their setup
scripts give it: `seq-XX-frame-NNNNNN.color.png` on 7-Scenes (sequence folder prefixed),
the plain file name elsewhere (12-Scenes' `frame-NNNNNN.color.jpg`).
"""

import math
import re
from pathlib import Path

import numpy as np

from common.errors import InputError
from common.poses import invert_rigid, pose_errors, rotation_to_quaternion

FORMATS = ("kfnet", "ace", "dsacstar")
SEQUENCE_FOLDER = re.compile(r"seq-\d+")


def foreign_name(image):
    """The image's name in ACE's and DSAC*'s files: `<seq-XX>-<file>` inside a 7-Scenes
    sequence folder, else the file name."""
    path = Path(image)
    parent = path.parent.name
    return f"{parent}-{path.name}" if SEQUENCE_FOLDER.fullmatch(parent) else path.name


def foreign_lines(records, fmt, gt=None, inliers=None):
    """Lines of an ACE (`fmt="ace"`) or DSAC* (`"dsacstar"`) pose file, sorted by name.

    A failed frame gets the identity world-to-camera pose and 0 inliers (both tools expect a
    line per image), so their evaluation counts it as a miss. Errors are against `gt`
    ({k: camera-to-world}) and `nan` without it.
    """
    if fmt not in ("ace", "dsacstar"):
        raise ValueError(f"unknown format {fmt}")
    rows = []
    for rec in records:
        pose_cw = rec.pose_cw if rec.pose_cw is not None else np.eye(4)
        t_err = r_err = math.nan
        if gt is not None and np.all(np.isfinite(gt[rec.index])):
            t_err, r_err = pose_errors(pose_cw, gt[rec.index])
        pose_wc = invert_rigid(pose_cw)
        q, t = rotation_to_quaternion(pose_wc[:3, :3]), pose_wc[:3, 3]
        values = [*q, *t, r_err, t_err]
        line = f"{foreign_name(rec.image)} " + " ".join(f"{v:.10g}" for v in values)
        if fmt == "ace":
            line += f" {int(inliers.get(rec.index, 0)) if rec.pose_cw is not None else 0}"
        rows.append(line)
    names = [r.split(" ", 1)[0] for r in rows]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"two frames share the name '{dup}' in the {fmt} pose file; ACE and "
                         f"DSAC* tell frames apart by file name")
    return sorted(rows)


def read_timestamps(path, count):
    """[count] floats, one per line (timestamps.txt written beside image_list.txt)."""
    try:
        stamps = [float(v) for v in Path(path).read_text().split()]
    except (OSError, ValueError):
        raise InputError(f"cannot read timestamps file {path} (one number per line)") from None
    if len(stamps) < count:
        raise InputError(f"timestamps file {path} has {len(stamps)} entries, the image list "
                         f"{count}")
    return stamps
