"""Kalman filter math (common/filter.py) against hand-computed numbers."""

import numpy as np
import pytest

from common import filter as kf


def cells(values, channels):
    """A [1, 1, n, channels] float32 map from n rows of values."""
    return np.asarray(values, np.float32).reshape(1, 1, -1, channels)


def test_update_hand_case():
    # P⁻ = 1, R = 3 → K = 0.25; x = 0 + 0.25·(4, 8, −4); P = 0.75.
    coords, var = kf.update(cells([0, 0, 0], 3), cells([1.0], 1), cells([4, 8, -4], 3), cells([3.0], 1))
    np.testing.assert_allclose(coords.numpy().ravel(), [1, 2, -1], rtol=1e-6)
    np.testing.assert_allclose(var.numpy().ravel(), [0.75], rtol=1e-6)


def test_update_limits():
    prior = cells([[1, 2, 3], [1, 2, 3]], 3)
    meas = cells([[5, 5, 5], [5, 5, 5]], 3)
    # Cell 0: huge prior variance, K → 1 (state = measurement, P = R).
    # Cell 1: tiny prior variance, K → 0 (state = prior, P = P⁻).
    coords, var = kf.update(prior, cells([1e6, 1e-10], 1), meas, cells([1e-4, 1.0], 1))
    coords, var = coords.numpy()[0, 0], var.numpy().ravel()
    np.testing.assert_allclose(coords[0], [5, 5, 5], rtol=1e-6)
    np.testing.assert_allclose(coords[1], [1, 2, 3], rtol=1e-6)
    np.testing.assert_allclose(var, [1e-4, 1e-10], rtol=1e-5)


def test_nis_hand_case():
    # Innovation (1, 2, 2): 9 / (1 + 2) = 3.
    value = kf.nis(cells([1, 1, 1], 3), cells([1.0], 1), cells([2, 3, 3], 3), cells([2.0], 1))
    assert value.shape == (1, 1, 1, 1)
    np.testing.assert_allclose(value.numpy().ravel(), [3.0], rtol=1e-6)


def test_nis_output_replaces_only_failing_cells():
    prior = cells([[0, 0, 0], [0, 0, 0], [0, 0, 0]], 3)
    # NIS = 1/2 (kept), 4²/2 = 8 (> 7.815, replaced), 3.9²/2 = 7.605 (just under the cut, kept).
    meas = cells([[1, 0, 0], [4, 0, 0], [3.9, 0, 0]], 3)
    prior_var, meas_var = cells([1.0, 1.0, 1.0], 1), cells([1.0, 1.0, 1.0], 1)
    post, post_var = kf.update(prior, prior_var, meas, meas_var)
    shown = kf.nis_output(post, prior, prior_var, meas, meas_var).numpy()[0, 0]
    np.testing.assert_allclose(shown[:, 0], [0.5, 4.0, 1.95], rtol=1e-6)
    # The state itself is the Kalman posterior in every cell.
    np.testing.assert_allclose(post.numpy()[0, 0, :, 0], [0.5, 2.0, 1.95], rtol=1e-6)
    np.testing.assert_allclose(post_var.numpy().ravel(), [0.5, 0.5, 0.5], rtol=1e-6)
    assert kf.NIS_THRESHOLD == 7.815


def random_state(h=4, w=5, seed=0):
    rng = np.random.default_rng(seed)
    coords = rng.normal(size=(1, h, w, 3)).astype(np.float32)
    var = rng.uniform(0.01, 0.1, size=(1, h, w, 1)).astype(np.float32)
    return coords, var


def test_predict_zero_flow_is_identity_plus_process_noise():
    coords, var = random_state()
    process = np.full_like(var, 0.0004)
    prior, prior_var = kf.predict(coords, var, np.zeros((1, 4, 5, 2), np.float32), process)
    np.testing.assert_array_equal(prior.numpy(), coords)
    np.testing.assert_allclose(prior_var.numpy(), var + 0.0004, rtol=1e-6)


def test_predict_floors_both_variances():
    coords, _ = random_state()
    zero = np.zeros((1, 4, 5, 1), np.float32)
    _, prior_var = kf.predict(coords, zero, np.zeros((1, 4, 5, 2), np.float32), zero)
    np.testing.assert_allclose(prior_var.numpy(), 2e-10, rtol=1e-5)


@pytest.mark.parametrize("dx, dy", [(1, 0), (-1, 2), (0, -3)])
def test_predict_integer_flow_is_an_exact_shift(dx, dy):
    coords, var = random_state()
    flow = np.zeros((1, 4, 5, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    prior, prior_var = kf.predict(coords, var, flow, np.zeros_like(var))
    prior, prior_var = prior.numpy()[0], prior_var.numpy()[0, ..., 0]
    for i in range(4):
        for j in range(5):
            si, sj = i + dy, j + dx
            if 0 <= si < 4 and 0 <= sj < 5:
                np.testing.assert_array_equal(prior[i, j], coords[0, si, sj])
                np.testing.assert_allclose(prior_var[i, j], var[0, si, sj, 0] + 1e-10, rtol=1e-6)
            else:
                assert prior_var[i, j] == kf.OUT_OF_VIEW_VARIANCE


def test_predict_fractional_flow_warps_sigma_then_squares():
    coords, var = random_state()
    flow = np.zeros((1, 4, 5, 2), np.float32)
    flow[..., 0] = 0.5
    prior, prior_var = kf.predict(coords, var, flow, np.full_like(var, 0.001))
    sigma = np.sqrt(var[0, ..., 0])
    # Cell (2, 1) samples halfway between previous cells (2, 1) and (2, 2).
    np.testing.assert_allclose(prior.numpy()[0, 2, 1], (coords[0, 2, 1] + coords[0, 2, 2]) / 2, rtol=1e-6)
    expected_var = ((sigma[2, 1] + sigma[2, 2]) / 2) ** 2 + 0.001
    np.testing.assert_allclose(prior_var.numpy()[0, 2, 1, 0], expected_var, rtol=1e-6)
    # The last column samples at x = 4.5, half off the map: out of view.
    np.testing.assert_array_equal(prior_var.numpy()[0, :, 4, 0], kf.OUT_OF_VIEW_VARIANCE)


def test_out_of_view_boundary_is_the_closed_map_rectangle():
    flow = np.zeros((1, 2, 3, 2), np.float32)
    flow[0, 0, 0] = (-1e-3, 0)     # just left of column 0: out
    flow[0, 1, 2] = (0, 1e-3)      # just below the last row: out
    flow[0, 0, 2] = (0, 1.0)       # exactly onto the last row: in
    flow[0, 1, 0] = (2.0, -1.0)    # exactly onto the corner (0, 2): in
    inside = kf.in_view(flow).numpy()[0, ..., 0]
    np.testing.assert_array_equal(inside, [[False, True, True], [True, True, False]])


def test_out_of_view_cell_takes_the_measurement():
    coords, var = random_state()
    flow = np.full((1, 4, 5, 2), -10.0, np.float32)
    prior, prior_var = kf.predict(coords, var, flow, np.full_like(var, 1e-4))
    meas = np.ones_like(coords)
    post, post_var = kf.update(prior, prior_var, meas, np.full_like(var, 0.01))
    np.testing.assert_allclose(post.numpy(), meas, rtol=1e-6)
    np.testing.assert_allclose(post_var.numpy(), 0.01, rtol=1e-5)


def test_mixture_prior_variance_is_the_variance_of_the_bilinear_mix():
    # Cell (1, 0) samples at x = 0.25 between previous cells (1, 0) and (1, 1): weights 0.75, 0.25.
    coords = np.zeros((1, 2, 3, 3), np.float32)
    coords[0, 1, 0] = (1.0, 2.0, 3.0)
    coords[0, 1, 1] = (1.0, 2.0, 3.4)  # 40 cm deeper: a depth edge
    var = np.zeros((1, 2, 3, 1), np.float32)
    var[0, 1, 0], var[0, 1, 1] = 0.01, 0.04
    flow = np.zeros((1, 2, 3, 2), np.float32)
    flow[0, 1, 0, 0] = 0.25
    q = np.full_like(var, 0.002)
    prior, prior_var = kf.predict(coords, var, flow, q, prior_variance="mixture", process_noise_scale=3.0)
    np.testing.assert_allclose(prior.numpy()[0, 1, 0], (1.0, 2.0, 3.1), rtol=1e-6)
    # 0.75·0.01 + 0.25·0.04 for the variances; the spread 0.75·0.25·0.4² over 3 coordinates.
    spread = 0.75 * 0.25 * 0.16 / 3
    np.testing.assert_allclose(prior_var.numpy()[0, 1, 0, 0], 0.0175 + spread + 3 * 0.002, rtol=1e-5)
    # The original's for the same cell: (0.75·0.1 + 0.25·0.2)² + σ_q².
    _, original = kf.predict(coords, var, flow, q)
    np.testing.assert_allclose(original.numpy()[0, 1, 0, 0], 0.125 ** 2 + 0.002, rtol=1e-5)
    # Where the sources agree and the flow is whole, both are the source's variance (+ scaled σ_q²).
    np.testing.assert_allclose(prior_var.numpy()[0, 0, 1, 0], 1e-10 + 3 * 0.002, rtol=1e-5)
    with pytest.raises(ValueError, match="prior_variance"):
        kf.predict(coords, var, flow, q, prior_variance="sigma")
