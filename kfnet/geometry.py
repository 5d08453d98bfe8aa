"""Shared geometry: rigid transforms of coordinate maps, map-cell pixel centres, bilinear sampling."""

import numpy as np
import tensorflow as tf

CELL = 8  # image pixels per map cell


def cell_centres(h, w, cell=CELL):
    """[h, w, 2] pixel (x, y) of each map cell's centre: (cell·j + cell/2, cell·i + cell/2)."""
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([cell * jj + cell // 2, cell * ii + cell // 2], axis=-1).astype(np.float64)


def transform_points(matrix_44, points_n3):
    """Applies a 4×4 transform to [..., 3] points (numpy, float64 math)."""
    m = np.asarray(matrix_44, dtype=np.float64)
    p = np.asarray(points_n3, dtype=np.float64)
    return p @ m[:3, :3].T + m[:3, 3]


def transform_coords(matrix_44, coords_bhw3):
    """Applies a 4×4 transform to a [..., 3] tensor of scene coordinates (TF)."""
    m = tf.cast(matrix_44, coords_bhw3.dtype)
    return tf.linalg.matvec(m[:3, :3], coords_bhw3) + m[:3, 3]
