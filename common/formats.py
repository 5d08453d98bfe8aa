"""Every file name and layout the project writes or reads, in one place (docs/reference.md §2).

- Per-frame maps: `coord_<k>.npy` (float32 [h, w, 4]: world x, y, z, confidence 1/σ) and
  `<k-1>_<k>_flow.npy` (float32 [h, w, 3]: u, v in cells from frame k−1 into frame k, σ_q),
  k being the frame's line in image_list.txt.
- `OUT/run.json`: what produced an output folder (a signature: checkpoint and settings);
  a re-run with the same signature skips frames already written, a different one starts
  over, and `complete: true` marks a finished folder. Files are written to a temporary name
  and renamed, so a killed run (or a full disk) never leaves a torn file; an output folder is
  locked for the writing process (common.locks).
- List files (image_list.txt, label_list.txt, pose_list.txt), 4×4 matrix files (7-Scenes
  `.pose.txt`, transform.txt), timestamps.txt.
- Pose files: ours (`k image qw qx qy qz tx ty tz [t_err_cm r_err_deg]`), TUM trajectories,
  and the pose files of ACE and DSAC*; the PnP command's `<stem>.tum.txt`, `<stem>.summary.json`.

ACE and DSAC*:Pose files other tools read: ACE's and DSAC*'s `poses_<scene>.txt`, TUM trajectories.

ACE (nianticlabs/ace, test_ace.py; read back by its eval_poses.py) writes one line per test
image, in the order of its sorted rgb/ folder:
    name qw qx qy qz tx ty tz r_err_deg t_err_m inliers
DSAC* (vislearn/dsacstar, test.py) writes the same without the inlier count. Both store the
world-to-camera pose (the inverse of ours) and name an image by the file name their setup
scripts give it: `seq-XX-frame-NNNNNN.color.png` on 7-Scenes (sequence folder prefixed),
the plain file name elsewhere (12-Scenes' `frame-NNNNNN.color.jpg`).
"""

import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.data.labels import HEADER_ERRORS
from common.errors import InputError
from common.locks import atomic_write, atomic_write_text, lock_folder
from common.poses import invert_rigid, pose_errors, quaternion_to_rotation, rotation_to_quaternion

RUN_INFO = "run.json"


def save_npy(path, array):
    """np.save (float32) through a temporary file and a rename; OutputError if it cannot be written."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    atomic_write(path, lambda f: np.save(f, array))


class BackgroundWriter:
    """Runs the per-frame output work (save_npy, evaluation) on one thread, in submission order.

    The network keeps running while the previous frames are written. Each file is still written
    by save_npy (temporary name, rename): whole or absent. The first error of a job is raised in
    the caller's thread by the next `submit` or by `close`, and no later job runs.
    """

    def __init__(self, depth=8):
        import queue
        import threading

        self._jobs = queue.Queue(maxsize=depth)
        self._error = None
        self._thread = threading.Thread(target=self._work, name="npy-writer", daemon=True)
        self._thread.start()

    def _work(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is None:
                try:
                    job[0](*job[1])
                except BaseException as e:  # surfaced in the caller's thread
                    self._error = e

    def _raise(self):
        if self._error is not None:
            raise self._error

    def submit(self, fn, *args):
        """Queues fn(*args) (waits while `depth` jobs are pending)."""
        self._raise()
        self._jobs.put((fn, args))

    def close(self):
        """Waits for every queued job; raises the first error of any."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self._raise()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.close()
        else:  # already failing: finish what is queued, keep the first error
            self._jobs.put(None)
            self._thread.join()


def read_map_file(path, channels, map_hw=None, what="coordinate map"):
    """[h, w, channels] float32 of an .npy map written by this project (coord_<k>.npy: 4 channels,
    <k-1>_<k>_flow.npy: 3); anything else is an InputError naming the file."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, *HEADER_ERRORS) as e:
        raise InputError(f"cannot read {what} {path}: {str(e).splitlines()[0] if str(e) else 'truncated'}") from None
    expected = f"[h, w, {channels}]" if map_hw is None else f"[{map_hw[0]}, {map_hw[1]}, {channels}]"
    if not isinstance(array, np.ndarray) or array.ndim != 3 or array.shape[2] != channels \
            or (map_hw is not None and tuple(array.shape[:2]) != tuple(map_hw)) \
            or not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{what} {path} holds {getattr(array, 'dtype', '?')} "
                         f"{list(getattr(array, 'shape', []))}, expected float {expected}")
    return array.astype(np.float32, copy=False)


COORD_GLOB, FLOW_GLOB = "coord_*.npy", "*_flow.npy"
_COORD_NAME = re.compile(r"coord_(\d+)\.npy")
_FLOW_NAME = re.compile(r"(\d+)_(\d+)_flow\.npy")


def coord_file(folder, k):
    """FOLDER/coord_<k>.npy: the scene-coordinate map of frame k."""
    return Path(folder) / f"coord_{k}.npy"


def coord_index(path):
    """k of a `coord_<k>.npy` path, or None for any other name."""
    m = _COORD_NAME.fullmatch(Path(path).name)
    return int(m.group(1)) if m else None


def flow_file(folder, k):
    """FOLDER/<k-1>_<k>_flow.npy: the flow of pair (k − 1, k), frame k−1's cells into frame k."""
    return Path(folder) / f"{k - 1}_{k}_flow.npy"


def flow_pair(path):
    """(k − 1, k) of a `<k-1>_<k>_flow.npy` path, or None for any other name."""
    m = _FLOW_NAME.fullmatch(Path(path).name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def find_coord_files(folder):
    """[(k, path)] of every coord_<k>.npy in folder, by k."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"coord folder not found: {folder}")
    found = sorted((k, str(p)) for p in folder.iterdir()
                   if (k := coord_index(p)) is not None and p.is_file())
    if not found:
        raise InputError(f"no coord_<k>.npy files in {folder}")
    return found


def coord_output(coords_world_hw3, sigma_hw1):
    """[h, w, 4] float32: world x, y, z and confidence 1/σ (docs/reference.md §2)."""
    conf = 1.0 / np.maximum(np.asarray(sigma_hw1, dtype=np.float64), 1e-12)
    return np.concatenate([coords_world_hw3, conf], axis=-1).astype(np.float32)


def open_output_folder(folder, signature, flag="--output_folder"):
    """Creates the folder; returns True if it already holds a complete run with this signature."""
    folder = Path(folder)
    lock_folder(folder, flag)  # held until the command ends; a second writer stops here
    for stale in folder.rglob("*.tmp"):  # left by a run killed while writing
        stale.unlink()
    info = read_run_info(folder)
    if info is not None and info.get("signature") != signature:
        for stale in folder.glob("*.npy"):
            stale.unlink()
    if info is None or info.get("signature") != signature:
        write_run_info(folder, {"signature": signature, "complete": False})
        return False
    return bool(info.get("complete"))


def read_run_info(folder):
    path = Path(folder) / RUN_INFO
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def write_run_info(folder, info):
    atomic_write_text(Path(folder) / RUN_INFO, json.dumps(info, indent=2, default=float) + "\n")


def mark_complete(folder, summary=None):
    info = read_run_info(folder) or {}
    info["complete"] = True
    if summary is not None:
        info["summary"] = summary
    write_run_info(folder, info)


def read_list(path):
    """Paths of a list file, one per line, relative ones resolved against the list's folder.

    Blank lines are skipped; returns absolute path strings in file order.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError:
        raise InputError(f"cannot read list file {path}") from None
    except UnicodeDecodeError:
        raise InputError(f"list file {path} is not UTF-8 text") from None
    base = path.resolve().parent
    out = []
    for line in lines:
        entry = line.strip()
        if entry:
            out.append(entry if os.path.isabs(entry) else str(base / entry))
    return out


def read_matrix_file(path, what="pose"):
    """A 4×4 matrix written as whitespace-separated text (7-Scenes `.pose.txt`, transform.txt)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file: reported below
            values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except OSError:
        raise InputError(f"cannot read {what} file {path}") from None
    except ValueError:
        raise InputError(f"{what} file {path} is not a 4x4 matrix of numbers") from None
    if values.size != 16:
        raise InputError(f"{what} file {path} holds {values.size} numbers, expected 16 (4x4)")
    if not np.all(np.isfinite(values)):
        raise InputError(f"{what} file {path} holds non-finite numbers")
    return values.reshape(4, 4)


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


def write_pose_file(path, records):
    """Writes the pose file of docs/reference.md §2 through a temporary file and a rename."""
    atomic_write_text(path, pose_file_text(records))


def pose_file_text(records):
    """The pose file of docs/reference.md §2 (sorted by frame index); image paths must not contain spaces."""
    for rec in records:
        if any(c.isspace() for c in rec.image):
            raise InputError(f"image path with white space cannot go into a pose file: '{rec.image}'")
    lines = [POSE_FILE_HEADER] + [format_pose_line(r) for r in sorted(records, key=lambda r: r.index)]
    return "\n".join(lines) + "\n"


def read_pose_file(path):
    """Records of a pose file written by `write_pose_file`."""
    records = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        raise InputError(f"cannot read pose file {path}") from None
    except UnicodeDecodeError:
        raise InputError(f"pose file {path} is not UTF-8 text") from None
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            index = int(parts[0])
            if len(parts) >= 3 and parts[2] == "FAILED":
                records.append(PoseRecord(index, parts[1], failure=" ".join(parts[3:])))
                continue
            if len(parts) not in (9, 11):
                raise ValueError
            vals = [float(v) for v in parts[2:]]
            if not (np.all(np.isfinite(vals)) and np.linalg.norm(vals[0:4]) > 1e-12):
                raise ValueError
            pose = np.eye(4)
            pose[:3, :3] = quaternion_to_rotation(vals[0:4])
        except ValueError:
            raise InputError(f"pose file {path} line {n} is not 'index image qw qx qy qz tx ty tz'") from None
        pose[:3, 3] = vals[4:7]
        rec = PoseRecord(index, parts[1], pose_cw=pose)
        if len(vals) == 9:
            rec.t_err, rec.r_err = vals[7] / 100.0, vals[8]
        records.append(rec)
    return records


def write_tum(path, records, timestamps=None):
    """Writes a TUM trajectory (see `tum_text`) through a temporary file and a rename."""
    atomic_write_text(path, tum_text(records, timestamps))


def tum_text(records, timestamps=None):
    """TUM trajectory `timestamp tx ty tz qx qy qz qw`; the timestamp defaults to the frame index."""
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    for rec in sorted(records, key=lambda r: r.index):
        if rec.pose_cw is None:
            continue
        w, x, y, z = rotation_to_quaternion(rec.pose_cw[:3, :3])
        t = rec.pose_cw[:3, 3]
        stamp = float(rec.index if timestamps is None else timestamps[rec.index])
        lines.append(f"{stamp:.6f} {t[0]:.8f} {t[1]:.8f} {t[2]:.8f} {x:.8f} {y:.8f} {z:.8f} {w:.8f}")
    return "\n".join(lines) + "\n"


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
    if data.size and not np.all(np.isfinite(data)):
        raise InputError(f"TUM trajectory {path} holds non-finite numbers")
    poses = np.tile(np.eye(4), (len(data), 1, 1))
    for i, row in enumerate(data):
        try:
            poses[i, :3, :3] = quaternion_to_rotation([row[7], row[4], row[5], row[6]])
        except ValueError as e:
            raise InputError(f"TUM trajectory {path} row {i + 1}: {e}") from None
        poses[i, :3, 3] = row[1:4]
    return data[:, 0] if data.size else np.zeros(0), poses


def pnp_output_paths(pose_file):
    """(pose file, TUM trajectory `<stem>.tum.txt`, summary `<stem>.summary.json`) of PnP."""
    pose_file = Path(pose_file)
    stem = pose_file.with_suffix("").name if pose_file.suffix else pose_file.name
    return (pose_file, pose_file.with_name(stem + ".tum.txt"),
            pose_file.with_name(stem + ".summary.json"))


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
