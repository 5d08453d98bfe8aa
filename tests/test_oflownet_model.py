"""OFlowNet: cost volume, soft-argmax flow, wiring, shapes and the original's variable layout."""

import numpy as np
import pytest
import tensorflow as tf

from oflownet.model import OFlowNet, cost_volume, expected_flow, offsets


def reference_volume(prev, cur, window=8):
    """Loop-based cost volume: cur[i, j] − prev[i + dy, j + dx], prev zero off the map."""
    b, h, w, c = cur.shape
    half = window // 2
    out = np.zeros((b, h, w, window, window, c), np.float32)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                for dy in range(-half, window - half):
                    for dx in range(-half, window - half):
                        inside = 0 <= i + dy < h and 0 <= j + dx < w
                        other = prev[n, i + dy, j + dx] if inside else 0.0
                        out[n, i, j, dy + half, dx + half] = cur[n, i, j] - other
    return out


@pytest.mark.parametrize("window", [8, 4])
def test_cost_volume_matches_loop_reference(window):
    rng = np.random.default_rng(1)
    # Maps smaller than the window in one direction, so every cell meets the border.
    prev = rng.normal(size=(2, 5, 9, 3)).astype(np.float32)
    cur = rng.normal(size=(2, 5, 9, 3)).astype(np.float32)
    volume = cost_volume(prev, cur, window).numpy()
    np.testing.assert_array_equal(volume, reference_volume(prev, cur, window))


def test_offsets_layout():
    d = offsets()
    assert d.shape == (64, 2)
    # Index k = (dy + 4)·8 + (dx + 4), stored as (dx, dy).
    np.testing.assert_array_equal(d[0], [-4, -4])
    np.testing.assert_array_equal(d[1], [-3, -4])
    np.testing.assert_array_equal(d[8], [-4, -3])
    np.testing.assert_array_equal(d[63], [3, 3])
    np.testing.assert_array_equal(d[(2 + 4) * 8 + (-1 + 4)], [-1, 2])


def test_one_hot_logits_give_their_offset_exactly():
    logits = 1e4 * np.eye(64, dtype=np.float32) - 5.0
    np.testing.assert_array_equal(expected_flow(logits).numpy(), offsets())


def test_uniform_logits_give_the_mean_offset():
    flow = expected_flow(np.zeros((3, 64), np.float32)).numpy()
    np.testing.assert_allclose(flow, -0.5, atol=1e-6)


class MatchingFlowNet(tf.Module):
    """Stand-in U-Net that scores each offset by −‖cost‖²: picks the best-matching previous cell."""

    def __call__(self, volume_n88c):
        logits = -1e3 * tf.reduce_sum(tf.square(volume_n88c), axis=-1)
        return tf.reshape(logits, [-1, 64]), tf.ones([tf.shape(logits)[0], 1])


def test_flow_from_features_wiring_recovers_a_known_shift():
    rng = np.random.default_rng(2)
    feat = rng.normal(size=(1, 10, 12, 8)).astype(np.float32)
    feat /= np.linalg.norm(feat, axis=-1, keepdims=True)
    dx, dy = 2, -1
    # Current cell (i, j) shows what the previous frame had at (i + dy, j + dx).
    cur = np.zeros_like(feat)
    cur[:, 1:, :-2] = feat[:, :-1, 2:]
    model = OFlowNet(width=0.25)
    model.flownet = MatchingFlowNet()
    flow, sigma = model.flow_from_features(feat, cur)
    assert flow.shape == (1, 10, 12, 2) and sigma.shape == (1, 10, 12, 1)
    np.testing.assert_allclose(flow.numpy()[0, 1:, :-2], np.broadcast_to([dx, dy], (9, 10, 2)), atol=1e-5)


def test_small_model_shapes_and_outputs():
    model = OFlowNet(width=0.25)
    rng = np.random.default_rng(3)
    prev = rng.uniform(0, 255, size=(2, 64, 80, 3)).astype(np.float32)
    cur = rng.uniform(0, 255, size=(2, 64, 80, 3)).astype(np.float32)
    feat = model.features(prev)
    assert feat.shape == (2, 8, 10, 8)
    np.testing.assert_allclose(np.linalg.norm(feat.numpy(), axis=-1), 1.0, rtol=1e-5)
    flow, sigma = model((prev, cur))
    assert flow.shape == (2, 8, 10, 2) and sigma.shape == (2, 8, 10, 1)
    assert np.all(sigma.numpy() > 0)
    # A softmax expectation stays inside the window's offset range.
    assert np.all(flow.numpy() >= -4) and np.all(flow.numpy() <= 3)
    again, _ = model.flow_from_features(feat, model.features(cur))
    np.testing.assert_allclose(again.numpy(), flow.numpy(), rtol=1e-5, atol=1e-6)


def test_sigma_q_is_one_hundredth_of_exp_of_the_head():
    model = OFlowNet(width=0.25)
    head = model.flownet.uncertainty
    head.kernel.assign(np.zeros(head.kernel.shape, np.float32))
    head.bias.assign([0.7])
    _, sigma = model((np.zeros((1, 16, 24, 3), np.float32), np.ones((1, 16, 24, 3), np.float32)))
    np.testing.assert_allclose(sigma.numpy(), 0.01 * np.exp(0.7), rtol=1e-6)


def test_gradients_reach_every_variable():
    model = OFlowNet(width=0.25)
    rng = np.random.default_rng(4)
    images = [rng.uniform(0, 255, size=(1, 32, 40, 3)).astype(np.float32) for _ in range(2)]
    with tf.GradientTape() as tape:
        flow, sigma = model(tuple(images))
        loss = tf.reduce_sum(tf.square(flow - 0.3)) + tf.reduce_sum(sigma)
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(grads) == 48 and all(g is not None for g in grads)


# The original TF1 layout, by hand: conv [kh, kw, in, out], transposed [kh, kw, out, in], dense [in, out].
EXPECTED_KERNELS = {
    "feat1": (3, 3, 3, 16), "feat2": (3, 3, 16, 32), "feat3": (3, 3, 32, 32), "feat4": (3, 3, 32, 64),
    "feat5": (3, 3, 64, 64), "feat6": (3, 3, 64, 128), "feat7": (3, 3, 128, 32),
    "conv0": (3, 3, 32, 32), "conv1a": (3, 3, 32, 32), "conv1b": (3, 3, 32, 32),
    "conv2a": (3, 3, 32, 64), "conv2b": (3, 3, 64, 64), "conv3a": (3, 3, 64, 128), "conv3b": (3, 3, 128, 128),
    "upconv2": (3, 3, 64, 128), "conv4": (3, 3, 128, 64), "upconv1": (3, 3, 32, 64), "conv5": (3, 3, 64, 32),
    "upconv0": (3, 3, 16, 32), "conv6": (3, 3, 48, 16), "prediction": (3, 3, 16, 1),
    "fc1": (128, 64), "fc2": (64, 32), "uncertainty": (32, 1),
}


def test_tf1_variables_match_the_original_layout():
    model = OFlowNet().build_for((480, 640))
    variables = model.tf1_variables()
    expected = {}
    for name, kernel in EXPECTED_KERNELS.items():
        expected[f"Temporal/{name}/kernel"] = kernel
        # A transposed conv's bias has its output channels, which come first in its kernel.
        out = kernel[2] if name.startswith("upconv") else kernel[-1]
        expected[f"Temporal/{name}/bias"] = (out,)
    assert {k: tuple(v.shape) for k, v in variables.items()} == expected
    # The mapping covers every weight of the model exactly once.
    assert {id(v) for v in variables.values()} == {id(v) for v in model.trainable_variables}
    assert model.count_params() == sum(int(np.prod(s)) for s in expected.values())


def test_width_shrinks_hidden_layers_but_not_outputs():
    variables = OFlowNet(width=0.25).tf1_variables()
    assert tuple(variables["Temporal/feat1/kernel"].shape) == (3, 3, 3, 4)
    assert tuple(variables["Temporal/conv3b/kernel"].shape) == (3, 3, 32, 32)
    assert tuple(variables["Temporal/prediction/kernel"].shape) == (3, 3, 4, 1)
    assert tuple(variables["Temporal/uncertainty/kernel"].shape) == (8, 1)


def test_checkpoint_round_trip_restores_every_weight(tmp_path):
    images = tuple(np.random.default_rng(5).uniform(0, 255, size=(2, 1, 16, 24, 3)).astype(np.float32))
    model = OFlowNet(width=0.25)
    flow, sigma = model(images)
    path = tf.train.Checkpoint(oflownet=model).save(str(tmp_path / "ckpt"))
    restored = OFlowNet(width=0.25)
    tf.train.Checkpoint(oflownet=restored).restore(path).assert_consumed()
    flow2, sigma2 = restored(images)
    np.testing.assert_array_equal(flow2.numpy(), flow.numpy())
    np.testing.assert_array_equal(sigma2.numpy(), sigma.numpy())
