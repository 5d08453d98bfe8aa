"""SCoordNet: the network, its loss, training, resuming, the test CLI and original weights."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from common import losses
from common.checkpoints import find_checkpoint
from common.cli import run
from common.data.scene import load_input_folder
from scoordnet import test as scoord_test
from scoordnet import train as scoord_train
from scoordnet.model import LAYERS, SCoordNet

ROOT = Path(__file__).resolve().parents[1]


def cli(main, argv):
    """Runs a CLI main in-process like the shell would; returns the exit code."""
    with pytest.raises(SystemExit) as exit_info:
        run(main, argv)
    return exit_info.value.code


def test_default_network_shapes_and_parameter_count():
    net = SCoordNet()
    coords, sigma = net(tf.random.uniform([2, 64, 80, 3], 0, 255))
    assert coords.shape == (2, 8, 10, 3) and sigma.shape == (2, 8, 10, 1)
    assert np.all(sigma.numpy() > 0)
    assert net.count_params() == 24_406_724  # docs/reference.md §3: about 24.4 M
    names = [n for n, *_ in LAYERS] + ["prediction"]
    assert sorted(k.split("/")[1] for k in net.tf1_variables()) == sorted(names * 2)


def test_width_multiplier_shrinks_hidden_layers_only():
    net = SCoordNet(width=0.25).build_for((32, 32))
    assert net.convs[0].filters == 16 and net.convs[6].filters == 256
    assert net.prediction.filters == 4


def test_nll_against_hand_computed_values():
    pred = tf.constant([[[[0.0, 0, 0], [1, 1, 1]]]])
    gt = tf.constant([[[[0.3, 0.4, 0], [0, 0, 0]]]])
    sigma = tf.constant([[[[0.5], [2.0]]]])
    mask = tf.constant([[[[1.0], [0.0]]]])
    ell = 3 * np.log(0.5) + 0.25 / (2 * 0.25)  # −1.5794
    np.testing.assert_allclose(losses.coord_nll(pred, sigma, gt, mask), ell / 2, rtol=1e-6)
    both = tf.ones_like(mask)
    ell2 = 3 * np.log(2.0) + 3 / 8
    np.testing.assert_allclose(losses.coord_nll(pred, sigma, gt, both), (ell + ell2) / 3, rtol=1e-6)
    # The cap replaces larger per-cell losses by the cap itself.
    np.testing.assert_allclose(losses.coord_nll(pred, sigma, gt, both, cap=-1.0), (ell - 1.0) / 3, rtol=1e-6)
    # σ is clamped at 1e−5.
    tiny = losses.nll_map(pred[:, :, :1], tf.zeros([1, 1, 1, 1]), pred[:, :, :1])
    np.testing.assert_allclose(tiny, 3 * np.log(1e-5), rtol=1e-6)
    np.testing.assert_allclose(losses.accuracy(pred, gt, both), 0.0)
    np.testing.assert_allclose(losses.accuracy(gt, gt, both), 1.0)


def test_smoothness_against_hand_computed_values():
    coords = tf.constant([[[[0.0, 0, 0], [0.3, 0, 0]], [[0.0, 0, 0], [0.0, 0, 0]]]])  # [1,2,2,3]
    image = tf.constant([[[[0.0] * 3, [8.0] * 3], [[0.0] * 3, [0.0] * 3]]])
    mask = tf.ones([1, 2, 2, 1])
    # x differences: row 0: 0.09/3 weighted exp(−0.625·8); row 1: 0. y: column 1: 0.09/3 · exp(−5).
    expected = (0.03 * np.exp(-5.0) + 0.03 * np.exp(-5.0)) / 5
    np.testing.assert_allclose(losses.smoothness(coords, image, mask), expected, rtol=1e-5)


def _train(scene_folder, model_folder, steps, *extra):
    return cli(scoord_train.main, ["--input_folder", str(scene_folder), "--model_folder",
                                   str(model_folder), "--scene", "tiny", "--max_steps", str(steps),
                                   "--no_progress", *extra])


def _dataset_nll(data, net):
    from common.data.pipelines import test_dataset

    total = []
    for b in test_dataset(data, batch_size=8):
        c, s = net(b["image"])
        total.append(float(losses.coord_nll(c, s, b["coords"], b["mask"])))
    return float(np.mean(total))


def test_training_lowers_the_loss(tiny_scene, tmp_path):
    from scoordnet.test import load_network

    data = load_input_folder(tiny_scene.train)
    net0 = SCoordNet(width=0.125).build_for(data.image_hw)
    tf.keras.utils.set_random_seed(0)
    assert _train(tiny_scene.train, tmp_path / "m", 1, "--snapshot", "1") == 0
    first = _dataset_nll(data, load_network(tmp_path / "m", data.image_hw)[0])
    # tiny's stepvalue (4) would all but stop learning within these steps: keep the rate constant.
    assert _train(tiny_scene.train, tmp_path / "m", 150, "--snapshot", "150", "--base_lr", "3e-4",
                  "--stepvalue", "1000", "--no_augment") == 0
    last = _dataset_nll(data, load_network(tmp_path / "m", data.image_hw)[0])
    assert last < first - 1.0, (first, last)
    del net0


def test_kill_and_resume_continues_from_the_saved_step(tiny_scene, tmp_path):
    model = tmp_path / "m"
    cmd = [sys.executable, str(ROOT / "scoordnet" / "train.py"), "--input_folder", str(tiny_scene.train),
           "--model_folder", str(model), "--scene", "tiny", "--max_steps", "100000", "--snapshot", "5",
           "--no_progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240

    def recorded():
        """Step of the newest checkpoint the run has recorded as saved (its `checkpoint` file)."""
        latest = tf.train.latest_checkpoint(str(model)) if (model / "checkpoint").exists() else None
        return int(latest.rsplit("-", 1)[1]) if latest else 0

    while recorded() < 10 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The resume takes the newest whole checkpoint on disk, which may be newer than the one the
    # `checkpoint` file names (killed between writing ckpt-N and updating that file).
    saved = int(find_checkpoint(model)[1].rsplit("-", 1)[1])
    assert saved >= recorded() >= 10
    out = subprocess.run(cmd[:-5] + ["--max_steps", str(saved + 3), "--snapshot", "100", "--no_progress"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"at step {saved}" in out.stdout and f"finished step {saved + 3}" in out.stdout


def test_resumed_run_matches_an_uninterrupted_one(tiny_scene, tmp_path):
    """Interrupting at step 4 and resuming gives the same weights at step 8 as running straight
    through: the data stream and augmentation restart exactly where they left off."""
    assert _train(tiny_scene.train, tmp_path / "a", 8, "--snapshot", "8") == 0
    assert _train(tiny_scene.train, tmp_path / "b", 4, "--snapshot", "4") == 0
    assert _train(tiny_scene.train, tmp_path / "b", 8, "--snapshot", "8") == 0
    ra = tf.train.load_checkpoint(str(tmp_path / "a" / "ckpt-8"))
    rb = tf.train.load_checkpoint(str(tmp_path / "b" / "ckpt-8"))
    keys = [k for k in ra.get_variable_to_shape_map() if "VARIABLE_VALUE" in k and "save_counter" not in k]
    assert len(keys) > 20
    for k in keys:
        np.testing.assert_allclose(ra.get_tensor(k), rb.get_tensor(k), rtol=1e-4, atol=1e-6, err_msg=k)


def test_test_cli_writes_world_coordinates_and_confidence(tiny_scene, tmp_path, capsys):
    from common.geometry import transform_points
    from common.poses import invert_rigid
    from scoordnet.test import load_network

    assert _train(tiny_scene.train, tmp_path / "m", 3, "--snapshot", "3") == 0
    out = tmp_path / "out"
    code = cli(scoord_test.main, ["--input_folder", str(tiny_scene.test), "--output_folder", str(out),
                                  "--model_folder", str(tmp_path / "m"), "--batch_size", "5",
                                  "--no_progress"])
    assert code == 0
    data = load_input_folder(tiny_scene.test, require_labels=False)
    files = sorted(out.glob("coord_*.npy"))
    assert len(files) == len(data)
    printed = capsys.readouterr().out
    assert "SCoordNet: median coordinate error" in printed and "frame 0: median error" in printed
    net = load_network(tmp_path / "m", data.image_hw)[0]
    import cv2

    k = len(data) - 1
    image = cv2.imread(data.image_paths[k])[..., ::-1].astype(np.float32)
    coords, sigma = net(image[None])
    saved = np.load(out / f"coord_{k}.npy")
    assert saved.shape == (*data.map_hw, 4) and saved.dtype == np.float32
    world = transform_points(invert_rigid(data.transform), coords.numpy()[0])
    np.testing.assert_allclose(saved[..., :3], world, atol=1e-4)
    np.testing.assert_allclose(saved[..., 3], 1.0 / sigma.numpy()[0, ..., 0], rtol=1e-4)
    # A second run with the same model finds the work done and rewrites nothing.
    before = saved.copy()
    stamp = (out / f"coord_{k}.npy").stat().st_mtime_ns
    assert cli(scoord_test.main, ["--input_folder", str(tiny_scene.test), "--output_folder", str(out),
                                  "--model_folder", str(tmp_path / "m"), "--no_progress", "--quiet"]) == 0
    assert (out / f"coord_{k}.npy").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(np.load(out / f"coord_{k}.npy"), before)


def _reference_forward(arrays, image):
    """SCoordNet from raw kernel arrays with tf.nn ops only (independent of the Keras model)."""
    x = (image - 128.0) * 0.00625
    for name, _, _, stride in LAYERS:
        x = tf.nn.relu(tf.nn.conv2d(x, arrays[f"ScoreNet/{name}/kernel"], stride, "SAME")
                       + arrays[f"ScoreNet/{name}/bias"])
    out = tf.nn.conv2d(x, arrays["ScoreNet/prediction/kernel"], 1, "SAME") + arrays["ScoreNet/prediction/bias"]
    return out[..., :3], tf.exp(out[..., 3:])


def write_tf1_checkpoint(folder, arrays, step=1000):
    """An original-style TF1 checkpoint (Saver, name-based) holding the given variables."""
    folder.mkdir(parents=True, exist_ok=True)
    with tf.Graph().as_default():
        for name, value in arrays.items():
            tf.compat.v1.get_variable(name.replace(":0", ""), initializer=tf.constant(value))
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(folder / "model.ckpt"), global_step=step)


def random_tf1_arrays(names_to_shapes, seed=0, scale=0.05):
    rng = np.random.default_rng(seed)
    return {n: (rng.normal(size=s) * scale).astype(np.float32) for n, s in names_to_shapes.items()}


def test_original_tf1_checkpoint_is_imported_by_name(tiny_scene, tmp_path):
    shapes = {k: tuple(v.shape) for k, v in SCoordNet(width=1.0).build_for((32, 32)).tf1_variables().items()}
    arrays = random_tf1_arrays(shapes)
    write_tf1_checkpoint(tmp_path / "orig", arrays)
    assert (tmp_path / "orig" / "model.ckpt-1000.index").exists()
    out = tmp_path / "out"
    assert cli(scoord_test.main, ["--input_folder", str(tiny_scene.test), "--output_folder", str(out),
                                  "--model_folder", str(tmp_path / "orig"), "--no_progress",
                                  "--quiet"]) == 0
    data = load_input_folder(tiny_scene.test, require_labels=False)
    import cv2

    from common.geometry import transform_points
    from common.poses import invert_rigid

    image = cv2.imread(data.image_paths[0])[..., ::-1].astype(np.float32)[None]
    coords, sigma = _reference_forward(arrays, image)
    saved = np.load(out / "coord_0.npy")
    world = transform_points(invert_rigid(data.transform), coords.numpy()[0])
    np.testing.assert_allclose(saved[..., :3], world, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(saved[..., 3], 1 / sigma.numpy()[0, ..., 0], rtol=1e-4)


@pytest.mark.parametrize("case, message", [
    ("missing_input", "input folder not found"),
    ("unknown_scene", "unknown scene 'nowhere'"),
    ("model_is_file", "is a file, not a folder"),
    ("bad_batch", "--batch_size must be positive"),
])
def test_train_bad_input(tiny_scene, tmp_path, capsys, case, message):
    args = {"--input_folder": str(tiny_scene.train), "--model_folder": str(tmp_path / "m"),
            "--scene": "tiny", "--max_steps": "1"}
    if case == "missing_input":
        args["--input_folder"] = str(tmp_path / "nothing")
    elif case == "unknown_scene":
        args["--scene"] = "nowhere"
    elif case == "model_is_file":
        (tmp_path / "m").write_text("x")
    elif case == "bad_batch":
        args["--batch_size"] = "0"
    argv = [x for kv in args.items() for x in kv] + ["--no_progress"]
    assert cli(scoord_train.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "m").is_dir()


@pytest.mark.parametrize("case, message", [
    ("no_checkpoint", "no checkpoint in"),
    ("missing_model", "model folder not found"),
    ("output_is_file", "is a file, not a folder"),
])
def test_test_bad_input(tiny_scene, tmp_path, capsys, case, message):
    model = tmp_path / "m"
    model.mkdir()
    out = tmp_path / "out"
    if case == "missing_model":
        model = tmp_path / "absent"
    elif case == "output_is_file":
        _train(tiny_scene.train, model, 1, "--snapshot", "1")
        capsys.readouterr()
        out.write_text("x")
    code = cli(scoord_test.main, ["--input_folder", str(tiny_scene.test), "--output_folder", str(out),
                                  "--model_folder", str(model), "--no_progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.is_dir()


def test_checkpoint_holds_every_layer(tmp_path):
    """tf.train.Checkpoint must see every Keras layer (it does not follow plain lists)."""
    net = SCoordNet(width=0.125).build_for((32, 32))
    tf.train.Checkpoint(scoordnet=net).write(str(tmp_path / "c"))
    saved = [k for k in tf.train.load_checkpoint(str(tmp_path / "c")).get_variable_to_shape_map()
             if k.startswith("scoordnet/")]
    assert len(saved) == len(net.weights) == 24
    other = SCoordNet(width=0.125).build_for((32, 32))
    tf.train.Checkpoint(scoordnet=other).read(str(tmp_path / "c")).assert_consumed()
    x = tf.random.uniform([1, 32, 32, 3], 0, 255)
    np.testing.assert_array_equal(net(x)[0], other(x)[0])


def test_resume_finds_a_whole_checkpoint_the_run_had_not_recorded(tiny_scene, tmp_path, capsys):
    """Killed after writing ckpt-4 but before recording it in `checkpoint`: the run resumes from it."""
    model = tmp_path / "m"
    assert _train(tiny_scene.train, model, 4, "--snapshot", "2") == 0
    (model / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n')
    capsys.readouterr()
    assert _train(tiny_scene.train, model, 5, "--snapshot", "5") == 0
    printed = capsys.readouterr().out
    assert "ckpt-4 at step 4" in printed and "finished step 5" in printed
