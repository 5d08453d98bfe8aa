"""Draws estimated camera positions against ground truth (blue = ground truth, red = estimate):
a top view, a 3D view and the translation / rotation error over time; with --save .gif/.mp4 as a
video in which both trajectories grow frame by frame.

Estimates: the pose file of the PnP step (`<k> <image> qw qx qy qz tx ty tz [t_err_cm r_err_deg]`,
failed frames `<k> <image> FAILED reason`) or a TUM trajectory (`timestamp tx ty tz qx qy qz qw`),
told apart by content. Ground truth: a pose_list.txt (one 4x4 camera-to-world pose file per
line, line k = frame k) or a TUM trajectory. Frame k of the estimates is line k of the ground
truth, except that two TUM files are matched by timestamp.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from common.cli import add_output_flags, parse_size, run
from common.errors import InputError
from common.formats import read_list, read_matrix_file, read_pose_file, read_tum
from common.poses import pose_errors
from vis.helpers import (
    IMAGE_EXTS,
    VIDEO_EXTS,
    VideoWriter,
    check_save,
    figure_rgb,
    new_figure,
    show_or_save,
    use_backend,
)

GT_COLOUR, EST_COLOUR = "tab:blue", "tab:red"
TUM_MAX_DT = 0.02  # seconds: TUM timestamps closer than this are the same frame


@dataclass
class Trajectory:
    """Poses [N, 4, 4] camera-to-world (NaN where a frame failed), by frame index or timestamp."""

    keys: np.ndarray
    poses: np.ndarray
    by_index: bool  # keys are frame indices (pose file, pose list), not TUM timestamps


def first_line(path):
    """Tokens of the first line that is neither blank nor a comment."""
    try:
        with open(path) as f:
            for line in f:
                if line.strip() and not line.lstrip().startswith("#"):
                    return line.split()
    except OSError:
        raise InputError(f"cannot read {path}") from None
    raise InputError(f"{path} is empty")


def is_tum(tokens):
    """True for a TUM line: eight numbers."""
    try:
        return len(tokens) == 8 and all(np.isfinite(float(t)) for t in tokens)
    except ValueError:
        return False


def read_estimates(path):
    """The estimated trajectory of a pose file or a TUM file."""
    if not Path(path).is_file():
        raise InputError(f"pose file not found: {path}")
    if is_tum(first_line(path)):
        stamps, poses = read_tum(path)
        return Trajectory(stamps, poses, by_index=False)
    records = read_pose_file(path)
    if not records:
        raise InputError(f"pose file {path} holds no poses")
    failed = np.full((4, 4), np.nan)
    poses = np.stack([failed if r.pose_cw is None else r.pose_cw for r in records])
    return Trajectory(np.array([r.index for r in records], dtype=np.float64), poses, by_index=True)


def read_ground_truth(path, progress=True):
    """The ground-truth trajectory of a pose list (line k = frame k) or a TUM file."""
    if not Path(path).is_file():
        raise InputError(f"ground-truth file not found: {path}")
    if is_tum(first_line(path)):
        stamps, poses = read_tum(path)
        return Trajectory(stamps, poses, by_index=False)
    files = read_list(path)
    poses = np.stack([read_matrix_file(f) for f in tqdm(files, desc="ground truth", leave=False, disable=not progress)])
    return Trajectory(np.arange(len(files), dtype=np.float64), poses, by_index=True)


def match(est, gt):
    """(frame labels [M], ground truth [M, 4, 4], estimates [M, 4, 4] with NaN where none).

    One entry per ground-truth frame; estimates are placed by frame index, or by nearest
    timestamp when both files are TUM trajectories.
    """
    out = np.full(gt.poses.shape, np.nan)
    if not est.by_index and not gt.by_index:
        for key, pose in zip(est.keys, est.poses):
            n = int(np.argmin(np.abs(gt.keys - key)))
            if abs(gt.keys[n] - key) <= TUM_MAX_DT:
                out[n] = pose
        if np.isnan(out[:, 0, 0]).all():
            raise InputError(f"no estimate timestamp is within {TUM_MAX_DT} s of a "
                             "ground-truth one")
        return gt.keys, gt.poses, out
    if not est.by_index and np.any(est.keys != np.round(est.keys)):
        raise InputError("TUM estimates against a pose list need frame indices as timestamps")
    for key, pose in zip(est.keys.astype(int), est.poses):
        if not 0 <= key < len(gt.poses):
            raise InputError(f"estimate of frame {key} has no ground truth "
                             f"({len(gt.poses)} frames)")
        out[key] = pose
    return np.arange(len(gt.poses)), gt.poses, out


def top_view_frame(poses):
    """(axes [3, 3] rows: horizontal 1, horizontal 2, up; origin [3]) for drawing trajectories.

    Up is the mean of the cameras' up directions (−y in OpenCV camera axes); the first horizontal
    axis is the main direction of travel.
    """
    ok = np.isfinite(poses[:, 0, 0])
    up = -poses[ok, :3, 1].mean(axis=0)
    if np.linalg.norm(up) < 1e-6:
        up = np.array([0.0, 0.0, 1.0])
    up /= np.linalg.norm(up)
    centres = poses[ok, :3, 3]
    origin = centres.mean(axis=0)
    flat = (centres - origin) - np.outer((centres - origin) @ up, up)
    a1 = np.linalg.svd(flat, full_matrices=False)[2][0] if len(flat) > 1 else np.zeros(3)
    if np.linalg.norm(a1) < 1e-9 or abs(a1 @ up) > 0.99:
        a1 = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 1.0, 0])
    a1 = a1 - (a1 @ up) * up
    a1 /= np.linalg.norm(a1)
    return np.stack([a1, np.cross(up, a1), up]), origin


def errors(gt, est):
    """(translation error cm [M], rotation error deg [M]); NaN where there is no estimate."""
    t, r = np.full(len(gt), np.nan), np.full(len(gt), np.nan)
    for n in range(len(gt)):
        if np.isfinite(est[n, 0, 0]):
            t_m, r[n] = pose_errors(est[n], gt[n])
            t[n] = 100 * t_m
    return t, r


class TrajectoryFigure:
    """Top view, 3D view and errors over time, drawn up to a given frame."""

    def __init__(self, size_wh, labels, gt, est, title):
        self.fig = new_figure(size_wh)
        grid = self.fig.add_gridspec(2, 2, height_ratios=[2.2, 1], left=0.06, right=0.94,
                                     bottom=0.07, top=0.9, hspace=0.3, wspace=0.15)
        self.ax_top = self.fig.add_subplot(grid[0, 0])
        self.ax_3d = self.fig.add_subplot(grid[0, 1], projection="3d")
        self.ax_err = self.fig.add_subplot(grid[1, :])
        self.ax_rot = self.ax_err.twinx()
        self.labels, self.title = labels, title
        axes, origin = top_view_frame(gt if gt is not None else est)
        self.gt = None if gt is None else (gt[:, :3, 3] - origin) @ axes.T
        self.est = (est[:, :3, 3] - origin) @ axes.T
        self.t_err, self.r_err = errors(gt, est) if gt is not None else (None, None)
        both = self.est if self.gt is None else np.concatenate([self.gt, self.est])
        both = both[np.isfinite(both).all(axis=1)]
        self.lo, self.hi = both.min(axis=0), both.max(axis=0)

    def draw(self, upto):
        """Draws frames 0..upto (inclusive)."""
        n = upto + 1
        for ax in (self.ax_top, self.ax_3d, self.ax_err, self.ax_rot):
            ax.clear()
        # Pad, and widen thin extents so a straight path does not squash the views to a line.
        extent = max(float(np.max(self.hi - self.lo)), 1e-3)
        half = np.maximum((self.hi - self.lo) / 2, 0.25 * extent) + 0.05 * extent
        mid = (self.hi + self.lo) / 2
        lo, hi = mid - half, mid + half
        for name, xyz, colour in (("ground truth", self.gt, GT_COLOUR),
                                  ("estimate", self.est, EST_COLOUR)):
            if xyz is None:
                continue
            self.ax_top.plot(xyz[:n, 0], xyz[:n, 1], "-", color=colour, lw=1.2, label=name)
            self.ax_top.plot(xyz[:n, 0], xyz[:n, 1], ".", color=colour, ms=3)
            self.ax_3d.plot(xyz[:n, 0], xyz[:n, 1], xyz[:n, 2], "-", color=colour, lw=1.2)
            last = np.nonzero(np.isfinite(xyz[:n, 0]))[0]
            if len(last):
                p = xyz[last[-1]]
                self.ax_top.plot(p[0], p[1], "o", color=colour, ms=6, mfc="none")
                self.ax_3d.scatter([p[0]], [p[1]], [p[2]], color=colour, s=20)
        self.ax_top.set_xlim(lo[0], hi[0])
        self.ax_top.set_ylim(lo[1], hi[1])
        self.ax_top.set_aspect("equal", adjustable="box")
        self.ax_top.set_title("top view (m)", fontsize=10)
        self.ax_top.legend(loc="best", fontsize=8)
        self.ax_3d.set_xlim(lo[0], hi[0])
        self.ax_3d.set_ylim(lo[1], hi[1])
        self.ax_3d.set_zlim(lo[2], hi[2])
        self.ax_3d.set_box_aspect(np.maximum(hi - lo, 1e-3))
        self.ax_3d.set_title("3D view (m, vertical = camera up)", fontsize=10)
        self.ax_3d.tick_params(labelsize=7)
        self._draw_errors(n)
        self.fig.suptitle(f"{self.title}  (frame {self.labels[upto]:g}, {n} of {len(self.labels)})",
                          fontsize=11)

    def _draw_errors(self, n):
        ax, ax2 = self.ax_err, self.ax_rot
        ax2.yaxis.tick_right()  # clear() put the twin axis back on the left
        ax2.yaxis.set_label_position("right")
        x = np.asarray(self.labels, dtype=np.float64)
        ax.set_xlim(x.min(), max(x.max(), x.min() + 1))
        if self.t_err is None:
            ax.text(0.5, 0.5, "no ground truth (--gt): no errors", ha="center", va="center",
                    transform=ax.transAxes)
            ax2.set_yticks([])
            return
        missing = np.isnan(self.t_err[:n])
        for xm in x[:n][missing]:
            ax.axvline(xm, color="0.85", lw=1.5, zorder=0)
        ax.plot(x[:n], self.t_err[:n], "-", color=EST_COLOUR, lw=1.2, label="translation (cm)")
        ax2.plot(x[:n], self.r_err[:n], "--", color="0.3", lw=1.0, label="rotation (°)")
        ax.set_ylim(0, 1.1 * max(np.nanmax(self.t_err), 1e-3))
        ax2.set_ylim(0, 1.1 * max(np.nanmax(self.r_err), 1e-3))
        ax.set_ylabel("translation error (cm)", color=EST_COLOUR)
        ax2.set_ylabel("rotation error (°)", color="0.3")
        ax.set_xlabel("frame" + (" (grey: no estimate)" if missing.any() else ""))
        ax.set_title(f"errors: median {np.nanmedian(self.t_err):.2f} cm, "
                     f"{np.nanmedian(self.r_err):.2f}°", fontsize=10)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("poses", help="estimated poses: pose file of the PnP step, or a TUM "
                        "trajectory")
    parser.add_argument("--gt", help="ground truth: pose_list.txt (4x4 pose files), or a TUM "
                        "trajectory")
    parser.add_argument("--size", type=parse_size, default=(1200, 900), metavar="WxH",
                        help="picture size in pixels (default 1200x900)")
    parser.add_argument("--fps", type=float, default=10.0,
                        help="video frames per second (default 10)")
    parser.add_argument("--max_frames", type=int, default=100,
                        help="at most this many video frames, spread over the sequence "
                             "(default 100)")
    parser.add_argument("--save", help="write a picture (.png, .jpg) or a video (.gif, .mp4) "
                        "instead of opening a window")
    add_output_flags(parser, quiet=False)
    args = parser.parse_args(argv)
    if args.fps <= 0 or args.max_frames < 1:
        parser.error("--fps must be positive and --max_frames at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    save = check_save(args.save, IMAGE_EXTS + VIDEO_EXTS)
    use_backend(save)
    est = read_estimates(args.poses)
    if args.gt:
        labels, gt, est_poses = match(est, read_ground_truth(args.gt, args.progress))
    else:
        labels, gt, est_poses = est.keys, None, est.poses
    if not np.isfinite(est_poses[:, 0, 0]).any():
        raise InputError(f"{args.poses} has no pose that could be drawn")
    fig = TrajectoryFigure(args.size, labels, gt, est_poses, Path(args.poses).name)
    n_est = int(np.isfinite(est_poses[:, 0, 0]).sum())
    if fig.t_err is not None:
        print(f"{n_est} of {len(labels)} frames with an estimate; median error "
              f"{np.nanmedian(fig.t_err):.2f} cm, {np.nanmedian(fig.r_err):.2f} deg")
    else:
        print(f"{n_est} of {len(labels)} frames with an estimate; no ground truth")
    if save is None or save.suffix.lower() in IMAGE_EXTS:
        fig.draw(len(labels) - 1)
        show_or_save(fig.fig, save)
        return 0
    count = min(args.max_frames, len(labels))
    steps = np.unique(np.linspace(0, len(labels) - 1, count).round().astype(int))
    with VideoWriter(save, args.fps) as writer:
        for upto in tqdm(steps, desc="frames", leave=False, disable=not args.progress):
            fig.draw(int(upto))
            writer.append(figure_rgb(fig.fig))
    return 0


if __name__ == "__main__":
    run(main)
