"""Camera poses: rigid transforms, quaternions, pose errors and their summaries (docs/reference.md §6).

Their files (pose files, TUM trajectories, 4×4 matrix files) are read and written by common/formats.py.

Poses are camera-to-world 4×4 matrices (`pose_cw`), translations in metres. Quaternions are
(w, x, y, z) with w ≥ 0.
"""

import math

import numpy as np
from scipy.spatial.transform import Rotation


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


# (cm, degrees) thresholds of the summary: ACE's indoor set (docs/reference.md §6 has 5/5, 2/2, 10/5) and
# the ones used for outdoor, Cambridge-like scenes.
INDOOR_THRESHOLDS = ((10, 5), (5, 5), (2, 2), (1, 1))
OUTDOOR_THRESHOLDS = ((25, 2), (50, 5), (500, 10))


def threshold_key(cm, deg):
    """Summary key of a threshold: within_5cm_5deg."""
    return f"within_{cm:g}cm_{deg:g}deg"


def summarize_errors(t_errs_m, r_errs_deg, n_failed=0):
    """Median errors and shares of frames within thresholds (docs/reference.md §6); failures count as misses.

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


def median_difference_interval(errs_a, errs_b, block=30, samples=2000, level=0.95, seed=0):
    """(median(b) − median(a), low, high) of two methods' per-frame errors on the same frames.

    The interval is a paired moving-block bootstrap: `samples` resamplings of whole runs of `block`
    consecutive frames (neighbouring frames of a sequence err alike, so single frames would make it
    far too narrow), the same frames for both methods. Failed frames are +inf (misses, as in
    `summarize_errors`). With fewer than 2 · block frames the interval is (nan, nan).
    """
    a = np.asarray(errs_a, dtype=np.float64)
    b = np.asarray(errs_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("the two error lists must be 1-D and of the same length")
    diff = float(np.median(b) - np.median(a)) if a.size else math.nan
    if a.size < 2 * block:
        return diff, math.nan, math.nan
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, a.size - block + 1, size=(samples, -(-a.size // block)))
    idx = (starts[..., None] + np.arange(block)).reshape(samples, -1)[:, :a.size]
    boot = np.median(b[idx], axis=1) - np.median(a[idx], axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(boot, [tail, 100 - tail])
    return diff, float(low), float(high)


def lag_along_motion(est_centres, gt_centres, min_step=1e-6):
    """(mean lag in metres, median step in metres, frames used) of one sequence's camera centres.

    The lag of frame k is the component of its position error e = c_est,k − c_gt,k along the
    unit step back to the previous frame's true centre, (c_gt,k−1 − c_gt,k)/‖·‖: positive when
    the estimate trails behind the camera's motion (what a filter that leans on the past does),
    negative when it runs ahead. Arrays are [n, 3] in frame order; rows with a NaN (failed or
    without ground truth) are skipped, as are frames whose previous frame has no ground truth and
    steps shorter than min_step. Without usable frames: (nan, nan, 0).
    """
    est = np.asarray(est_centres, dtype=np.float64).reshape(-1, 3)
    gt = np.asarray(gt_centres, dtype=np.float64).reshape(-1, 3)
    if est.shape != gt.shape:
        raise ValueError("estimated and true centres must have the same shape")
    back = gt[:-1] - gt[1:]
    step = np.linalg.norm(back, axis=1)
    err = est[1:] - gt[1:]
    use = np.isfinite(step) & (step >= min_step) & np.all(np.isfinite(err), axis=1)
    if not np.any(use):
        return math.nan, math.nan, 0
    lag = np.sum(err[use] * back[use], axis=1) / step[use]
    return float(np.mean(lag)), float(np.median(step[use])), int(use.sum())
