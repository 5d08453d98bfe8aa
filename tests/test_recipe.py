"""The original's training recipe: continuous learning-rate decay, the stage-3 loss over all 4
frames, the (8j, 8i) cell convention, both-direction OFlowNet steps with rotation-only
augmentation, Adam moments carried into stage 3, NIS on the output only."""

import numpy as np
import pytest
import tensorflow as tf

from common.data import pipelines
from common.data.augment import augment_frames, random_rotation
from common.data.labels import write_label
from common.data.scene import load_input_folder
from common.geometry import cell_pixels
from common.trainer import learning_rate_schedule
from kfnet.stage import KFNetStage
from oflownet.model import OFlowNet
from oflownet.stage import OFlowNetStage
from pnp.solve import solve_frame
from scoordnet.model import SCoordNet
from tests.helpers import make_input_folder


def test_learning_rate_decays_continuously():
    schedule = learning_rate_schedule({"base_lr": 1e-4, "stepvalue": 100})
    for step, exponent in ((0, 0.0), (50, 0.5), (150, 1.5), (400, 4.0), (437, 4.37)):
        assert float(schedule(step)) == pytest.approx(1e-4 * 0.5 ** exponent, rel=1e-6)
    stairs = learning_rate_schedule({"base_lr": 1e-4, "stepvalue": 100, "lr_staircase": True})
    assert float(stairs(150)) == pytest.approx(5e-5, rel=1e-6)


def _nll_np(x, var, gt, mask, cap):
    sigma = np.maximum(np.sqrt(var), 1e-5)
    loss = 3 * np.log(sigma) + np.sum((x - gt) ** 2, -1, keepdims=True) / (2 * sigma ** 2)
    loss = np.minimum(loss, cap)
    return float(np.sum(loss * mask) / (np.sum(mask) + 1))


def _smooth_np(x, image, mask):
    dx = np.mean((x[:, :, :-1] - x[:, :, 1:]) ** 2, -1, keepdims=True)
    dy = np.mean((x[:, :-1] - x[:, 1:]) ** 2, -1, keepdims=True)
    wx = np.exp(-0.625 * np.mean(np.abs(image[:, :, :-1] - image[:, :, 1:]), -1, keepdims=True))
    wy = np.exp(-0.625 * np.mean(np.abs(image[:, :-1] - image[:, 1:]), -1, keepdims=True))
    total = np.sum(dx * wx * mask[:, :, :-1]) + np.sum(dy * wy * mask[:, :-1])
    return float(total / (np.sum(mask) + 1))


def test_stage3_loss_covers_all_four_frames():
    """A hand-built window: the loss equals 0.2·M + 0.2·T + 0.6·KF, each over frames 1–4, with
    frame 1's prior and posterior its measurement, each normalized over its own valid cells."""
    rng = np.random.default_rng(3)
    t, height, width = 4, 16, 24
    h, w = height // 8, width // 8
    images = rng.uniform(0, 255, (1, t, height, width, 3)).astype(np.float32)
    gt = rng.normal(size=(1, t, h, w, 3)).astype(np.float32)
    mask = (rng.uniform(size=(1, t, h, w, 1)) > 0.3).astype(np.float32)

    def maps(scale):
        return {"coords": (gt + scale * rng.normal(size=gt.shape)).astype(np.float32),
                "var": rng.uniform(0.2, 2.0, (1, t, h, w, 1)).astype(np.float32) * scale ** 2}

    out = {"measurement": maps(0.3), "prior": maps(0.5), "posterior": maps(0.2)}
    for key in ("prior", "posterior"):
        for part in ("coords", "var"):
            out[key][part][:, 0] = out["measurement"][part][:, 0]
    stage = KFNetStage(SCoordNet(0.125), OFlowNet(0.25))
    stage.model.window = lambda images_bt, training=False: {
        k: {p: tf.constant(v) for p, v in d.items()} for k, d in out.items()}
    loss, metrics = stage.loss({"images": tf.constant(images), "coords": tf.constant(gt),
                                "mask": tf.constant(mask)})

    small = images[0, :, ::8, ::8]  # one pixel per cell: (8j, 8i)
    want = 0.0
    for key, weight in (("measurement", 0.2), ("prior", 0.2), ("posterior", 0.6)):
        nll = _nll_np(out[key]["coords"][0], out[key]["var"][0], gt[0], mask[0], cap=-2.0)
        assert float(metrics[f"{key}_nll"]) == pytest.approx(nll, rel=1e-5, abs=1e-6)
        want += weight * (nll + 50.0 * _smooth_np(out[key]["coords"][0], small, mask[0]))
    assert float(loss) == pytest.approx(want, rel=1e-5)
    # Dropping frame 1 from the prior and posterior terms (the old loss) gives another number.
    old = 0.2 * (_nll_np(out["measurement"]["coords"][0], out["measurement"]["var"][0], gt[0], mask[0], -2.0)
                 + 50.0 * _smooth_np(out["measurement"]["coords"][0], small, mask[0]))
    for key, weight in (("prior", 0.2), ("posterior", 0.6)):
        x = out[key]["coords"][0, 1:]
        old += weight * (_nll_np(x, out[key]["var"][0, 1:], gt[0, 1:], mask[0, 1:], -2.0)
                         + 50.0 * _smooth_np(x, small[1:], mask[0, 1:]))
    assert abs(old - want) > 1e-3


def test_cell_pixels_are_8j_8i():
    c = cell_pixels(3, 4)
    assert c.shape == (3, 4, 2)
    assert c[2, 3].tolist() == [24.0, 16.0] and c[0, 0].tolist() == [0.0, 0.0]


def test_full_resolution_label_is_read_at_8j_8i_by_the_pipeline(tmp_path):
    folder = make_input_folder(tmp_path, sizes=(32, 48), frames=(2,))
    yy, xx = np.mgrid[0:32, 0:48].astype(np.float32)
    full = np.stack([xx, yy, xx + 1000 * yy, np.ones_like(xx)], -1)
    for line in (folder / "label_list.txt").read_text().split():
        write_label(folder / line, full)
    data = load_input_folder(folder)
    element = next(iter(pipelines.test_dataset(data)))
    coords = element["coords"][0].numpy()
    np.testing.assert_array_equal(coords[..., :2], cell_pixels(4, 6))
    assert element["mask"].numpy().all()


def test_pnp_recovers_an_exact_pose_from_8j_8i_maps():
    rng = np.random.default_rng(5)
    h, w = 15, 20
    K = np.array([[131.25, 0, 80.0], [0, 131.25, 60.0], [0, 0, 1]])
    angle = 0.4
    pose = np.eye(4)
    pose[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    pose[:3, 3] = [0.3, -0.2, 1.1]
    depth = rng.uniform(1.0, 3.0, (h, w))
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    cam = np.stack([(8 * jj - 80.0) / 131.25 * depth, (8 * ii - 60.0) / 131.25 * depth, depth], -1)
    world = cam @ pose[:3, :3].T + pose[:3, 3]
    est, _, info = solve_frame(world.astype(np.float32), np.full((h, w), 10.0, np.float32), K)
    assert info["failure"] is None
    np.testing.assert_allclose(est, pose, atol=1e-5)


def test_one_oflownet_step_trains_the_pair_in_both_directions(tiny_scene):
    data = load_input_folder(tiny_scene.train)
    stage = OFlowNetStage(width=0.25)
    calls = []
    net = stage.net

    def spy(inputs, training=False):
        calls.append(inputs)
        return net(inputs, training=training)

    stage.net = spy
    batch = next(iter(pipelines.pair_dataset(data, 1, augment=False)))
    assert batch["indices"].numpy().tolist() == [[int(batch["indices"][0, 0]), int(batch["indices"][0, 0]) + 1]]
    loss, _ = stage.loss(batch)
    (prev, cur), = calls
    assert prev.shape[0] == 2 and cur.shape[0] == 2
    np.testing.assert_array_equal(prev[0], batch["image_prev"][0])
    np.testing.assert_array_equal(cur[0], batch["image_cur"][0])
    np.testing.assert_array_equal(prev[1], batch["image_cur"][0])
    np.testing.assert_array_equal(cur[1], batch["image_prev"][0])
    # Both directions in one normalized loss: swapping the pair's frames changes nothing.
    swapped = dict(batch)
    for name in ("image", "coords", "mask"):
        swapped[f"{name}_prev"], swapped[f"{name}_cur"] = batch[f"{name}_cur"], batch[f"{name}_prev"]
    swapped_loss, _ = stage.loss(swapped)
    assert float(swapped_loss) == pytest.approx(float(loss), rel=1e-5)


def test_stage2_augmentation_is_a_pure_rotation_about_the_centre():
    hw = (120, 160)
    centre = np.array([79.5, 59.5, 1.0])
    identity = 0
    for seed in range(200):
        m = random_rotation(tf.constant([seed, 7], tf.int64), hw).numpy()
        a = m[:2, :2]
        np.testing.assert_allclose(a @ a.T, np.eye(2), atol=1e-6)  # no scale, no shear
        assert np.linalg.det(a) == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(m @ centre, centre, atol=1e-4)  # no translation
        assert abs(np.degrees(np.arctan2(a[0, 1], a[0, 0]))) <= 30.0 + 1e-4
        identity += np.allclose(m, np.eye(3))
    assert 20 <= identity <= 60  # 20 % of the pairs keep their geometry


def test_stage2_pair_gets_one_rotation_for_both_frames():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 32, 48, 3)).astype(np.float32)
    images = tf.constant(np.concatenate([image, image]))
    coords = tf.constant(rng.normal(size=(2, 4, 6, 3)).astype(np.float32))
    coords = tf.concat([coords[:1], coords[:1]], 0)
    mask = tf.ones((2, 4, 6, 1))
    for seed in range(5):
        out_images, out_coords, out_mask = augment_frames(images, coords, mask, tf.constant([seed, 1], tf.int64),
                                                          (32, 48), geometry="rotation")
        np.testing.assert_array_equal(out_images[0], out_images[1])
        np.testing.assert_array_equal(out_coords[0], out_coords[1])
        np.testing.assert_array_equal(out_mask[0], out_mask[1])
