"""Photometric loss of OFlowNet (oflownet/losses.py) on hand cases."""

import numpy as np

from oflownet.losses import SSIM_C1, photometric, photometric_map, photometric_terms

H, W = 6, 7


def constant(value):
    return np.full((1, H, W, 3), value, np.float32)


def zero_flow():
    return np.zeros((1, H, W, 2), np.float32)


def test_identical_images_cost_nothing():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(1, H, W, 3)).astype(np.float32)
    np.testing.assert_allclose(photometric_map(image, image, zero_flow()).numpy(), 0.0, atol=1e-6)
    assert abs(float(photometric(image, image, zero_flow(), np.ones((1, H, W, 1))))) < 1e-6


def test_constant_images_and_the_normalization():
    # 127.5 → 0 and 191.25 → 0.5 in [−1, 1]: |Δ| = 0.5; SSIM = C1 / (0.25 + C1) (zero variances).
    ssim = SSIM_C1 / (0.25 + SSIM_C1)
    per_channel = 0.85 * (1 - ssim) / 2 + 0.15 * 0.5
    loss_map = photometric_map(constant(127.5), constant(191.25), zero_flow()).numpy()
    np.testing.assert_allclose(loss_map, per_channel, rtol=1e-6)
    mask = np.zeros((1, H, W, 1), np.float32)
    mask[0, :2] = 1.0  # 14 valid cells
    total, count = photometric_terms(constant(127.5), constant(191.25), zero_flow(), mask)
    np.testing.assert_allclose([float(total), float(count)], [14 * 3 * per_channel, 14], rtol=1e-4)
    # Summed over the 3 channels, divided by (valid cells + 1), as the original.
    np.testing.assert_allclose(float(photometric(constant(127.5), constant(191.25), zero_flow(), mask)),
                               14 * 3 * per_channel / 15, rtol=1e-4)


def ramp(offset=0.0):
    """Brightness growing by 20 per column (all rows and channels alike)."""
    columns = 20.0 * np.arange(W, dtype=np.float32) + offset
    return np.broadcast_to(columns[None, None, :, None], (1, H, W, 3)).copy()


def test_integer_flow_undoes_a_shift():
    # The current frame sees at column j what the previous one had at column j + 1.
    prev, cur = ramp(), ramp(20.0)
    flow = zero_flow()
    flow[..., 0] = 1.0
    loss_map = photometric_map(prev, cur, flow).numpy()
    # Exact where the 3×3 window samples only in-view cells: columns 0 … W−3.
    np.testing.assert_allclose(loss_map[:, :, :W - 2], 0.0, atol=1e-6)
    assert np.all(loss_map[:, :, W - 1] > 0.05)
    # With no flow the same pair costs |Δ| = 20/255·2 per channel and more.
    assert np.all(photometric_map(prev, cur, zero_flow()).numpy() >= 0.15 * 40 / 255 - 1e-6)


def test_half_cell_flow_gives_a_known_l1_and_ssim():
    # Warping a ramp by half a cell adds 10 grey levels: |Δ| = 10/255·2 in [−1, 1].
    prev, cur = ramp(), ramp()
    flow = zero_flow()
    flow[..., 0] = 0.5
    loss_map = photometric_map(prev, cur, flow).numpy()
    j = np.arange(1, W - 2)  # 3×3 windows inside the map and in view
    mu_cur = (20.0 * j) / 255 * 2 - 1
    mu_warp = (20.0 * j + 10) / 255 * 2 - 1
    # Both windows have equal variance and that same covariance, so SSIM reduces to the luminance term.
    ssim = (2 * mu_cur * mu_warp + SSIM_C1) / (mu_cur ** 2 + mu_warp ** 2 + SSIM_C1)
    expected = 0.85 * (1 - ssim) / 2 + 0.15 * 20 / 255
    np.testing.assert_allclose(loss_map[0, :, j, 0], np.broadcast_to(expected[:, None], (len(j), H)), rtol=5e-4)
