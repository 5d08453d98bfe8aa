"""The per-cell Kalman filter over scene-coordinate maps (docs/reference.md §4): no weights, pure TF math.

All maps are [B, h, w, ·]; coordinates in the normalized scene frame (metres); every
uncertainty argument and result is a variance (σ², one per cell, shared by x, y, z);
flow is in map cells, from a current-frame cell to its position in the previous frame.
"""

import tensorflow as tf

from common.geometry import bilinear_sample

MIN_VARIANCE = 1e-10  # (1e-5)², the σ floor of the losses
OUT_OF_VIEW_VARIANCE = 1e6  # prior variance of cells that see nothing of the previous map
NIS_THRESHOLD = 7.815  # χ² with 3 degrees of freedom, 95 %


def sample_points(flow_bhw2):
    """[B, h, w, 2] position (x, y) in the previous map that each current cell comes from."""
    h, w = tf.shape(flow_bhw2)[1], tf.shape(flow_bhw2)[2]
    jj, ii = tf.meshgrid(tf.range(w), tf.range(h))
    grid_hw2 = tf.cast(tf.stack([jj, ii], axis=-1), flow_bhw2.dtype)
    return grid_hw2[None] + flow_bhw2


def warp(map_bhwc, flow_bhw2):
    """Previous-frame map sampled bilinearly at cell + flow (zero off the map)."""
    return bilinear_sample(map_bhwc, sample_points(flow_bhw2))


def in_view(flow_bhw2):
    """[B, h, w, 1] bool: cell + flow lies in [0, w−1] × [0, h−1].

    Exactly there every bilinear neighbour with a non-zero weight is on the map, so the
    warped value is a true interpolation of previous cells, with no zero padding mixed in.
    """
    xy = sample_points(flow_bhw2)
    h = tf.cast(tf.shape(flow_bhw2)[1] - 1, xy.dtype)
    w = tf.cast(tf.shape(flow_bhw2)[2] - 1, xy.dtype)
    x, y = xy[..., :1], xy[..., 1:]
    return (x >= 0) & (x <= w) & (y >= 0) & (y <= h)


def warped_labels(flow_bhw2, coords_prev_bhw3, mask_prev_bhw1):
    """(previous labels warped by the flow [B, h, w, 3], [B, h, w] bool: the sample point is in
    view and every bilinear neighbour it mixes is a valid previous label)."""
    prior = warp(coords_prev_bhw3, flow_bhw2)
    full = warp(mask_prev_bhw1, flow_bhw2)[..., 0] > 1 - 1e-4
    return prior, full & in_view(flow_bhw2)[..., 0]


PRIOR_VARIANCES = ("warped_sigma", "mixture")


def predict(post_coords_bhw3, post_var_bhw1, flow_bhw2, process_var_bhw1, prior_variance="warped_sigma",
            process_noise_scale=1.0):
    """(prior coords [B,h,w,3], prior variance [B,h,w,1]) of the current frame.

    prior_variance "warped_sigma" (the original's): the previous σ (not the variance) is warped
    and then squared. "mixture" (not in the original; test time only, docs/reference.md §4): the
    variance of the bilinear mixture the warp takes of the 4 source cells, warp(σ²) + their
    weighted spread Σ wᵢ‖xᵢ − x̄‖²/3, which grows where they disagree (depth edges).
    process_noise_scale multiplies the process variance σ_q² (1: the original).
    The original sampled zeros for cells whose source lies off the previous map, i.e. a
    prior at (0, 0, 0) as confident as its neighbours; here those cells get variance 1e6,
    so the Kalman gain is ≈ 1 and the measurement wins.
    """
    if prior_variance not in PRIOR_VARIANCES:
        raise ValueError(f"prior_variance must be one of {PRIOR_VARIANCES}, got {prior_variance!r}")
    prior_coords = warp(post_coords_bhw3, flow_bhw2)
    if prior_variance == "mixture":
        # One bilinear sample of [x², P] (coordinates above): the mix's second moment and variance.
        floored = tf.maximum(post_var_bhw1, MIN_VARIANCE)
        mixed = warp(tf.concat([tf.square(post_coords_bhw3), floored], axis=-1), flow_bhw2)
        spread = tf.reduce_mean(mixed[..., :3] - tf.square(prior_coords), axis=-1, keepdims=True)
        warped_var = tf.maximum(mixed[..., 3:], MIN_VARIANCE) + tf.maximum(spread, 0.0)
    else:
        # The floor keeps sqrt's gradient finite where a posterior variance is 0.
        post_sigma = tf.sqrt(tf.maximum(post_var_bhw1, MIN_VARIANCE))
        warped_var = tf.maximum(tf.square(warp(post_sigma, flow_bhw2)), MIN_VARIANCE)
    prior_var = warped_var + process_noise_scale * tf.maximum(process_var_bhw1, MIN_VARIANCE)
    prior_var = tf.where(in_view(flow_bhw2), prior_var, tf.cast(OUT_OF_VIEW_VARIANCE, prior_var.dtype))
    return prior_coords, prior_var


def update(prior_coords_bhw3, prior_var_bhw1, meas_coords_bhw3, meas_var_bhw1):
    """(posterior coords, posterior variance): K = P⁻/(P⁻+R), x = x⁻ + K(z − x⁻), P = (1−K)P⁻."""
    prior_coords_bhw3, prior_var_bhw1, meas_coords_bhw3, meas_var_bhw1 = map(
        tf.convert_to_tensor, (prior_coords_bhw3, prior_var_bhw1, meas_coords_bhw3, meas_var_bhw1))
    total = prior_var_bhw1 + meas_var_bhw1
    gain = prior_var_bhw1 / total
    coords = prior_coords_bhw3 + gain * (meas_coords_bhw3 - prior_coords_bhw3)
    # (1 − K)P⁻ written as P⁻R/(P⁻+R): with P⁻ = 1e6, K rounds to 1 in float32 and
    # (1 − K) would give P = 0 instead of ≈ R.
    var = prior_var_bhw1 * meas_var_bhw1 / total
    return coords, var


def nis(prior_coords_bhw3, prior_var_bhw1, meas_coords_bhw3, meas_var_bhw1):
    """[B, h, w, 1] normalized innovation squared Σ_c (z_c − x⁻_c)² / (P⁻ + R)."""
    sq = tf.reduce_sum(tf.square(tf.convert_to_tensor(meas_coords_bhw3) - prior_coords_bhw3), axis=-1, keepdims=True)
    return sq / (tf.convert_to_tensor(prior_var_bhw1) + meas_var_bhw1)


def nis_output(post_coords_bhw3, prior_coords_bhw3, prior_var_bhw1, meas_coords_bhw3, meas_var_bhw1,
               threshold=NIS_THRESHOLD):
    """[B, h, w, 3] coordinates written out with the innovation test on: the measurement where a
    cell fails it (NIS > threshold), the posterior elsewhere.

    As in the original, only the output changes: the filter's state and the written σ stay the
    Kalman posterior's.
    """
    reject = nis(prior_coords_bhw3, prior_var_bhw1, meas_coords_bhw3, meas_var_bhw1) > threshold
    return tf.where(reject, tf.convert_to_tensor(meas_coords_bhw3), post_coords_bhw3)
