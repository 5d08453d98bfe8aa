"""Sequence boundaries of a frame list (the list files themselves: common.formats.read_list)."""

import os

import numpy as np


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
