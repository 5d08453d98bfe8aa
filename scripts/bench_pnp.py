"""Benchmark of pnp.solve.solve_frame against OpenCV's and PoseLib's RANSAC-PnP.

    python scripts/bench_pnp.py [--frames 40] [--outliers 0.1 0.3 0.6] [--seed 0]

Generated 60×80 maps (640×480, f = 525, depths 1–4 m, ~2 cm noise, outliers in blobs with
mostly low confidence, see pnp/synthetic.py); prints a Markdown table of median errors, the
share of frames within 5 cm / 5° and the mean time per frame (one thread for every method).

Two sets of baselines: the plain calls on every cell, and ("filtered") the strongest form of each:
the same confidence-filtered cells ours uses (pnp.solve.usable_cells) and, for PoseLib, ours's
RANSAC budget (at most `hypotheses` = 256 samples, no minimum) instead of its ≥ 1000 iterations.
The last lines say whether ours leads: median error ≤ every PoseLib row's and time ≤ the plain
OpenCV call's at each outlier share.
"""

import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from common.cli import run  # noqa: E402
from common.geometry import cell_pixels  # noqa: E402
from common.poses import pose_errors, summarize_errors  # noqa: E402
from pnp.solve import solve_frame, usable_cells  # noqa: E402
from pnp.synthetic import make_frame  # noqa: E402

K = np.array([[525.0, 0, 320], [0, 525.0, 240], [0, 0, 1]])


def _pose_from_rvec(rvec, tvec):
    rot, _ = cv2.Rodrigues(rvec)
    pose = np.eye(4)
    pose[:3, :3] = rot.T
    pose[:3, 3] = -rot.T @ tvec.ravel()
    return pose


def _opencv(flags):
    def solve(points, pixels, conf, threshold):
        ok, rvec, tvec, _ = cv2.solvePnPRansac(points, pixels, K, None, flags=flags)
        return _pose_from_rvec(rvec, tvec) if ok else None
    return solve


def _poselib(budget=None):
    def solve(points, pixels, conf, threshold):
        import poselib

        camera = {"model": "PINHOLE", "width": 640, "height": 480,
                  "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}
        options = {"max_reproj_error": threshold}
        if budget is not None:
            options.update(max_iterations=budget, min_iterations=0)
        pose, _ = poselib.estimate_absolute_pose(pixels, points, camera, options, {})
        rot = pose.R
        out = np.eye(4)
        out[:3, :3] = rot.T
        out[:3, 3] = -rot.T @ pose.t
        return out
    return solve


def _ours(**options):
    def solve(coords, conf, threshold):
        pose, _, _ = solve_frame(coords, conf, K, threshold=threshold, **options)
        return pose
    return solve


METHODS = {
    "ours (solve_frame)": ("map", _ours()),
    "ours, uniform sampling + weights": ("map", _ours(sampling="uniform", weighting="uniform")),
    "cv2.solvePnPRansac (default)": ("points", _opencv(cv2.SOLVEPNP_ITERATIVE)),
    "cv2.solvePnPRansac (USAC_MAGSAC)": ("points", _opencv(cv2.USAC_MAGSAC)),
    "poselib.estimate_absolute_pose": ("points", _poselib()),
    "cv2.solvePnPRansac (default), filtered cells": ("filtered", _opencv(cv2.SOLVEPNP_ITERATIVE)),
    "cv2.solvePnPRansac (USAC_MAGSAC), filtered cells": ("filtered", _opencv(cv2.USAC_MAGSAC)),
    "poselib, filtered cells, 256 iterations at most": ("filtered", _poselib(budget=256)),
}
PLAIN_OPENCV = "cv2.solvePnPRansac (default)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40,
                        help="frames per outlier share (default 40)")
    parser.add_argument("--outliers", type=float, nargs="+", default=[0.1, 0.3, 0.6],
                        help="outlier shares to test (default 0.1 0.3 0.6)")
    parser.add_argument("--noise", type=float, default=0.02, help="median inlier σ, metres (0.02)")
    parser.add_argument("--confident_outliers", type=float, default=0.15,
                        help="share of outliers whose confidence looks like an inlier's (0.15)")
    parser.add_argument("--threshold", type=float, default=10.0,
                        help="inlier threshold in pixels for ours and PoseLib "
                             "(10; OpenCV keeps its 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated frames (0)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    pixels = cell_pixels(60, 80).reshape(-1, 2)

    rows, verdicts = [], []
    for share in args.outliers:
        rng = np.random.default_rng([args.seed, int(round(1000 * share))])
        frames = [make_frame(rng, K, noise=args.noise, outlier_share=share,
                             confident_outliers=args.confident_outliers)
                  for _ in range(args.frames)]
        t_errs = {name: [] for name in METHODS}
        r_errs = {name: [] for name in METHODS}
        failed = dict.fromkeys(METHODS, 0)
        seconds = dict.fromkeys(METHODS, 0.0)
        # Methods take turns on each frame so that a busy machine slows them all alike.
        for f in tqdm(frames, desc=f"{share:.0%} outliers", leave=False):
            points = f.coords.reshape(-1, 3).astype(np.float64)
            for name, (kind, solve) in METHODS.items():
                start = time.perf_counter()
                if kind == "map":
                    pose = solve(f.coords, f.confidence, args.threshold)
                elif kind == "filtered":  # the selection is part of the method's time
                    keep = usable_cells(f.coords, f.confidence).ravel()
                    pose = solve(points[keep], pixels[keep], f.confidence.ravel()[keep], args.threshold)
                else:
                    pose = solve(points, pixels, f.confidence.ravel(), args.threshold)
                seconds[name] += time.perf_counter() - start
                if pose is None:
                    failed[name] += 1
                    continue
                t, r = pose_errors(pose, f.pose_cw)
                t_errs[name].append(t), r_errs[name].append(r)
        stats = {}
        for name in METHODS:
            s = summarize_errors(t_errs[name], r_errs[name], failed[name])
            ms = 1000 * seconds[name] / len(frames)
            stats[name] = (s, ms)
            rows.append(f"| {name} | {share:.0%} | {s['median_t_cm']:.2f} | "
                        f"{s['median_r_deg']:.3f} | {100 * s['within_5cm_5deg']:.0f} % | "
                        f"{ms:.1f} |")
        ours, ours_ms = stats["ours (solve_frame)"]
        poselib = {n: v[0] for n, v in stats.items() if n.startswith("poselib")}
        error_ok = all(ours["median_t_cm"] <= p["median_t_cm"] and ours["median_r_deg"] <= p["median_r_deg"]
                       for p in poselib.values())
        time_ok = ours_ms <= stats[PLAIN_OPENCV][1]
        verdicts.append(f"{share:.0%} outliers: ours {'leads' if error_ok and time_ok else 'does not lead'} "
                        f"(median t/r {'≤' if error_ok else 'not ≤'} every PoseLib row's; "
                        f"{ours_ms:.1f} ms {'≤' if time_ok else '>'} plain OpenCV's {stats[PLAIN_OPENCV][1]:.1f} ms)")
    print("| method | outliers | median t (cm) | median r (°) | ≤ 5 cm/5° | ms/frame |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n" + "\n".join(verdicts))
    return 0


if __name__ == "__main__":
    run(main)
