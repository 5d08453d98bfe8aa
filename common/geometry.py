"""Shared geometry: rigid transforms of coordinate maps, the pixel of each map cell, bilinear sampling."""

import numpy as np

CELL = 8  # image pixels per map cell
# Map cell (i, j) stands for image pixel (x, y) = (CELL·j + CELL_OFFSET, CELL·i + CELL_OFFSET).
# The original shrinks full-resolution labels and images with TF1 resize_nearest_neighbor /
# resize_bilinear (no corner alignment, no half-pixel centres), which pick pixel (8j, 8i): its
# released weights predict the scene coordinate of that pixel, and so do this project's models.
CELL_OFFSET = 0


def cell_pixels(h, w, cell=CELL):
    """[h, w, 2] float64 image pixel (x, y) that each map cell stands for: (cell·j, cell·i) + offset."""
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([cell * jj, cell * ii], axis=-1).astype(np.float64) + CELL_OFFSET


def pixel_to_map(xy, cell=CELL):
    """Map position (column, row) of image pixel positions [..., 2]: the inverse of cell_pixels."""
    return (np.asarray(xy, dtype=np.float64) - CELL_OFFSET) / cell


def transform_points(matrix_44, points_n3):
    """Applies a 4×4 transform to [..., 3] points (numpy, float64 math)."""
    m = np.asarray(matrix_44, dtype=np.float64)
    p = np.asarray(points_n3, dtype=np.float64)
    return p @ m[:3, :3].T + m[:3, 3]


def transform_coords(matrix_44, coords_bhw3):
    """Applies a 4×4 transform to a [..., 3] tensor of scene coordinates (TF)."""
    import tensorflow as tf

    m = tf.cast(matrix_44, coords_bhw3.dtype)
    return tf.linalg.matvec(m[:3, :3], coords_bhw3) + m[:3, 3]


def bilinear_sample(image_bhwc, xy_bhw2):
    """[B, h', w', C] values of `image` at map positions xy (x = column, y = row), zero off the map.

    Cell centres sit at integer positions, so the map covers [-0.5, w - 0.5] × [-0.5, h - 0.5]
    in the sense that a sample at x = -0.5 mixes the first column half-and-half with zero
    padding. Differentiable w.r.t. both the image and xy (through the bilinear weights).
    """
    import tensorflow as tf

    image = tf.convert_to_tensor(image_bhwc)
    xy = tf.cast(xy_bhw2, image.dtype)
    height, width = tf.shape(image)[1], tf.shape(image)[2]
    x, y = xy[..., 0], xy[..., 1]
    x0, y0 = tf.floor(x), tf.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    result = 0.0
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            on_map = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            # Clamp so the gather stays legal; the on_map factor zeroes the clamped reads.
            index = tf.stack([tf.clip_by_value(yi, 0, height - 1), tf.clip_by_value(xi, 0, width - 1)], axis=-1)
            weight = wx * wy * tf.cast(on_map, image.dtype)
            result += weight[..., None] * tf.gather_nd(image, index, batch_dims=1)
    return result


def ground_truth_flow(points_world_hw3, pose_prev_cw, camera_33, cell=CELL):
    """[h, w, 2] true flow (x, y) in map cells: where each current cell's scene point lies in the
    previous frame's map, minus the cell (the filter's convention, common/filter.py).

    points_world_hw3 are the current cells' ground-truth scene coordinates; pose_prev_cw is the
    previous camera-to-world pose; camera_33 the image intrinsics. Pixels become map positions
    through pixel_to_map, the inverse of cell_pixels. Points at or behind the previous camera get
    +inf (off every map).
    """
    world_to_cam = np.linalg.inv(np.asarray(pose_prev_cw, dtype=np.float64))
    p = transform_points(world_to_cam, points_world_hw3)
    k = np.asarray(camera_33, dtype=np.float64)
    z = p[..., 2]
    ahead = z > 1e-6
    z = np.where(ahead, z, 1.0)
    u = k[0, 0] * p[..., 0] / z + k[0, 1] * p[..., 1] / z + k[0, 2]
    v = k[1, 1] * p[..., 1] / z + k[1, 2]
    h, w = z.shape
    flow = (np.stack([u, v], axis=-1) - cell_pixels(h, w, cell)) / cell
    return np.where(ahead[..., None], flow, np.inf)
