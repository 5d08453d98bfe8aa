"""KFNet: the joint stage on 4-frame windows, training from the pre-trained stages, streaming test."""

import numpy as np
import pytest
import tensorflow as tf

from kfnet import test as kfnet_test
from kfnet import train as kfnet_train
from kfnet.data.pipelines import window_dataset
from kfnet.data.scene import load_input_folder
from kfnet.stage import KFNetStage
from oflownet.model import OFlowNet
from scoordnet import test as scoord_test
from scoordnet.model import SCoordNet
from tests.test_scoordnet import _train as train_scoordnet
from tests.test_scoordnet import cli, random_tf1_arrays, write_tf1_checkpoint


def test_window_gives_finite_losses_and_gradients_for_both_networks(tiny_scene):
    data = load_input_folder(tiny_scene.train)
    stage = KFNetStage(SCoordNet(0.125).build_for(data.image_hw), OFlowNet(0.25))
    batch = next(iter(window_dataset(data, 4)))
    with tf.GradientTape() as tape:
        loss, metrics = stage.loss(batch)
    variables = stage.trainable_variables()
    grads = tape.gradient(loss, variables)
    assert np.isfinite(float(loss))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    n_scoord = len(stage.model.scoordnet.trainable_variables)
    for name, part in (("scoordnet", grads[:n_scoord]), ("oflownet", grads[n_scoord:])):
        assert all(g is not None for g in part), name
        assert all(np.all(np.isfinite(g.numpy())) for g in part), name
        assert sum(float(tf.reduce_sum(tf.abs(g))) for g in part) > 0, name


def test_window_filter_shapes_and_first_posterior_is_the_measurement(tiny_scene):
    data = load_input_folder(tiny_scene.train)
    stage = KFNetStage(SCoordNet(0.125).build_for(data.image_hw), OFlowNet(0.25))
    out = stage.model.window(next(iter(window_dataset(data, 4)))["images"])
    assert out["measurement"]["coords"].shape == (1, 4, 8, 10, 3)
    assert out["prior"]["coords"].shape == (1, 3, 8, 10, 3)
    assert out["posterior"]["var"].shape == (1, 4, 8, 10, 1)
    np.testing.assert_array_equal(out["posterior"]["coords"][:, 0], out["measurement"]["coords"][:, 0])
    # Filtering never makes a cell less certain than its measurement.
    assert np.all(out["posterior"]["var"].numpy() <= out["measurement"]["var"].numpy() * (1 + 1e-5))


def _kfnet_train(tiny_scene, model, *extra):
    return cli(kfnet_train.main, ["--input_folder", str(tiny_scene.train), "--model_folder", str(model),
                                  "--scene", "tiny", "--no_progress", *extra])


def test_training_starts_from_both_stages_on_the_last_learning_rate_step(tiny_scene, tmp_path, capsys):
    assert train_scoordnet(tiny_scene.train, tmp_path / "s", 2, "--snapshot", "2") == 0
    from oflownet.model import OFlowNet as Net

    oflow = Net(0.25)
    tf.train.Checkpoint(oflownet=oflow).write(str(tmp_path / "o" / "ckpt-1"))
    (tmp_path / "o" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    capsys.readouterr()
    code = _kfnet_train(tiny_scene, tmp_path / "k", "--scoordnet", str(tmp_path / "s"),
                        "--oflownet", str(tmp_path / "o"))
    assert code == 0
    printed = capsys.readouterr().out
    # tiny: kfnet stepvalue 2 → start at step 8, max_steps 5 × 2 = 10.
    assert "steps 8→10" in printed and "finished step 10" in printed
    reader = tf.train.load_checkpoint(str(tmp_path / "k" / "ckpt-10"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 10
    # Adam counts its own 2 updates: its bias correction starts afresh with the fresh moments.
    assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 2
    # Resuming its own checkpoint ignores the initial weights.
    assert _kfnet_train(tiny_scene, tmp_path / "k", "--max_steps", "12") == 0
    assert "resuming from" in capsys.readouterr().out


def test_first_fine_tuning_update_has_the_learning_rate_size(tiny_scene, tmp_path):
    """Adam's first update moves every weight by at most the learning rate (base_lr / 2⁴, the
    last step of the schedule); skipping the bias correction would move them 3.16× as far."""
    from kfnet.config import load_config, stage_config

    assert train_scoordnet(tiny_scene.train, tmp_path / "s", 2, "--snapshot", "2") == 0
    oflow = OFlowNet(0.25)
    tf.train.Checkpoint(oflownet=oflow).write(str(tmp_path / "o" / "ckpt-1"))
    (tmp_path / "o" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    assert _kfnet_train(tiny_scene, tmp_path / "k", "--scoordnet", str(tmp_path / "s"),
                        "--oflownet", str(tmp_path / "o"), "--max_steps", "9") == 0
    before = tf.train.load_checkpoint(str(tmp_path / "s" / "ckpt-2"))
    after = tf.train.load_checkpoint(str(tmp_path / "k" / "ckpt-9"))
    lr = float(stage_config(load_config("tiny"), "kfnet")["base_lr"]) / 16
    moved = []
    for key in before.get_variable_to_shape_map():
        if key.startswith("optimizer/_trainable_variables/") and key.endswith("VARIABLE_VALUE"):
            moved.append(np.abs(after.get_tensor(key) - before.get_tensor(key)).max())
    assert len(moved) == 24
    assert 0.5 * lr < max(moved) <= 1.01 * lr, max(moved)


def _stream(tiny_scene, model, out, *extra):
    return cli(kfnet_test.main, ["--input_folder", str(tiny_scene.train), "--output_folder", str(out),
                                 "--model_folder", str(model), "--no_progress", "--quiet", *extra])


def test_streaming_resets_at_sequence_starts(tiny_scene, tmp_path, capsys):
    assert _kfnet_train(tiny_scene, tmp_path / "k", "--max_steps", "2") == 0
    out = tmp_path / "out"
    assert _stream(tiny_scene, tmp_path / "k", out, "--save_measurement", "--batch_size", "5") == 0
    printed = capsys.readouterr().out
    for name in ("measurement", "prior", "posterior"):
        assert f"{name}: median coordinate error" in printed
    assert "NIS test passed by" in printed
    data = load_input_folder(tiny_scene.train)
    starts = np.flatnonzero(data.sequence_starts)
    assert starts.tolist() == [0, 12]
    for k in range(len(data)):
        post = np.load(out / f"coord_{k}.npy")
        meas = np.load(out / "measurement" / f"coord_{k}.npy")
        assert post.shape == (8, 10, 4) and post.dtype == np.float32
        if k in starts:
            np.testing.assert_array_equal(post, meas)  # x0 = z0, P0 = R0
            assert not (out / "prior" / f"coord_{k}.npy").exists()
        else:
            assert (out / "prior" / f"coord_{k}.npy").exists()
            assert not np.array_equal(post, meas)
            # The posterior is at least as certain as the measurement.
            assert np.all(post[..., 3] >= meas[..., 3] * (1 - 1e-5))


def test_streaming_resume_restarts_the_unfinished_sequence(tiny_scene, tmp_path):
    assert _kfnet_train(tiny_scene, tmp_path / "k", "--max_steps", "2") == 0
    full, part = tmp_path / "full", tmp_path / "part"
    assert _stream(tiny_scene, tmp_path / "k", full) == 0
    assert _stream(tiny_scene, tmp_path / "k", part) == 0
    for k in (3, 15, 20):  # as if killed: frame 3 (sequence 1) and 15, 20 (sequence 2) missing
        (part / f"coord_{k}.npy").unlink()
    assert _stream(tiny_scene, tmp_path / "k", part) == 0
    for k in range(24):
        np.testing.assert_allclose(np.load(part / f"coord_{k}.npy"), np.load(full / f"coord_{k}.npy"),
                                   rtol=1e-5, atol=1e-6)


def test_original_combined_checkpoint_runs_both_tests(tiny_scene, tmp_path):
    shapes = {k: tuple(v.shape) for k, v in SCoordNet(1.0).build_for((32, 32)).tf1_variables().items()}
    shapes.update({k: tuple(v.shape) for k, v in OFlowNet(1.0).tf1_variables().items()})
    write_tf1_checkpoint(tmp_path / "orig", random_tf1_arrays(shapes, scale=0.02), step=500)
    out_k, out_s = tmp_path / "k", tmp_path / "s"
    assert _stream(tiny_scene, tmp_path / "orig", out_k, "--save_measurement") == 0
    assert cli(scoord_test.main, ["--input_folder", str(tiny_scene.train), "--output_folder", str(out_s),
                                  "--model_folder", str(tmp_path / "orig"), "--no_progress", "--quiet"]) == 0
    for k in (0, 5, 13):
        np.testing.assert_allclose(np.load(out_k / "measurement" / f"coord_{k}.npy"),
                                   np.load(out_s / f"coord_{k}.npy"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case, message", [
    ("missing_init", "model folder not found"),
    ("wrong_network", "holds no 'oflownet' network"),
])
def test_train_bad_pretrained_folders(tiny_scene, tmp_path, capsys, case, message):
    if case == "missing_init":
        extra = ["--scoordnet", str(tmp_path / "absent")]
    else:
        assert train_scoordnet(tiny_scene.train, tmp_path / "s", 1, "--snapshot", "1") == 0
        extra = ["--oflownet", str(tmp_path / "s")]
    capsys.readouterr()
    assert _kfnet_train(tiny_scene, tmp_path / "k", *extra) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("warning:")]
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not list((tmp_path / "k").glob("ckpt-*"))
