"""OFlowNet's photometric loss (docs/reference.md §5.2); the edge-aware smoothness is common.losses.smoothness.

Normalization, as in the original: the per-pixel loss is summed over the 3 colour channels
and over valid cells, then divided by (number of valid cells + 1), i.e. not by 3·n.
"""

import tensorflow as tf

from common.filter import warp

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def _mean3x3(x):
    # 'SAME' average pooling averages over the in-map neighbours only.
    return tf.nn.avg_pool2d(x, 3, 1, "SAME")


def ssim_dissimilarity(x, y):
    """Per-pixel clip((1 − SSIM)/2, 0, 1) with 3×3 mean-pooled statistics, per channel."""
    mu_x, mu_y = _mean3x3(x), _mean3x3(y)
    var_x = _mean3x3(x * x) - mu_x * mu_x
    var_y = _mean3x3(y * y) - mu_y * mu_y
    cov = _mean3x3(x * y) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
            / ((mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)))
    return tf.clip_by_value((1.0 - ssim) / 2.0, 0.0, 1.0)


def photometric_map(image_prev_bhw3, image_cur_bhw3, flow_bhw2):
    """[B, h, w, 3] 0.85·SSIM term + 0.15·|Δ| between the current image and the warped previous one.

    Images are at map size in 0..255; the previous one is sampled at cell + flow (zero off
    the map, as the original) and both are then scaled to [−1, 1].
    """
    warped = warp(image_prev_bhw3, flow_bhw2)
    a = image_cur_bhw3 / 255.0 * 2.0 - 1.0
    b = warped / 255.0 * 2.0 - 1.0
    return 0.85 * ssim_dissimilarity(a, b) + 0.15 * tf.abs(a - b)


def photometric_terms(image_prev_bhw3, image_cur_bhw3, flow_bhw2, mask_bhw1):
    """(Σ over valid cells and 3 channels of the photometric map, number of valid cells)."""
    mask = tf.cast(mask_bhw1, image_cur_bhw3.dtype)
    loss = photometric_map(image_prev_bhw3, image_cur_bhw3, flow_bhw2)
    return tf.reduce_sum(loss * mask), tf.reduce_sum(mask)


def photometric(image_prev_bhw3, image_cur_bhw3, flow_bhw2, mask_bhw1):
    """Photometric loss of the flow over the current frame's valid cells: Σ / (n_valid + 1)."""
    total, count = photometric_terms(image_prev_bhw3, image_cur_bhw3, flow_bhw2, mask_bhw1)
    return total / (count + 1.0)
