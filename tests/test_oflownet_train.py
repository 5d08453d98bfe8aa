"""OFlowNet stage: neighbourhood mask, the pair loss learning a known shift, training, the test CLI."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from common.data.scene import load_input_folder
from oflownet import test as oflow_test
from oflownet import train as oflow_train
from oflownet.model import OFlowNet
from oflownet.stage import OFlowNetStage, neighbourhood_mask
from tests.helpers import make_input_folder
from tests.test_scoordnet import cli, random_tf1_arrays, write_tf1_checkpoint


def _masks(prev_hw, cur_hw=None):
    prev = np.asarray(prev_hw, np.float32)[None, ..., None]
    cur = np.ones_like(prev) if cur_hw is None else np.asarray(cur_hw, np.float32)[None, ..., None]
    return neighbourhood_mask(prev, cur).numpy()[0, ..., 0]


def test_neighbourhood_mask_borders():
    # All previous cells valid: only cells whose offsets −4…3 stay on the 10×12 map count.
    expected = np.zeros((10, 12))
    expected[4:7, 4:9] = 1  # rows 4 ≤ i ≤ 10 − 1 − 3, columns 4 ≤ j ≤ 12 − 1 − 3
    np.testing.assert_array_equal(_masks(np.ones((10, 12))), expected)
    # An invalid current cell removes itself only.
    cur = np.ones((10, 12))
    cur[5, 6] = 0
    expected[5, 6] = 0
    np.testing.assert_array_equal(_masks(np.ones((10, 12)), cur), expected)


def test_one_invalid_previous_cell_invalidates_its_8x8_block():
    prev = np.ones((20, 20))
    prev[10, 9] = 0
    expected = np.zeros((20, 20))
    expected[4:17, 4:17] = 1
    # Current cell p sees previous cell (10, 9) when p = (10, 9) − d, d ∈ {−4…3}²: rows 7…14, columns 6…13.
    expected[7:15, 6:14] = 0
    np.testing.assert_array_equal(_masks(prev), expected)


def test_neighbourhood_mask_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    prev = (rng.uniform(size=(2, 11, 13, 1)) > 0.03).astype(np.float32)
    cur = (rng.uniform(size=(2, 11, 13, 1)) > 0.2).astype(np.float32)
    ref = np.zeros_like(cur)
    for b in range(2):
        for i in range(11):
            for j in range(13):
                window = [prev[b, i + dy, j + dx, 0] if 0 <= i + dy < 11 and 0 <= j + dx < 13 else 0.0
                          for dy in range(-4, 4) for dx in range(-4, 4)]
                ref[b, i, j, 0] = cur[b, i, j, 0] * min(window)
    np.testing.assert_array_equal(neighbourhood_mask(prev, cur).numpy(), ref)


def _shift_pair(size=128, dx=2, dy=-1, scale=0.01, seed=0):
    """A random texture, the same texture moved so that cell (i, j) of the second image shows cell
    (i + dy, j + dx) of the first, and linear labels (scale m per cell) that agree with that shift."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(size // 4, size // 4, 3))
    texture = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    moved = np.roll(texture, shift=(-8 * dy, -8 * dx), axis=(0, 1))
    n = size // 8
    jj, ii = np.meshgrid(np.arange(n), np.arange(n))
    first = scale * np.stack([jj, ii, np.zeros_like(jj)], axis=-1).astype(np.float32)
    second = scale * np.stack([jj + dx, ii + dy, np.zeros_like(jj)], axis=-1).astype(np.float32)
    return texture, moved, first, second


def test_stage_loss_learns_a_known_shift_in_both_directions():
    """Trained on one pair, which the stage takes in both directions per step, with its own loss,
    the flow finds (+2, −1) and (−2, +1) cells within half a cell on every cell the loss counts."""
    from oflownet.stage import both_directions

    texture, moved, first, second = _shift_pair()
    ones = np.ones((1, *first.shape[:2], 1), np.float32)
    # Every label is valid; the neighbourhood mask keeps the loss to the 9×9 interior, away from
    # the border cells whose content wrapped around (np.roll).
    batch = {"image_prev": texture[None], "image_cur": moved[None],
             "coords_prev": first[None], "coords_cur": second[None],
             "mask_prev": ones, "mask_cur": ones}
    batch = {k: tf.constant(v) for k, v in batch.items()}
    tf.keras.utils.set_random_seed(0)
    stage = OFlowNetStage(width=0.25)
    optimizer = tf.keras.optimizers.Adam(1e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss, metrics = stage.loss(batch)
        optimizer.apply_gradients(zip(tape.gradient(loss, stage.trainable_variables()),
                                      stage.trainable_variables()))
        return metrics

    untrained = float(stage.loss(batch)[1]["order_symmetry"])
    for _ in range(200):
        metrics = step()
    both = both_directions(batch)
    flow, _ = stage.net((both["image_prev"], both["image_cur"]))
    # The loss's order metric: ‖f + g‖ / ‖f − g‖ over all cells of the two directions, far above 1
    # before training (one motion for both orders), well below once the flow reverses with them
    # (measured 18.1 → 0.47; the border cells, whose content wrapped around, keep it from 0).
    f = flow.numpy()
    trained = np.sqrt(np.sum((f[0] + f[1]) ** 2) / np.sum((f[0] - f[1]) ** 2))
    assert float(stage.loss(batch)[1]["order_symmetry"]) == pytest.approx(trained, rel=1e-4)
    assert trained < 0.6 and untrained > 5.0, (trained, untrained)
    counted = neighbourhood_mask(both["mask_prev"], both["mask_cur"]).numpy()[..., 0] > 0
    for b, want in enumerate(([2.0, -1.0], [-2.0, 1.0])):
        assert counted[b].sum() == 81  # the 9×9 interior of the 16×16 map
        err = np.abs(flow.numpy()[b][counted[b]] - want)
        assert err.max() < 0.5, (b, err.max(), metrics)


def test_noise_on_the_previous_state_is_repeatable_per_step():
    stage = OFlowNetStage(width=0.25, noise=True, seed=3)
    stage.step = tf.Variable(7, dtype=tf.int64)
    coords = tf.zeros([2, 40, 50, 3])
    noisy, var = stage._previous_state(coords)
    sigma = np.sqrt(var.numpy()[:, 0, 0, 0])
    assert var.shape == (2, 1, 1, 1) and np.all((sigma >= 0.005) & (sigma <= 0.01))
    assert sigma[0] == sigma[1]  # one noise level per pair, shared by its two directions
    np.testing.assert_allclose(noisy.numpy().reshape(2, -1).std(axis=1), sigma, rtol=0.05)
    np.testing.assert_array_equal(stage._previous_state(coords)[0].numpy(), noisy.numpy())
    stage.step.assign(8)
    assert not np.allclose(stage._previous_state(coords)[0].numpy(), noisy.numpy())
    plain, zero = OFlowNetStage(width=0.25)._previous_state(coords)
    np.testing.assert_array_equal(plain.numpy(), coords.numpy())
    np.testing.assert_array_equal(zero.numpy(), 0.0)


def _train(scene_folder, model_folder, steps, *extra):
    return cli(oflow_train.main, ["--input_folder", str(scene_folder), "--model_folder", str(model_folder),
                                  "--scene", "tiny", "--max_steps", str(steps), "--no_progress", *extra])


def _mean_loss(data, net):
    """Mean stage loss over every training pair, unaugmented, previous state = ground truth."""
    from common.data.pipelines import frame_pairs, pair_dataset

    stage = OFlowNetStage(width=net.width)
    stage.net = net
    count = len(frame_pairs(data))
    batches = pair_dataset(data, 4, augment=False, shuffle=False).take(count // 4)
    values = [float(stage.loss(b)[0]) for b in batches]
    return float(np.mean(values))


def test_training_lowers_the_loss(tiny_scene, tmp_path, capsys):
    from oflownet.test import load_network

    data = load_input_folder(tiny_scene.train)
    assert _train(tiny_scene.train, tmp_path / "m", 1, "--snapshot", "1") == 0
    # configs/tiny.yaml inherits the demo's stage 2: pairs up to 3 frames apart, 11 + 10 + 9 in each
    # 12-frame sequence, none across the two.
    assert ("OFlowNet: 60 pairs k → k+1…3 (each step both directions) of 24 frames 80x64, width 0.25"
            in capsys.readouterr().out)
    first = _mean_loss(data, load_network(tmp_path / "m", data.image_hw)[0])
    assert _train(tiny_scene.train, tmp_path / "m", 30, "--snapshot", "30", "--base_lr", "1e-3",
                  "--no_augment") == 0
    last = _mean_loss(data, load_network(tmp_path / "m", data.image_hw)[0])
    # On this 10×8 map the neighbourhood mask keeps 3 cells per pair and cells are ~25 cm wide, so
    # the capped NLL barely moves in a few steps; the photometric term does (measured 0.45 → 0.28).
    assert last < first - 0.1, (first, last)


def _images(data, ks):
    return np.stack([cv2.imread(data.image_paths[k])[..., ::-1].astype(np.float32) for k in ks])


def test_test_cli_writes_one_flow_per_consecutive_pair(tiny_scene, tmp_path, capsys):
    import json

    from oflownet.test import load_network

    assert _train(tiny_scene.train, tmp_path / "m", 2, "--snapshot", "2", "--noise") == 0
    assert "noise on" in capsys.readouterr().out
    info = json.loads((tmp_path / "m" / "model.json").read_text())
    assert (info["stage"], info["widths"]) == ("oflownet", {"oflownet": 0.25})
    assert info["config"]["noise"] is True and info["seed"] == 0
    out = tmp_path / "out"
    # The training folder holds two sequences: no pair may cross from one to the other.
    argv = ["--input_folder", str(tiny_scene.train), "--output_folder", str(out), "--model_folder",
            str(tmp_path / "m"), "--scene", "tiny", "--batch_size", "5", "--no_progress"]
    assert cli(oflow_test.main, argv) == 0
    printed = capsys.readouterr().out
    data = load_input_folder(tiny_scene.train)
    expected = {f"{k - 1}_{k}_flow.npy" for k in range(len(data)) if k % 12}
    assert {p.name for p in out.glob("*.npy")} == expected and len(expected) == 22
    assert "pair 0_1: warped label error mean" in printed and "flow error mean" in printed
    assert "frames/s" in printed
    net = load_network(tmp_path / "m", data.image_hw)[0]
    ks = [0, 4, 12]
    # File k_(k+1) holds frame k's cells flowing into frame k+1: frame k+1 is OFlowNet's previous frame.
    flow, sigma = net((_images(data, [k + 1 for k in ks]), _images(data, ks)))
    for n, k in enumerate(ks):
        saved = np.load(out / f"{k}_{k + 1}_flow.npy")
        assert saved.shape == (*data.map_hw, 3) and saved.dtype == np.float32
        assert np.all(saved[..., 2] > 0)
        np.testing.assert_allclose(saved[..., :2], flow.numpy()[n], atol=1e-4)
        np.testing.assert_allclose(saved[..., 2], 1.0 / sigma.numpy()[n, ..., 0], rtol=1e-4)
    # The order check: the flow of every pair (22 here, under the check's 100) against the flow with
    # its frames swapped, ‖f + g‖ / ‖f − g‖ over all their cells, with a warning above 1.5.
    pairs = [k for k in range(len(data) - 1) if (k + 1) % 12]
    f = net((_images(data, [k + 1 for k in pairs]), _images(data, pairs)))[0].numpy()
    g = net((_images(data, pairs), _images(data, [k + 1 for k in pairs])))[0].numpy()
    expected_ratio = np.linalg.norm(f + g) / np.linalg.norm(f - g)
    summary = json.loads((out / "run.json").read_text())["summary"]["oflownet"]
    assert summary["order_symmetry"] == pytest.approx(expected_ratio, rel=1e-3)
    assert f"order check ‖f + g‖ / ‖f − g‖ = {expected_ratio:.2f} over 22 pairs" in printed
    assert ("hardly depends on the order of the frames" in printed) == (expected_ratio > 1.5)
    # A second run finds every pair done and rewrites nothing.
    stamp = (out / "4_5_flow.npy").stat().st_mtime_ns
    assert cli(oflow_test.main, argv + ["--quiet"]) == 0
    assert (out / "4_5_flow.npy").stat().st_mtime_ns == stamp


def test_ground_truth_flow_of_a_sideways_step():
    """A camera 0.5 m to the right of the current one, facing a wall 2 m away with f = 64 px:
    every point moves 64 · 0.5 / 2 = 16 px = 2 cells to the left."""
    h, w, f, cx, cy, depth = 6, 8, 64.0, 32.0, 24.0, 2.0
    camera = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]])
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    u, v = 8 * jj, 8 * ii
    wall = np.stack([(u - cx) / f * depth, (v - cy) / f * depth, np.full((h, w), depth)], axis=-1)
    pose_prev = np.eye(4)
    pose_prev[0, 3] = 0.5
    mask = np.ones((h, w, 1))
    flow, known = oflow_test.ground_truth_flow(wall, mask, wall + [0.5, 0, 0], mask, pose_prev, camera)
    np.testing.assert_allclose(flow, np.broadcast_to([-2.0, 0.0], (h, w, 2)), atol=1e-12)
    np.testing.assert_array_equal(known, jj >= 2)  # the others land left of the previous map


def test_original_tf1_weights_round_trip(tiny_scene, tmp_path):
    shapes = {k: tuple(v.shape) for k, v in OFlowNet(width=1.0).tf1_variables().items()}
    assert len(shapes) == 48 and all(k.startswith("Temporal/") for k in shapes)
    arrays = random_tf1_arrays(shapes, seed=1, scale=0.1)
    write_tf1_checkpoint(tmp_path / "orig", arrays)
    out = tmp_path / "out"
    assert cli(oflow_test.main, ["--input_folder", str(tiny_scene.test), "--output_folder", str(out),
                                 "--model_folder", str(tmp_path / "orig"), "--no_progress", "--quiet"]) == 0
    reference = OFlowNet(width=1.0)
    for name, var in reference.tf1_variables().items():
        var.assign(arrays[name])
    data = load_input_folder(tiny_scene.test)
    # The file of pair (2, 3) holds frame 2's cells flowing into frame 3 (the original's direction):
    # OFlowNet with frame 3 as the previous frame and frame 2 as the current one.
    flow, sigma = reference((_images(data, [3]), _images(data, [2])))
    saved = np.load(out / "2_3_flow.npy")
    assert np.abs(saved[..., :2]).max() > 1e-3  # random weights give a flow worth comparing
    np.testing.assert_allclose(saved[..., :2], flow.numpy()[0], atol=1e-4)
    np.testing.assert_allclose(saved[..., 2], 1.0 / sigma.numpy()[0, ..., 0], rtol=1e-4)


@pytest.mark.parametrize("case, message", [
    ("missing_model", "model folder not found"),
    ("output_is_file", "is a file, not a folder"),
    ("no_checkpoint", "no checkpoint in"),
])
def test_test_bad_input(tiny_scene, tmp_path, capsys, case, message):
    model = tmp_path / "m"
    model.mkdir()
    out = tmp_path / "out"
    if case == "missing_model":
        model = tmp_path / "absent"
    elif case == "output_is_file":
        write_tf1_checkpoint(model, random_tf1_arrays(
            {k: tuple(v.shape) for k, v in OFlowNet(width=1.0).tf1_variables().items()}))
        out.write_text("x")
    code = cli(oflow_test.main, ["--input_folder", str(tiny_scene.test), "--output_folder", str(out),
                                 "--model_folder", str(model), "--no_progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not out.is_dir()


@pytest.mark.parametrize("case, message", [
    ("no_pairs", "no two consecutive frames"),
    ("model_is_file", "is a file, not a folder"),
    ("gap_zero", "max_gap in "),
    ("gap_fraction", "must be a whole number of frames, 1 or more, got 1.5"),
])
def test_train_bad_input(tmp_path, capsys, case, message):
    frames = (1, 1) if case == "no_pairs" else (2,)
    folder = make_input_folder(tmp_path / "in", sizes=(32, 32), frames=frames, transform=np.eye(4))
    if case == "model_is_file":
        (tmp_path / "m").write_text("x")
    config = ["--scene", "tiny"]
    if case.startswith("gap"):
        (tmp_path / "c.yaml").write_text(f"inherit: tiny\noflownet:\n  max_gap: {0 if case == 'gap_zero' else 1.5}\n")
        config = ["--config", str(tmp_path / "c.yaml")]
    code = cli(oflow_train.main, ["--input_folder", str(folder), "--model_folder", str(tmp_path / "m"),
                                  *config, "--max_steps", "1", "--no_progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "m").is_dir()


def test_order_symmetry_by_hand():
    from oflownet.test import order_symmetry

    assert order_symmetry(0.0, 4.0) == 0.0  # g = −f: the flow reverses with the frames
    assert order_symmetry(9.0, 1.0) == pytest.approx(3.0)
    assert order_symmetry(1.0, 0.0) == float("inf")  # g = f: the same flow whatever the order
    assert np.isnan(order_symmetry(0.0, 0.0))
