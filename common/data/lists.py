"""List files (image_list.txt, label_list.txt, pose_list.txt) and sequence boundaries."""

import os
from pathlib import Path

import numpy as np

from common.errors import InputError


def read_list(path):
    """Paths of a list file, one per line, relative ones resolved against the list's folder.

    Blank lines are skipped; returns absolute path strings in file order.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError:
        raise InputError(f"cannot read list file {path}") from None
    base = path.resolve().parent
    out = []
    for line in lines:
        entry = line.strip()
        if entry:
            out.append(entry if os.path.isabs(entry) else str(base / entry))
    return out


def sequence_ids(image_paths, sequence_length=None):
    """[N] int sequence number of each frame, 0-based, increasing in list order.

    With `sequence_length`, every run of that many frames is a sequence; otherwise a new
    sequence starts wherever the image's parent folder changes (seq-01 → seq-02).
    """
    n = len(image_paths)
    if sequence_length:
        return np.arange(n) // int(sequence_length)
    ids = np.zeros(n, dtype=np.int64)
    for k in range(1, n):
        same = os.path.dirname(image_paths[k]) == os.path.dirname(image_paths[k - 1])
        ids[k] = ids[k - 1] + (0 if same else 1)
    return ids
