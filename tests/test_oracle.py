"""The true-flow filter bound (kfnet/oracle.py): ground-truth flow by hand, and the two regimes
that decide a temporal filter's gain (errors that change from frame to frame, errors that do not)."""

import numpy as np
import pytest

from common.geometry import cell_pixels, ground_truth_flow
from kfnet.oracle import Frame, analyse, filter_with_flow

K = np.array([[100.0, 0.0, 40.0], [0.0, 100.0, 32.0], [0.0, 0.0, 1.0]])


def wall_points(depth=2.0, h=8, w=10):
    """World points seen by cell centres of a camera at the origin looking down +z, on z = depth."""
    c = cell_pixels(h, w)
    return np.stack([(c[..., 0] - 40) / 100 * depth, (c[..., 1] - 32) / 100 * depth,
                     np.full((h, w), depth)], axis=-1)


def test_flow_is_zero_for_the_same_camera():
    np.testing.assert_allclose(ground_truth_flow(wall_points(), np.eye(4), K), 0.0, atol=1e-12)


def test_flow_of_a_sideways_step():
    # The previous camera stood 10 cm to the right: a point 2 m away sits 100·0.1/2 = 5 px,
    # i.e. 0.625 cells, further left in the previous image.
    prev = np.eye(4)
    prev[0, 3] = 0.1
    flow = ground_truth_flow(wall_points(), prev, K)
    np.testing.assert_allclose(flow[..., 0], -0.625, atol=1e-12)
    np.testing.assert_allclose(flow[..., 1], 0.0, atol=1e-12)


def test_points_behind_the_previous_camera_are_off_the_map():
    prev = np.eye(4)
    prev[2, 3] = 3.0  # 1 m beyond the wall, still looking down +z
    assert np.all(np.isinf(ground_truth_flow(wall_points(), prev, K)))


def still_camera(errors_nhw3, sigma=0.05):
    """Frames of a camera that does not move: one sequence, zero flow, measurement = label + error."""
    label = wall_points()
    valid = np.ones(label.shape[:2], bool)
    conf = np.full((*label.shape[:2], 1), 1.0 / sigma)
    return [Frame(label, valid, np.concatenate([label + e, conf], -1), np.zeros((*label.shape[:2], 2)), k == 0)
            for k, e in enumerate(errors_nhw3)]


def median_cm(frames, posteriors):
    return 100 * np.median(np.concatenate([np.linalg.norm(p - f.label, axis=-1).ravel()
                                           for f, p in zip(frames, posteriors)]))


def test_errors_that_change_every_frame_are_filtered_away():
    rng = np.random.default_rng(0)
    frames = still_camera(rng.normal(0.0, 0.05, (40, 8, 10, 3)))
    out = analyse(frames, [0.001, 10.0])
    assert abs(out["error_correlation"]) < 0.05
    assert out["two_frame_gain"] == pytest.approx(1 - np.sqrt(0.5), abs=0.02)
    assert out["warp_loss_mean_cm"] < 1e-4  # float32 bilinear sampling at integer positions
    # σ_q ≪ σ_r: the posterior is nearly the running mean of k frames, error ∝ 1/√k.
    assert out["true_flow_posterior_median_cm"][0.001] < 0.4 * out["measurement_median_cm"]
    # σ_q ≫ σ_r: the gain is ≈ 1 and the posterior is the measurement.
    assert out["true_flow_posterior_median_cm"][10.0] == pytest.approx(out["measurement_median_cm"], rel=1e-4)


def test_errors_that_repeat_every_frame_cannot_be_filtered_away():
    rng = np.random.default_rng(1)
    frames = still_camera(np.repeat(rng.normal(0.0, 0.05, (1, 8, 10, 3)), 40, axis=0))
    out = analyse(frames, [0.001])
    assert out["error_correlation"] == pytest.approx(1.0)
    assert out["two_frame_gain"] == pytest.approx(0.0, abs=1e-6)
    assert out["true_flow_posterior_median_cm"][0.001] == pytest.approx(out["measurement_median_cm"], rel=1e-5)


def test_a_new_sequence_restarts_from_its_measurement():
    rng = np.random.default_rng(2)
    frames = still_camera(rng.normal(0.0, 0.05, (6, 8, 10, 3)))
    frames[3].new_sequence = True
    posts = filter_with_flow(frames, 0.001)
    for k in (0, 3):
        np.testing.assert_allclose(posts[k], frames[k].measurement[..., :3], rtol=1e-6)
    assert median_cm(frames[4:5], posts[4:5]) < median_cm(frames[4:5], [frames[4].measurement[..., :3]])


def test_two_frame_gain_of_correlated_errors():
    from kfnet.oracle import two_frame_gain

    assert two_frame_gain(1.0) == 0.0
    assert two_frame_gain(0.0) == pytest.approx(1 - 1 / np.sqrt(2), abs=1e-15)
    assert two_frame_gain(0.86) == pytest.approx(1 - np.sqrt(0.93), abs=1e-15)
    # Against samples: two error fields correlating 0.6, averaged.
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 400_000))
    second = 0.6 * a + np.sqrt(1 - 0.6**2) * b
    measured = 1 - np.std((a + second) / 2) / np.std(a)
    assert measured == pytest.approx(two_frame_gain(0.6), abs=0.003)
