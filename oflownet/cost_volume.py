"""Cost volume of a frame pair and the soft-argmax that turns offset logits into flow (docs/reference.md §3)."""

import numpy as np
import tensorflow as tf

WINDOW = 8  # offsets −4…3 in x and y: 64 candidate positions per cell


def offsets(window=WINDOW):
    """[window², 2] offsets (dx, dy) in map cells, row-major over (dy, dx) like the volume."""
    half = window // 2
    dy, dx = np.meshgrid(np.arange(window) - half, np.arange(window) - half, indexing="ij")
    return np.stack([dx.ravel(), dy.ravel()], axis=-1).astype(np.float32)


def cost_volume(feat_prev, feat_cur, window=WINDOW):
    """[B, h, w, window, window, C] differences f_cur(p) − f_prev(p + d), d = (dx, dy).

    Entry [b, i, j, dy + half, dx + half] compares current cell (i, j) with previous cell
    (i + dy, j + dx); previous features are zero off the map. Built from window² shifted
    slices of a zero-padded copy, so nothing loops over pixels.
    """
    half = window // 2
    pad = [[0, 0], [half, window - 1 - half], [half, window - 1 - half], [0, 0]]
    padded = tf.pad(feat_prev, pad)
    h, w = tf.shape(feat_cur)[1], tf.shape(feat_cur)[2]
    rows = [tf.stack([padded[:, r:r + h, c:c + w] for c in range(window)], axis=3) for r in range(window)]
    return feat_cur[:, :, :, None, None, :] - tf.stack(rows, axis=3)


def expected_flow(logits_n64):
    """[N, 2] flow (x, y) in map cells: the softmax-weighted mean of the window's offsets."""
    window = int(round(np.sqrt(logits_n64.shape[-1])))
    probs = tf.nn.softmax(logits_n64, axis=-1)
    return tf.matmul(probs, tf.constant(offsets(window), dtype=probs.dtype))
