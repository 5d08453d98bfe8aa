"""What a run records: the device line, model.json, averaged TensorBoard scalars, pictures, and
choosing a checkpoint to test."""

import json
import os
import stat

import numpy as np
import pytest
import tensorflow as tf

from common import cli as kcli
from common import summaries
from scoordnet import test as scoord_test
from scoordnet import train as scoord_train


def run_cli(main, argv):
    with pytest.raises(SystemExit) as exit_info:
        kcli.run(main, argv)
    return exit_info.value.code


def read_events(folder):
    """{tag: {step: value}} of scalars, {tag: {step: [H, W, C] pictures]}} of images, text tags."""
    scalars, images, texts = {}, {}, set()
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                plugin = v.metadata.plugin_data.plugin_name
                t = tf.make_ndarray(v.tensor)
                if plugin == "scalars":
                    scalars.setdefault(v.tag, {})[event.step] = float(t)
                elif plugin == "images":  # [width, height, png, png, …]
                    images.setdefault(v.tag, {})[event.step] = [
                        tf.io.decode_png(png).numpy() for png in t[2:]]
                elif plugin == "text":
                    texts.add(v.tag)
    return scalars, images, texts


def test_colour_wheel_and_flow_colours_exact():
    wheel = summaries.colour_wheel()
    assert wheel.shape == (55, 3)
    np.testing.assert_array_equal(wheel[0], [1, 0, 0])  # red
    np.testing.assert_array_equal(wheel[15], [1, 1, 0])  # yellow
    np.testing.assert_array_equal(wheel[21], [0, 1, 0])  # green
    np.testing.assert_array_equal(wheel[25], [0, 1, 1])  # cyan
    np.testing.assert_array_equal(wheel[36], [0, 0, 1])  # blue
    np.testing.assert_array_equal(wheel[49], [1, 0, 1])  # magenta
    flow = np.array([[[0.0, 0.0], [0.0, 2.0], [0.0, 1.0]]])  # still, down at the max, down at half
    rgb = summaries.flow_image(flow)
    np.testing.assert_allclose(rgb[0, 0], [1, 1, 1])
    # Straight down: angle −π/2 → wheel position 13.5, between 221/255 and 238/255 green.
    np.testing.assert_allclose(rgb[0, 1], [1, (221 + 238) / 2 / 255, 0], atol=1e-12)
    np.testing.assert_allclose(rgb[0, 2], 1 - 0.5 * (1 - rgb[0, 1]), atol=1e-12)
    # Beyond the given maximum the colour is darkened instead of faded.
    np.testing.assert_allclose(summaries.flow_image(flow, max_norm=1.0)[0, 1], 0.75 * rgb[0, 1])


def test_ramps_clip_and_log_scale():
    np.testing.assert_allclose(summaries.error_image(np.array([0.0, 10.0])),
                               [[0, 0, 0.3], [0.5, 0, 0]])
    np.testing.assert_allclose(summaries.error_image(np.array([0.0]), np.array([0.0])), [[0, 0, 0]])
    # 3.16 cm is half-way up the 1 mm … 1 m log ramp: between cyan (2/5) and yellow (3/5).
    np.testing.assert_allclose(summaries.sigma_image(np.array([10 ** -1.5])), [[0.5, 0.95, 0.45]])


def fake_nvidia_smi(folder, gpus):
    exe = folder / "nvidia-smi"
    lines = "".join(f"echo 'GPU {i}: NVIDIA Test {i} (UUID: GPU-{i})'\n" for i in range(gpus))
    exe.write_text("#!/bin/sh\n" + lines)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def test_device_line_and_warning_for_gpus_tensorflow_does_not_see(tmp_path, monkeypatch, capsys):
    kcli.quiet_tensorflow(devices=True)
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("devices: CPU:0")
    assert "warning" not in err
    fake_nvidia_smi(tmp_path, 2)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert kcli.nvidia_gpus() == ["NVIDIA Test 0", "NVIDIA Test 1"]
    kcli.report_devices()
    err = capsys.readouterr().err
    assert "nvidia-smi lists 2 GPU(s)" in err and "TensorFlow sees 0" in err
    assert "requirements-gpu.txt" in err
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # GPUs hidden on purpose: no warning
    kcli.report_devices()
    assert "warning" not in capsys.readouterr().err


def test_import_errors_are_not_muted(tmp_path, monkeypatch, capfd):
    """Lines TensorFlow prints while importing that are not known start-up chatter still show."""
    import sys

    monkeypatch.delitem(sys.modules, "tensorflow")
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import os\n"
        "os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "os.write(2, b'E0000 could not load libcudnn.so.9\\n')\n"
        "raise ImportError('broken build')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("KFNET_TF_VERBOSE", raising=False)
    with pytest.raises(ImportError, match="broken build"):
        kcli.quiet_tensorflow()
    err = capfd.readouterr().err
    assert "could not load libcudnn.so.9" in err and "oneDNN" not in err
    monkeypatch.setitem(sys.modules, "tensorflow", tf)


def test_short_run_records_averages_pictures_config_and_picks_checkpoints(tiny_scene, tmp_path, capsys):
    def train(folder, *extra):
        return run_cli(scoord_train.main, [
            "--input_folder", str(tiny_scene.train), "--model_folder", str(folder), "--scene", "tiny",
            "--max_steps", "4", "--snapshot", "2", "--no_progress", "--seed", "3", *extra])

    assert train(tmp_path / "every", "--summary_every", "1") == 0
    assert train(tmp_path / "m", "--summary_every", "2", "--image_every", "2") == 0
    assert capsys.readouterr().out.startswith("devices: CPU:0")

    per_step, _, _ = read_events(tmp_path / "every" / "log")
    scalars, images, texts = read_events(tmp_path / "m" / "log")
    loss = per_step["loss"]
    assert sorted(loss) == [1, 2, 3, 4]
    # Summaries at step 1 (the first), 2 and 4: each the mean over the steps since the last one.
    assert sorted(scalars["loss"]) == [1, 2, 4]
    assert scalars["loss"][1] == pytest.approx(loss[1], rel=1e-6)
    assert scalars["loss"][2] == pytest.approx(loss[2], rel=1e-6)
    assert scalars["loss"][4] == pytest.approx((loss[3] + loss[4]) / 2, rel=1e-6)
    assert loss[3] != pytest.approx(loss[4], rel=1e-4)  # the mean is not just one of them
    assert scalars["accuracy"][4] == pytest.approx(
        (per_step["accuracy"][3] + per_step["accuracy"][4]) / 2, rel=1e-5, abs=1e-7)

    assert set(images) == {"images/image", "images/coord_error", "images/sigma"}
    for tag in images:
        assert sorted(images[tag]) == [1, 2, 4]
        pictures = images[tag][4]
        assert len(pictures) == 2 and pictures[0].shape == (64, 80, 3)
    # One map cell covers 8×8 pixels of the error picture.
    cells = images["images/coord_error"][4][0].reshape(8, 8, 10, 8, 3)
    assert (cells == cells[:, :1, :, :1]).all()
    assert "run" in texts

    info = json.loads((tmp_path / "m" / "model.json").read_text())
    assert info["stage"] == "scoordnet" and info["seed"] == 3
    assert info["config"]["summary_every"] == 2 and info["config"]["image_every"] == 2
    assert info["config"]["max_steps"] == 4 and info["git_describe"]

    def test(checkpoint, out):
        extra = [] if checkpoint is None else ["--checkpoint", str(checkpoint)]
        return run_cli(scoord_test.main, [
            "--input_folder", str(tiny_scene.test), "--output_folder", str(tmp_path / out),
            "--model_folder", str(tmp_path / "m"), "--quiet", "--no_progress", *extra])

    capsys.readouterr()
    assert test(2, "out2") == 0
    assert f"weights: {tmp_path / 'm' / 'ckpt-2'}" in capsys.readouterr().out
    assert test(None, "out4") == 0
    assert f"weights: {tmp_path / 'm' / 'ckpt-4'}" in capsys.readouterr().out
    assert not np.array_equal(np.load(tmp_path / "out2" / "coord_0.npy"),
                              np.load(tmp_path / "out4" / "coord_0.npy"))
    assert test(3, "out3") == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"error: --checkpoint 3: no checkpoint of that step in {tmp_path / 'm'} (--model_folder; "
        "steps there: 2, 4)"]
    assert not (tmp_path / "out3").exists()


def test_flow_and_filter_stages_draw_their_maps(tiny_scene):
    from common.data.pipelines import pair_dataset, window_dataset
    from common.data.scene import load_input_folder
    from kfnet.stage import KFNetStage
    from oflownet.stage import OFlowNetStage
    from scoordnet.model import SCoordNet

    data = load_input_folder(tiny_scene.train)
    stage = OFlowNetStage(width=0.25)
    stage.net.build_for(data.image_hw)
    pictures = stage.summary_images(next(iter(pair_dataset(data, 3, augment=False))))
    assert set(pictures) == {"image", "flow", "sigma_q", "coord_error_prior"}
    assert all(p.shape == (2, 64, 80, 3) and 0 <= p.min() and p.max() <= 1 for p in pictures.values())

    stage = KFNetStage(SCoordNet(width=0.125).build_for(data.image_hw), stage.net)
    pictures = stage.summary_images(next(iter(window_dataset(data, 4, 1))))
    assert set(pictures) == {"image", "flow", "sigma_q"} | {
        f"{kind}_{key}" for kind in ("coord_error", "sigma")
        for key in ("measurement", "prior", "posterior")}
    assert all(p.shape == (1, 64, 80, 3) for p in pictures.values())
    # The filter fused a prior into the last frame: its posterior σ is not the measurement's.
    assert (pictures["sigma_posterior"] != pictures["sigma_measurement"]).any()
