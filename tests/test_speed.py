"""The speed work: the benchmark's table, the test CLIs' writer thread, --mixed_precision (no timings)."""

import json
import threading

import numpy as np
import pytest

import common.locks
from common import formats
from common.data.scene import load_input_folder
from common.errors import OutputError
from kfnet import Relocalizer
from kfnet import test as kfnet_test
from scoordnet import test as scoord_test
from tests.test_faults import _fail_fsync_of, _one_error_line, _test_argv
from tests.test_relocalizer import _images, _random_kfnet
from tests.test_scoordnet import cli

BENCHMARK_KEYS = [
    "cli_scoordnet", "cli_scoordnet_cpu", "cli_kfnet", "cli_kfnet_cpu",
    "kfnet_cli_vs_scoordnet_cli", "relocalizer_step", "pnp", "full_kfnet_vs_scoordnet",
    "full_kfnet_vs_scoordnet_pnp", "full_split_tower", "full_split_cost_volume",
    "full_split_flow_unet", "full_split_filter", "full_split_pnp", "full_split_io_read",
    "full_split_io_write", "full_split_overhead", "full_startup_scoordnet", "full_startup_kfnet",
    "full_startup_scoordnet_bf16", "full_startup_kfnet_bf16", "full_bf16_scoordnet",
    "full_bf16_kfnet", "full_bf16_diff_measurement", "full_bf16_diff_posterior",
    "full_cli_scoordnet", "full_cli_scoordnet_cpu", "full_cli_kfnet", "full_cli_kfnet_cpu",
    "full_gflops",
]


def test_benchmark_runs_on_a_tiny_setting_and_prints_every_key(tmp_path, capsys):
    from scripts import benchmark

    out = tmp_path / "bench.json"
    assert benchmark.main(["--frames", "8", "--size", "64x48", "--full", "--full_frames", "5", "--full_size",
                           "64x48", "--full_widths", "0.25", "0.25", "--full_repeat", "1", "--matmul", "256",
                           "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    table = printed[printed.index("| key |"):]
    for key in BENCHMARK_KEYS:
        assert f"| {key} |" in table, key
    rows = {r["key"]: r for r in json.loads(out.read_text())["rows"]}
    assert sorted(rows) == sorted(BENCHMARK_KEYS)
    full = rows["full_kfnet_vs_scoordnet"]
    assert len(full["per_frame_ratios"]) == 5 and full["ratio"] == np.median(full["per_frame_ratios"])
    assert all(np.isfinite(rows[k]["ratio"]) and rows[k]["ratio"] > 0 for k in ("cli_scoordnet", "full_cli_kfnet",
                                                                       "cli_kfnet_cpu", "full_cli_scoordnet_cpu"))


def test_background_writer_keeps_order_and_raises_the_first_error(tmp_path):
    done, main = [], threading.get_ident()

    def job(k):
        assert threading.get_ident() != main
        if k == 3:
            raise OutputError("cannot write frame 3")
        formats.save_npy(tmp_path / f"coord_{k}.npy", np.full((2, 2, 4), k))
        done.append(k)

    writer = formats.BackgroundWriter(depth=2)
    with pytest.raises(OutputError, match="cannot write frame 3"):
        for k in range(50):
            writer.submit(job, k)
        writer.close()
    assert done == [0, 1, 2]  # nothing after the failing job runs
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"coord_{k}.npy" for k in range(3)]
    assert np.load(tmp_path / "coord_2.npy")[0, 0, 0] == 2
    with formats.BackgroundWriter() as ok:
        for k in range(5):
            ok.submit(done.append, 10 + k)
    assert done[3:] == [10, 11, 12, 13, 14]


def test_kfnet_test_full_disk_on_the_writer_thread_is_one_line(tiny_scene, tmp_path, capsys, monkeypatch):
    model, out = tmp_path / "m", tmp_path / "out"
    _random_kfnet(model, (64, 80))
    monkeypatch.setattr(common.locks.os, "fsync", _fail_fsync_of("coord_5.npy"))
    assert cli(kfnet_test.main, _test_argv(tiny_scene.test, model, out)) == 1
    assert _one_error_line(capsys) == f"error: cannot write {out / 'coord_5.npy'}: No space left on device"
    assert sorted(p.name for p in out.glob("coord_*")) == [f"coord_{k}.npy" for k in range(5)]
    assert all(np.load(out / f"coord_{k}.npy").shape == (8, 10, 4) for k in range(5))
    assert not list(out.rglob("*.tmp"))


def _maps(folder, n):
    return np.stack([np.load(folder / f"coord_{k}.npy") for k in range(n)])


def _relative_distance(a, b):
    """Median point distance between two [.., 3] maps over the median spread of the first."""
    spread = np.median(np.linalg.norm(a - np.median(a.reshape(-1, 3), 0), axis=-1))
    return float(np.median(np.linalg.norm(a - b, axis=-1)) / spread)


def test_mixed_precision_runs_both_test_clis_and_the_relocalizer_close_to_float32(tiny_scene, tmp_path):
    """bfloat16 keeps 8 bits of mantissa. Measured on these tiny random-weight networks: the maps
    moved by 1.5 % (SCoordNet), 1.8 % (KFNet posterior), 1.4-1.5 % (Relocalizer steps) of their
    spread (median point distance / median distance to the map's median), the median confidence
    by < 0.02 %, the median coordinate error by < 0.01 % (129.514 → 129.518 cm). Bounds: 5 %, 1 %, 0.1 %."""
    model = tmp_path / "m"
    _random_kfnet(model, (64, 80))
    data = load_input_folder(tiny_scene.test, require_labels=False)
    n = len(data)
    for main, name in ((scoord_test.main, "scoordnet"), (kfnet_test.main, "kfnet")):
        fp, bf = tmp_path / f"{name}_fp32", tmp_path / f"{name}_bf16"
        assert cli(main, _test_argv(tiny_scene.test, model, fp)) == 0
        assert cli(main, [*_test_argv(tiny_scene.test, model, bf), "--mixed_precision"]) == 0
        a, b = _maps(fp, n), _maps(bf, n)
        assert b.dtype == np.float32 and np.isfinite(b).all()
        assert not np.array_equal(a, b)  # it did run in another precision
        assert _relative_distance(a[..., :3], b[..., :3]) < 0.05
        np.testing.assert_allclose(np.median(b[..., 3]), np.median(a[..., 3]), rtol=0.01)
        sa = json.loads((fp / "run.json").read_text())["summary"]
        sb = json.loads((bf / "run.json").read_text())["summary"]
        key = "scoordnet" if name == "scoordnet" else "posterior"
        assert sb[key]["median_cm"] == pytest.approx(sa[key]["median_cm"], rel=1e-3)
        assert json.loads((bf / "run.json").read_text())["signature"]["mixed_precision"] is True

    fp = Relocalizer.load(model, scene="tiny", transform=data.transform)
    bf = Relocalizer.load(model, scene="tiny", transform=data.transform, mixed_precision=True)
    for image in _images(data)[:3]:
        ra, rb = fp.step(image), bf.step(image)
        assert rb.coords.dtype == np.float32 and rb.sigma.dtype == np.float32
        assert _relative_distance(ra.coords, rb.coords) < 0.05
    assert bf.model.scoordnet.compute_dtype == "bfloat16" and fp.model.scoordnet.compute_dtype == "float32"


def test_flow_unet_matrix_layers_match_the_keras_layers():
    """FlowNet runs its 2×2 / 1×1 layers as matrix products: the same numbers as the layers' own calls."""
    import tensorflow as tf

    from oflownet.flownet import FlowNet

    tf.keras.utils.set_random_seed(0)
    net = FlowNet(in_channels=8, width=0.5)
    volume = tf.random.normal([6, 8, 8, 8])
    x0 = net.conv0(volume)
    x1 = net.conv1b(net.conv1a(x0))
    x2 = net.conv2b(net.conv2a(x1))
    x3 = net.conv3b(net.conv3a(x2))
    y = net.conv4(tf.concat([net.upconv2(x3), x2], -1))
    y = net.conv5(tf.concat([net.upconv1(y), x1], -1))
    y = net.conv6(tf.concat([net.upconv0(y), x0], -1))
    logits = tf.reshape(net.prediction(y), [-1, 64])
    sigma = 0.01 * tf.exp(net.uncertainty(net.fc2(net.fc1(tf.reshape(x3, [6, -1])))))
    got_logits, got_sigma = net(volume)
    assert float(tf.reduce_max(tf.abs(logits))) > 0.01  # not a vanishing signal
    np.testing.assert_allclose(got_logits.numpy(), logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_sigma.numpy(), sigma.numpy(), rtol=1e-5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(net(volume)[0] ** 2)
    grads = tape.gradient(loss, [net.conv4.kernel, net.upconv2.kernel, net.conv3b.kernel])
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_filter_frames_gives_the_bytes_of_the_frame_by_frame_filter():
    """One traced call over a batch (kfnet/test.py) against KalmanStream.filter per frame, with a
    sequence start inside the batch, a second batch carrying the state on, and the NIS output on
    (cells failing the test show the measurement)."""
    import tensorflow as tf

    from kfnet.relocalizer import KalmanStream

    rng = np.random.default_rng(0)
    n, h, w = 5, 3, 4
    z, flow = (tf.constant(rng.normal(size=(n, h, w, c)), tf.float32) for c in (3, 2))
    r, q = (tf.constant(rng.uniform(lo, hi, (n, h, w, 1)), tf.float32) for lo, hi in ((0.01, 1), (1e-3, 0.1)))
    one, batched = KalmanStream(nis=True, nis_threshold=1.0), KalmanStream(nis=True, nis_threshold=1.0)
    for new in ([False, False, True, False, False], [False] * n):  # the first frame starts: no state yet
        shown, p, prior_x, prior_p, nis_map, starts = batched.filter_frames(z, r, flow, q, new)
        assert list(starts) == [i == 0 and one.state is None or new[i] for i in range(n)]
        for i in range(n):
            step = one.filter(z[i:i + 1], r[i:i + 1], flow[i:i + 1], q[i:i + 1], new[i])
            assert np.array_equal(shown[i], step.shown.numpy()[0]) and np.array_equal(p[i], step.p.numpy()[0])
            if starts[i]:
                assert step.prior_x is None and not prior_x[i].any() and not nis_map[i].any()
            else:
                for got, want in ((prior_x, step.prior_x), (prior_p, step.prior_p), (nis_map, step.nis)):
                    assert np.array_equal(got[i], want.numpy()[0])
        assert np.array_equal(batched.state[0].numpy(), one.state[0].numpy())
        assert np.array_equal(batched.state[1].numpy(), one.state[1].numpy())
    reject = nis_map[..., 0] > 1.0
    assert reject.any() and (~reject[1:]).any()  # both kinds of cell
    np.testing.assert_array_equal(shown[reject], z.numpy()[reject])
