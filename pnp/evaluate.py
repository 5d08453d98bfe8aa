"""The PnP command's bookkeeping: frame names, sequences, ground truth, summaries."""

import os
from pathlib import Path

import numpy as np

from common import formats
from common.data.lists import sequence_ids
from common.errors import InputError
from common.formats import read_list, read_matrix_file
from common.poses import INDOOR_THRESHOLDS, lag_along_motion, summarize_errors, threshold_key


def _check_covers(paths, indices, what, path):
    if indices[-1] >= len(paths):
        raise InputError(f"{what} {path} has {len(paths)} entries but coord files go up to "
                         f"coord_{indices[-1]}.npy")


def load_ground_truth(pose_list, indices):
    """{k: 4×4 camera-to-world pose} for the frame indices, and the pose file paths of the list."""
    paths = read_list(pose_list)
    _check_covers(paths, indices, "pose list", pose_list)
    return {k: read_matrix_file(paths[k]) for k in indices}, paths


def frames_and_sequences(indices, pose_paths=None, image_list=None, sequence_length=None):
    """({k: image name for the pose file}, {k: sequence id}, {sequence id: name}).

    Image names and sequences come from the image list when there is one (names as written,
    relative to the list's folder); otherwise names are coord_<k>.npy and sequences follow the
    ground-truth pose files' parent folders (or all frames form one sequence).
    """
    if image_list is not None:
        paths = read_list(image_list)
        _check_covers(paths, indices, "image list", image_list)
        base = Path(image_list).resolve().parent
        names = [os.path.relpath(p, base) if Path(p).is_relative_to(base) else p for p in paths]
        seq_paths = paths
    else:
        names = None
        seq_paths = pose_paths
    if seq_paths is not None:
        ids = sequence_ids(seq_paths, sequence_length)
        seq = {k: int(ids[k]) for k in indices}
        seq_names = {}
        for k in indices:
            seq_names.setdefault(seq[k], Path(seq_paths[k]).parent.name if not sequence_length
                                 else f"seq{seq[k]:02d}")
    else:
        seq = {k: 0 for k in indices}
        seq_names = {0: "all"}
    image = {k: (names[k] if names is not None else formats.coord_file(".", k).name) for k in indices}
    return image, seq, seq_names


def _centres(recs, gt):
    """(estimated, true) camera centres [n, 3] over the frame indices min…max of recs, NaN rows
    where a frame is missing, failed or has no ground truth."""
    first = min(r.index for r in recs)
    est = np.full((max(r.index for r in recs) - first + 1, 3), np.nan)
    true = est.copy()
    for r in recs:
        if r.pose_cw is not None:
            est[r.index - first] = r.pose_cw[:3, 3]
        if r.index in gt:
            true[r.index - first] = np.asarray(gt[r.index], dtype=np.float64)[:3, 3]
    return est, true


def summarize(records, times_ms, seq_of, seq_names, has_gt, gt=None):
    """Summary dict: overall and per-sequence errors (with ground truth) and ms per frame.

    With gt ({k: 4×4 camera-to-world}), each block also has lag_cm and median_step_cm
    (common.poses.lag_along_motion; the overall block never pairs frames across sequences).
    """

    def lag(parts):
        nan_row = np.full((1, 3), np.nan)
        est = np.concatenate([x for e, _ in parts for x in (e, nan_row)])
        true = np.concatenate([x for _, t in parts for x in (t, nan_row)])
        mean, step, _ = lag_along_motion(est, true)
        return {"lag_cm": 100 * mean, "median_step_cm": 100 * step}

    def block(recs):
        solved = [r for r in recs if r.pose_cw is not None]
        failed = len(recs) - len(solved)
        if has_gt:
            out = summarize_errors([r.t_err for r in solved], [r.r_err for r in solved], failed)
        else:
            out = {"frames": len(recs), "failed": failed}
        ts = [times_ms[r.index] for r in recs if times_ms.get(r.index) is not None]
        out["ms_per_frame"] = float(np.mean(ts)) if ts else None
        return out

    sequences, parts = [], []
    for sid, name in sorted(seq_names.items()):
        recs = [r for r in records if seq_of[r.index] == sid]
        sequences.append({"sequence": sid, "name": name, "first_frame": min(r.index for r in recs),
                          **block(recs)})
        if has_gt and gt is not None:
            parts.append(_centres(recs, gt))
            sequences[-1].update(lag(parts[-1:]))
    overall = block(records)
    if parts:
        overall.update(lag(parts))
    return {"overall": overall, "sequences": sequences}


def format_summary(summary, thresholds=INDOOR_THRESHOLDS):
    """Lines of a table: one row per sequence and one for all frames; one column per
    (cm, deg) threshold."""
    head = f"{'sequence':<16}{'frames':>7}{'failed':>7}"
    has_errors = "median_t_cm" in summary["overall"]
    if has_errors:
        head += f"{'t (cm)':>9}{'r (deg)':>9}"
        head += "".join(f"{f'{cm:g}cm/{deg:g}d':>10}" for cm, deg in thresholds)
    head += f"{'ms/frame':>10}"

    def row(name, s):
        line = f"{name:<16}{s['frames']:>7}{s['failed']:>7}"
        if has_errors:
            line += f"{s['median_t_cm']:>9.2f}{s['median_r_deg']:>9.2f}"
            line += "".join(f"{100 * s[threshold_key(cm, deg)]:>9.1f}%" for cm, deg in thresholds)
        ms = s["ms_per_frame"]
        return line + (f"{ms:>10.1f}" if ms is not None else f"{'-':>10}")

    lines = [head]
    if len(summary["sequences"]) > 1:
        lines += [row(s["name"], s) for s in summary["sequences"]]
    lines.append(row("all", summary["overall"]))
    lag = summary["overall"].get("lag_cm")
    if lag is not None and np.isfinite(lag):
        lines.append(f"lag along the motion: {lag:+.2f} cm (the position error's mean component toward "
                     f"the previous frame's true camera; median step "
                     f"{summary['overall']['median_step_cm']:.2f} cm)")
    return lines
