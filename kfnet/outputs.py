"""Writing per-frame outputs safely, and knowing when an output folder is complete.

Each file is written to a temporary name and renamed, so a killed run (or a full disk) never
leaves a torn file; the folder is locked for the writing process (kfnet.locks). `OUT/run.json` records what produced the folder (a signature: model checkpoint and
settings); a re-run with the same signature skips frames already written, a different one
starts over, and `complete: true` marks a finished folder.
"""

import json
from pathlib import Path

import numpy as np

from kfnet.data.labels import HEADER_ERRORS
from kfnet.errors import InputError
from kfnet.locks import atomic_write, atomic_write_text, lock_folder

RUN_INFO = "run.json"


def save_npy(path, array):
    """np.save (float32) through a temporary file and a rename; OutputError if it cannot be written."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    atomic_write(path, lambda f: np.save(f, array))


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


def coord_file(folder, k):
    return Path(folder) / f"coord_{k}.npy"


def coord_output(coords_world_hw3, sigma_hw1):
    """[h, w, 4] float32: world x, y, z and confidence 1/σ (SPEC §2)."""
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
