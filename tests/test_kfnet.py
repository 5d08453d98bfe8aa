"""KFNet: the joint stage on 4-frame windows, training from the pre-trained stages, streaming test."""

import json

import numpy as np
import pytest
import tensorflow as tf

from common.data.pipelines import window_dataset
from common.data.scene import load_input_folder
from kfnet import test as kfnet_test
from kfnet import train as kfnet_train
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
    assert out["prior"]["coords"].shape == (1, 4, 8, 10, 3)
    assert out["posterior"]["var"].shape == (1, 4, 8, 10, 1)
    # Frame 1's prior and posterior are its measurement (map and variance), as in the original.
    for key in ("prior", "posterior"):
        for part in ("coords", "var"):
            np.testing.assert_array_equal(out[key][part][:, 0], out["measurement"][part][:, 0])
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
    """Adam's first update moves every weight without carried-over moments (here OFlowNet's, from
    a checkpoint without an optimizer) by at most the learning rate (base_lr / 2⁴, the last step
    of the schedule); skipping the bias correction would move them 3.16× as far."""
    from common.config import load_config, stage_config

    assert train_scoordnet(tiny_scene.train, tmp_path / "s", 2, "--snapshot", "2") == 0
    oflow = OFlowNet(0.25)
    tf.train.Checkpoint(oflownet=oflow).write(str(tmp_path / "o" / "ckpt-1"))
    (tmp_path / "o" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    assert _kfnet_train(tiny_scene, tmp_path / "k", "--scoordnet", str(tmp_path / "s"),
                        "--oflownet", str(tmp_path / "o"), "--max_steps", "9") == 0
    from common.checkpoints import load_networks

    hw = load_input_folder(tiny_scene.train).image_hw
    before, after = OFlowNet(0.25).build_for(hw), OFlowNet(0.25).build_for(hw)
    load_networks(tmp_path / "o", {"oflownet": before})
    load_networks(tmp_path / "k", {"oflownet": after})
    lr = float(stage_config(load_config("tiny"), "kfnet")["base_lr"]) / 16
    moved = [np.abs(a.numpy() - b.numpy()).max()
             for a, b in zip(after.trainable_variables, before.trainable_variables)]
    assert len(moved) > 20
    assert 0.5 * lr < max(moved) <= 1.01 * lr, max(moved)


def test_fine_tuning_keeps_the_pretrained_adam_moments(tiny_scene, tmp_path, capsys):
    """As the original restored `…/Adam` slots with the weights: SCoordNet's moments come from
    its stage-1 checkpoint (this project's or a TF1 one), OFlowNet's start at zero without any."""
    import keras

    from common.checkpoints import _adam_slots, load_adam_moments

    assert train_scoordnet(tiny_scene.train, tmp_path / "s", 2, "--snapshot", "2") == 0
    data = load_input_folder(tiny_scene.train)
    saved = SCoordNet(0.125).build_for(data.image_hw)
    saved_adam = keras.optimizers.Adam(lambda: 0.0)
    saved_adam.build(saved.trainable_variables)
    tf.train.Checkpoint(optimizer=saved_adam, scoordnet=saved).read(
        str(tmp_path / "s" / "ckpt-2")).expect_partial()
    net, oflow = SCoordNet(0.125).build_for(data.image_hw), OFlowNet(0.25).build_for(data.image_hw)
    adam = keras.optimizers.Adam(1e-3)
    adam.build(net.trainable_variables + oflow.trainable_variables)
    assert load_adam_moments(tmp_path / "s", "scoordnet", net, adam) == len(net.trainable_variables)
    for mine, theirs in zip(net.trainable_variables, saved.trainable_variables):
        for got, want in zip(_adam_slots(adam, mine), _adam_slots(saved_adam, theirs)):
            assert np.abs(want.numpy()).max() > 0
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert all(not np.any(m.numpy()) for v in oflow.trainable_variables for m in _adam_slots(adam, v))
    # A folder of another stage gives none.
    assert load_adam_moments(tmp_path / "s", "oflownet", oflow, adam) == 0

    # TF1 release: the `…/Adam` and `…/Adam_1` slots next to each weight.
    shapes = {k: tuple(v.shape) for k, v in SCoordNet(1.0).build_for((32, 32)).tf1_variables().items()}
    arrays = random_tf1_arrays(shapes, scale=0.02)
    slots = {f"{k}/{s}": np.full(v.shape, i + 1.0, np.float32)
             for i, (k, v) in enumerate(arrays.items()) for s in ("Adam", "Adam_1")}
    write_tf1_checkpoint(tmp_path / "orig", {**arrays, **slots}, step=500)
    full = SCoordNet(1.0).build_for((32, 32))
    adam = keras.optimizers.Adam(1e-3)
    adam.build(full.trainable_variables)
    assert load_adam_moments(tmp_path / "orig", "scoordnet", full, adam) == len(arrays)
    for i, (name, var) in enumerate(full.tf1_variables().items()):
        m, v = _adam_slots(adam, var)
        assert np.all(m.numpy() == slots[f"{name}/Adam"]) and np.all(v.numpy() == slots[f"{name}/Adam_1"])

    capsys.readouterr()
    tf.train.Checkpoint(oflownet=OFlowNet(0.25)).write(str(tmp_path / "o" / "ckpt-1"))
    (tmp_path / "o" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    assert _kfnet_train(tiny_scene, tmp_path / "k", "--scoordnet", str(tmp_path / "s"),
                        "--oflownet", str(tmp_path / "o"), "--max_steps", "9") == 0
    printed = capsys.readouterr().out
    assert f"Adam moments of {len(net.trainable_variables)} variables carried over" in printed
    assert "no Adam moments there" in printed


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


def test_nis_changes_the_output_not_the_filter_state(tiny_scene, tmp_path):
    """--nis writes failing cells as their measurement; the state (hence every prior) and the
    written σ stay the Kalman posterior's, as in the original."""
    assert _kfnet_train(tiny_scene, tmp_path / "k", "--max_steps", "2") == 0
    plain, gated = tmp_path / "plain", tmp_path / "gated"
    assert _stream(tiny_scene, tmp_path / "k", plain, "--save_measurement") == 0

    def nis_of(k):
        prior, meas = (np.load(plain / sub / f"coord_{k}.npy") for sub in ("prior", "measurement"))
        return (np.sum((meas[..., :3] - prior[..., :3]) ** 2, -1)
                / (1.0 / prior[..., 3] ** 2 + 1.0 / meas[..., 3] ** 2))

    # A barely trained model fails no 95 % test: a bound at the median NIS makes half the cells fail.
    threshold = float(np.median([nis_of(k) for k in range(24) if k not in (0, 12)]))
    assert _stream(tiny_scene, tmp_path / "k", gated, "--save_measurement", "--nis",
                   "--nis_threshold", str(threshold)) == 0
    rejected = kept = 0
    for k in range(24):
        post, shown = np.load(plain / f"coord_{k}.npy"), np.load(gated / f"coord_{k}.npy")
        meas = np.load(plain / "measurement" / f"coord_{k}.npy")
        np.testing.assert_array_equal(shown[..., 3], post[..., 3])
        prior_file = plain / "prior" / f"coord_{k}.npy"
        if not prior_file.exists():
            np.testing.assert_array_equal(shown, post)
            continue
        prior = np.load(prior_file)
        np.testing.assert_allclose(np.load(gated / "prior" / f"coord_{k}.npy"), prior, rtol=1e-6, atol=1e-6)
        nis = nis_of(k)
        clear = np.abs(nis - threshold) > 1e-3 * threshold
        fail = clear & (nis > threshold)
        np.testing.assert_allclose(shown[fail, :3], meas[fail, :3], atol=1e-6)
        np.testing.assert_allclose(shown[clear & ~fail, :3], post[clear & ~fail, :3], atol=1e-6)
        rejected, kept = rejected + int(fail.sum()), kept + int((clear & ~fail).sum())
    assert rejected > 0 and kept > 0


def test_mixture_prior_variance_and_noise_scale_reach_the_filter(tiny_scene, tmp_path, capsys):
    """--prior_variance mixture --process_noise_scale 3: the same prior coordinates at the first
    filtered frame (its state is the measurement either way), a larger prior variance in every
    in-view cell (warp(σ²) + spread ≥ warp(σ)², 3σ_q² > σ_q²); bad values stop before writing."""
    assert _kfnet_train(tiny_scene, tmp_path / "k", "--max_steps", "2") == 0
    plain, mixed = tmp_path / "plain", tmp_path / "mixed"
    assert _stream(tiny_scene, tmp_path / "k", plain, "--save_measurement") == 0
    assert _stream(tiny_scene, tmp_path / "k", mixed, "--save_measurement", "--prior_variance", "mixture",
                   "--process_noise_scale", "3") == 0
    for k in (1, 13):  # the first filtered frame of each sequence
        a, b = (np.load(out / "prior" / f"coord_{k}.npy") for out in (plain, mixed))
        np.testing.assert_allclose(b[..., :3], a[..., :3], rtol=1e-6, atol=1e-6)
        var_a, var_b = 1.0 / a[..., 3] ** 2, 1.0 / b[..., 3] ** 2
        seen = var_a < 1e5
        assert seen.sum() > 0.5 * seen.size
        assert np.all(var_b[seen] > var_a[seen] * (1 + 1e-4))
    assert json.loads((mixed / "run.json").read_text())["signature"]["prior_variance"] == "mixture"
    capsys.readouterr()
    assert _stream(tiny_scene, tmp_path / "k", tmp_path / "bad", "--process_noise_scale", "0") == 2
    assert "--process_noise_scale" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


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
