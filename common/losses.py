"""Losses and metrics of docs/reference.md §5, as free functions on [B, h, w, ·] tensors.

Every masked mean here divides by (number of valid cells + 1), as the original does, so an
all-invalid batch gives 0 rather than NaN. `*_terms` variants return (sum, count) so that a
distributed step can divide by the count over the global batch.
"""

import tensorflow as tf

from common.geometry import CELL, CELL_OFFSET

MIN_SIGMA = 1e-5
ACCURACY_THRESHOLD = 0.05  # metres


def nll_map(pred_bhw3, sigma_bhw1, gt_bhw3, cap=None):
    """Per-cell Gaussian NLL ℓ = 3·log σ + ‖x − x_gt‖² / (2σ²), σ ≥ 1e−5; ℓ ≤ cap if given."""
    sigma = tf.maximum(sigma_bhw1, MIN_SIGMA)
    sq = tf.reduce_sum(tf.square(pred_bhw3 - gt_bhw3), axis=-1, keepdims=True)
    loss = 3.0 * tf.math.log(sigma) + sq / (2.0 * tf.square(sigma))
    if cap is not None:
        # Cells whose loss is above the cap are treated as hopeless: constant, no gradient.
        loss = tf.minimum(loss, cap)
    return loss


def coord_nll_terms(pred_bhw3, sigma_bhw1, gt_bhw3, mask_bhw1, cap=None):
    """(Σ over valid cells of ℓ, number of valid cells)."""
    mask = tf.cast(mask_bhw1, pred_bhw3.dtype)
    loss = nll_map(pred_bhw3, sigma_bhw1, gt_bhw3, cap)
    return tf.reduce_sum(loss * mask), tf.reduce_sum(mask)


def coord_nll(pred_bhw3, sigma_bhw1, gt_bhw3, mask_bhw1, cap=None):
    """Σ_valid ℓ / (n_valid + 1): the coordinate loss of every stage."""
    total, count = coord_nll_terms(pred_bhw3, sigma_bhw1, gt_bhw3, mask_bhw1, cap)
    return total / (count + 1.0)


def smoothness_terms(coords_bhw3, image_bhw3, mask_bhw1):
    """(Σ edge-aware smoothness, n_valid) of a coordinate map; image in [0, 255] at map size.

    Squared neighbour differences (mean over x, y, z), weighted by exp(−0.625 · mean |∇I|)
    so that changes across image edges cost little.
    """
    mask = tf.cast(mask_bhw1, coords_bhw3.dtype)
    dx = tf.reduce_mean(tf.square(coords_bhw3[:, :, :-1] - coords_bhw3[:, :, 1:]), -1, keepdims=True)
    dy = tf.reduce_mean(tf.square(coords_bhw3[:, :-1] - coords_bhw3[:, 1:]), -1, keepdims=True)
    wx = tf.exp(-0.625 * tf.reduce_mean(tf.abs(image_bhw3[:, :, :-1] - image_bhw3[:, :, 1:]), -1, keepdims=True))
    wy = tf.exp(-0.625 * tf.reduce_mean(tf.abs(image_bhw3[:, :-1] - image_bhw3[:, 1:]), -1, keepdims=True))
    total = tf.reduce_sum(dx * wx * mask[:, :, :-1]) + tf.reduce_sum(dy * wy * mask[:, :-1])
    return total, tf.reduce_sum(mask)


def smoothness(coords_bhw3, image_bhw3, mask_bhw1):
    """Edge-aware smoothness of a coordinate map over valid cells (docs/reference.md §5.2)."""
    total, count = smoothness_terms(coords_bhw3, image_bhw3, mask_bhw1)
    return total / (count + 1.0)


def coord_errors(pred_bhw3, gt_bhw3):
    """[B, h, w] Euclidean distance in metres."""
    return tf.norm(pred_bhw3 - gt_bhw3, axis=-1)


def accuracy_terms(pred_bhw3, gt_bhw3, mask_bhw1, threshold=ACCURACY_THRESHOLD):
    """(number of valid cells within `threshold` metres, number of valid cells)."""
    mask = tf.cast(mask_bhw1[..., 0], pred_bhw3.dtype)
    close = tf.cast(coord_errors(pred_bhw3, gt_bhw3) <= threshold, pred_bhw3.dtype)
    return tf.reduce_sum(close * mask), tf.reduce_sum(mask)


def accuracy(pred_bhw3, gt_bhw3, mask_bhw1, threshold=ACCURACY_THRESHOLD):
    """Share of valid cells within 5 cm of the ground truth."""
    hits, count = accuracy_terms(pred_bhw3, gt_bhw3, mask_bhw1, threshold)
    return hits / tf.maximum(count, 1.0)


def weight_decay(variables, scale):
    """scale · Σ‖w‖²/2 over kernels and biases (docs/reference.md §5: all trainable weights)."""
    if not variables:
        return tf.constant(0.0)
    return scale * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables])


def map_size_image(images_bhw3):
    """[B, h, w, 3] image at map size: one pixel per cell, the cell's own (cell_pixels), 0..255.

    Used by the photometric and smoothness losses. The original shrinks images with TF1
    resize_bilinear / resize_nearest_neighbor, which at an 8× shrink pick pixel (8j, 8i).
    """
    return tf.cast(images_bhw3, tf.float32)[:, CELL_OFFSET::CELL, CELL_OFFSET::CELL]
