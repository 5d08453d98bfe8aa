"""Writing per-frame outputs safely, and knowing when an output folder is complete.

Each file is written to a temporary name and renamed, so a killed run never leaves a torn
file. `OUT/run.json` records what produced the folder (a signature: model checkpoint and
settings); a re-run with the same signature skips frames already written, a different one
starts over, and `complete: true` marks a finished folder.
"""

import json
import os
from pathlib import Path

import numpy as np

from common.errors import InputError

RUN_INFO = "run.json"


def save_npy(path, array):
    """np.save through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype=np.float32))
    os.replace(tmp, path)


def coord_file(folder, k):
    return Path(folder) / f"coord_{k}.npy"


def coord_output(coords_world_hw3, sigma_hw1):
    """[h, w, 4] float32: world x, y, z and confidence 1/σ (SPEC §2)."""
    conf = 1.0 / np.maximum(np.asarray(sigma_hw1, dtype=np.float64), 1e-12)
    return np.concatenate([coords_world_hw3, conf], axis=-1).astype(np.float32)


def open_output_folder(folder, signature, flag="--output_folder"):
    """Creates the folder; returns True if it already holds a complete run with this signature."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{flag} {folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
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
        return json.loads(path.read_text())
    except ValueError:
        return None


def write_run_info(folder, info):
    path = Path(folder) / RUN_INFO
    tmp = path.with_name(RUN_INFO + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def mark_complete(folder, summary=None):
    info = read_run_info(folder) or {}
    info["complete"] = True
    if summary is not None:
        info["summary"] = summary
    write_run_info(folder, info)
