"""Camera poses: 4×4 pose files, quaternions, pose errors, the pose-list and TUM formats (SPEC §2, §6).

Poses are camera-to-world 4×4 matrices (`pose_cw`), translations in metres. Quaternions are
(w, x, y, z) with w ≥ 0.
"""

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from common.errors import InputError


def read_matrix_file(path, what="pose"):
    """A 4×4 matrix written as whitespace-separated text (7-Scenes `.pose.txt`, transform.txt)."""
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except OSError:
        raise InputError(f"cannot read {what} file {path}") from None
    except ValueError:
        raise InputError(f"{what} file {path} is not a 4x4 matrix of numbers") from None
    if values.size != 16:
        raise InputError(f"{what} file {path} holds {values.size} numbers, expected 16 (4x4)")
    return values.reshape(4, 4)


def check_rigid(matrix_44, tol=1e-3):
    """Problem with a 4×4 rigid transform (rotation, translation, last row 0 0 0 1), or None."""
    m = np.asarray(matrix_44, dtype=np.float64)
    if not np.all(np.isfinite(m)):
        return "has non-finite entries"
    if not np.allclose(m[3], [0, 0, 0, 1], atol=tol):
        return "last row is not 0 0 0 1"
    r = m[:3, :3]
    det = np.linalg.det(r)
    if abs(det) < 1e-9:
        return "is singular"
    if not np.allclose(r @ r.T, np.eye(3), atol=tol) or det < 0:
        return "is not rigid (its 3x3 part is not a rotation)"
    return None


def invert_rigid(pose_44):
    """Inverse of a rigid 4×4 transform."""
    r, t = pose_44[:3, :3], pose_44[:3, 3]
    out = np.eye(4)
    out[:3, :3] = r.T
    out[:3, 3] = -r.T @ t
    return out


def rotation_to_quaternion(r_33):
    """Unit quaternion (w, x, y, z), w ≥ 0, of a rotation matrix."""
    return Rotation.from_matrix(np.asarray(r_33, np.float64)).as_quat(canonical=True, scalar_first=True)


def quaternion_to_rotation(q_wxyz):
    """Rotation matrix of a quaternion (w, x, y, z); the quaternion is normalized first.

    Raises ValueError for a zero or non-finite quaternion.
    """
    q = np.asarray(q_wxyz, np.float64)
    if not np.all(np.isfinite(q)) or not np.linalg.norm(q) > 0:
        raise ValueError(f"not a rotation quaternion: {q.tolist()}")
    return Rotation.from_quat(q, scalar_first=True).as_matrix()


def pose_errors(pose_est_cw, pose_gt_cw):
    """(translation error in metres, rotation error in degrees) of camera-to-world poses.

    Translation: distance between the camera centres. Rotation: angle of R_est · R_gtᵀ.
    """
    t_err = float(np.linalg.norm(pose_est_cw[:3, 3] - pose_gt_cw[:3, 3]))
    r_rel = Rotation.from_matrix(pose_est_cw[:3, :3]) * Rotation.from_matrix(pose_gt_cw[:3, :3]).inv()
    return t_err, math.degrees(float(r_rel.magnitude()))


@dataclass
class PoseRecord:
    """One frame of a pose file: its pose, or why there is none, and errors when known."""

    index: int
    image: str
    pose_cw: np.ndarray | None = None
    failure: str | None = None
    t_err: float | None = None  # metres
    r_err: float | None = None  # degrees


POSE_FILE_HEADER = ("# index image qw qx qy qz tx ty tz [t_err_cm r_err_deg]  "
                    "(camera-to-world; failed frames: index image FAILED reason)")


def format_pose_line(rec):
    """One line of the pose file for a record."""
    if rec.pose_cw is None:
        reason = " ".join((rec.failure or "no pose").split())
        return f"{rec.index} {rec.image} FAILED {reason}"
    q = rotation_to_quaternion(rec.pose_cw[:3, :3])
    t = rec.pose_cw[:3, 3]
    line = f"{rec.index} {rec.image} " + " ".join(f"{v:.8f}" for v in (*q, *t))
    if rec.t_err is not None:
        line += f" {100 * rec.t_err:.4f} {rec.r_err:.4f}"
    return line


def _write_text(path, text):
    """Writes through a temporary file and a rename, so readers never see half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_pose_file(path, records):
    """Writes the pose file of SPEC §2 (sorted by frame index); image paths must not contain spaces."""
    for rec in records:
        if any(c.isspace() for c in rec.image):
            raise InputError(f"image path with white space cannot go into a pose file: '{rec.image}'")
    lines = [POSE_FILE_HEADER] + [format_pose_line(r) for r in sorted(records, key=lambda r: r.index)]
    _write_text(path, "\n".join(lines) + "\n")


def read_pose_file(path):
    """Records of a pose file written by `write_pose_file`."""
    records = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        raise InputError(f"cannot read pose file {path}") from None
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            if len(parts) >= 3 and parts[2] == "FAILED":
                records.append(PoseRecord(int(parts[0]), parts[1], failure=" ".join(parts[3:])))
                continue
            if len(parts) not in (9, 11):
                raise ValueError
            vals = [float(v) for v in parts[2:]]
            pose = np.eye(4)
            pose[:3, :3] = quaternion_to_rotation(vals[0:4])
        except ValueError:
            raise InputError(f"pose file {path} line {n} is not 'index image qw qx qy qz tx ty tz'") from None
        pose[:3, 3] = vals[4:7]
        rec = PoseRecord(int(parts[0]), parts[1], pose_cw=pose)
        if len(vals) == 9:
            rec.t_err, rec.r_err = vals[7] / 100.0, vals[8]
        records.append(rec)
    return records


def write_tum(path, records, timestamps=None):
    """TUM trajectory `timestamp tx ty tz qx qy qz qw`; the timestamp defaults to the frame index."""
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    for rec in sorted(records, key=lambda r: r.index):
        if rec.pose_cw is None:
            continue
        w, x, y, z = rotation_to_quaternion(rec.pose_cw[:3, :3])
        t = rec.pose_cw[:3, 3]
        stamp = float(rec.index if timestamps is None else timestamps[rec.index])
        lines.append(f"{stamp:.6f} {t[0]:.8f} {t[1]:.8f} {t[2]:.8f} {x:.8f} {y:.8f} {z:.8f} {w:.8f}")
    _write_text(path, "\n".join(lines) + "\n")


def read_tum(path):
    """(timestamps [N], poses [N,4,4]) of a TUM trajectory file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a header-only file is an empty trajectory
            data = np.loadtxt(path, comments="#", ndmin=2)
    except (OSError, ValueError):
        raise InputError(f"cannot read TUM trajectory {path}") from None
    if data.size and data.shape[1] != 8:
        raise InputError(f"TUM trajectory {path} must have 8 columns")
    poses = np.tile(np.eye(4), (len(data), 1, 1))
    for i, row in enumerate(data):
        try:
            poses[i, :3, :3] = quaternion_to_rotation([row[7], row[4], row[5], row[6]])
        except ValueError as e:
            raise InputError(f"TUM trajectory {path} row {i + 1}: {e}") from None
        poses[i, :3, 3] = row[1:4]
    return data[:, 0] if data.size else np.zeros(0), poses


# (cm, degrees) thresholds of the summary: ACE's indoor set (SPEC §6 has 5/5, 2/2, 10/5) and
# the ones used for outdoor, Cambridge-like scenes.
INDOOR_THRESHOLDS = ((10, 5), (5, 5), (2, 2), (1, 1))
OUTDOOR_THRESHOLDS = ((25, 2), (50, 5), (500, 10))


def threshold_key(cm, deg):
    """Summary key of a threshold: within_5cm_5deg."""
    return f"within_{cm:g}cm_{deg:g}deg"


def summarize_errors(t_errs_m, r_errs_deg, n_failed=0):
    """Median errors and shares of frames within thresholds (SPEC §6); failures count as misses.

    A frame is within (cm, deg) when both errors are at most the threshold.
    """
    t = np.asarray(t_errs_m, dtype=np.float64)
    r = np.asarray(r_errs_deg, dtype=np.float64)
    n = len(t) + n_failed
    if n == 0:
        return {"frames": 0, "failed": 0}
    all_t = np.concatenate([t, np.full(n_failed, np.inf)])
    all_r = np.concatenate([r, np.full(n_failed, np.inf)])

    def share(tc, rd):
        return float(np.mean((all_t <= tc / 100.0) & (all_r <= rd)))

    out = {
        "frames": int(n),
        "failed": int(n_failed),
        "median_t_cm": float(100 * np.median(all_t)),
        "median_r_deg": float(np.median(all_r)),
    }
    for cm, deg in INDOOR_THRESHOLDS + OUTDOOR_THRESHOLDS:
        out[threshold_key(cm, deg)] = share(cm, deg)
    return out
