"""tf.distribute: 2 mirrored CPU replicas equal one device; 2 local workers; XLA; mixed precision.

Logical CPU devices can only be set up before TensorFlow starts its runtime, so the runs that
need two of them are subprocesses: `python tests/test_distribute.py SCENE_FOLDER OUT.npz RUN…`
trains one step of SCoordNet and KFNet per run from the same weights and global batch and
saves losses, summed gradients and weights for the tests below to compare.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# name → (strategy, xla, mixed precision)
RUNS = {"single": ("default", False, False), "mirrored": ("mirrored", False, False),
        "xla": ("default", True, False), "mixed": ("default", False, True)}
LR = 1e-3  # large enough that one Adam step moves every weight visibly (≈ LR)
WINDOW = 2  # frames per KFNet window: the filter runs once; keeps tracing (and XLA compiling) short


def _stage_setup(name, data):
    """(settings, build_stage(), make_dataset(start_step)) of one stage on the tiny config."""
    from common.config import load_config, override, stage_config
    from common.data.pipelines import frame_dataset, window_dataset

    cfg = stage_config(load_config("tiny"), name)
    if name == "scoordnet":
        from scoordnet.stage import SCoordNetStage

        cfg = override(cfg, base_lr=LR, batch_size=4)
        return (cfg, lambda: SCoordNetStage(cfg["width"], data.image_hw),
                lambda start: frame_dataset(data, 4, augment=True, seed=1, start_step=start))
    from kfnet.stage import KFNetStage
    from oflownet.model import OFlowNet
    from scoordnet.model import SCoordNet

    widths = {n: stage_config(load_config("tiny"), n)["width"] for n in ("scoordnet", "oflownet")}
    cfg = override(cfg, base_lr=LR, batch_size=2)  # two windows: one per replica
    return (cfg, lambda: KFNetStage(SCoordNet(widths["scoordnet"]).build_for(data.image_hw),
                                    OFlowNet(widths["oflownet"])),
            lambda start: window_dataset(data, WINDOW, 2, augment=False, seed=1, start_step=start))


def _output_dtypes(stage, batch):
    """Names → dtype of what the networks hand to the losses and the filter."""
    if "image" in batch:
        coords, sigma = stage.net(batch["image"])
        return {"coords": coords.dtype.name, "sigma": sigma.dtype.name}
    model = stage.model
    window = model.window(batch["images"])
    out = {f"{k}_{v}": t.dtype.name for k, d in window.items() for v, t in d.items()}
    feats = model.oflownet.features(batch["images"][:, 0])
    flow, sigma_q = model.oflownet.flow_from_features(feats, feats)
    return {**out, "features": feats.dtype.name, "flow": flow.dtype.name, "sigma_q": sigma_q.dtype.name}


def _one_run(name, kind, data, folder, init):
    """Metrics, summed gradients and weights before/after one Trainer step of run `kind`."""
    import keras

    from common.distribute import make_strategy, set_mixed_precision
    from common.trainer import Trainer

    class Probe(Trainer):
        """Trainer._replica_step that also returns the gradients it applies (summed like metrics)."""

        def _replica_step(self, batch):
            grads, metrics = self._gradients(batch)
            self.optimizer.apply_gradients(zip(grads, self.variables))
            return {**metrics, **{f"grad/{i}": g for i, g in enumerate(grads)}}

    strategy_name, xla, mixed = RUNS[kind]
    policy = set_mixed_precision(mixed)
    strategy = make_strategy(strategy_name)
    cfg, build_stage, make_dataset = _stage_setup(name, data)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        stage = build_stage()
    trainer = Probe(stage, folder, cfg, strategy, name, widths={}, mixed_precision=mixed, xla=xla)
    if init is not None:
        for v, value in zip(trainer.variables, init):
            v.assign(value)
    out = {"replicas": strategy.num_replicas_in_sync, "policy": policy}
    out["before"] = [v.numpy() for v in trainer.variables]
    if mixed:
        out["dtypes"] = _output_dtypes(stage, next(iter(make_dataset(0))))
        out["variable_dtypes"] = sorted({keras.backend.standardize_dtype(v.dtype)
                                         for v in trainer.variables})
    results = trainer.make_step()(next(iter(trainer.distribute(make_dataset(0)))))
    trainer.save()
    out["grads"] = [results[f"grad/{i}"].numpy() for i in range(len(trainer.variables))]
    out["metrics"] = {k: float(v) for k, v in results.items() if not k.startswith("grad/")}
    out["after"] = [v.numpy() for v in trainer.variables]
    # Every replica must hold the same weights after the update.
    out["copies_differ"] = max(float(np.max(np.abs(c.numpy() - v.numpy()))) for v in trainer.variables
                               for c in strategy.experimental_local_results(v))
    out["saved"] = sorted(p.name for p in Path(folder).glob("ckpt-*.index"))
    set_mixed_precision(False)
    return out


def worker(scene_folder, out_path, kinds):
    """Runs `kinds` for both stages in this process (2 logical CPUs) and saves the results."""
    from common.data.scene import load_input_folder
    from common.distribute import set_mixed_precision, split_cpu

    split_cpu(2)
    data = load_input_folder(scene_folder)
    results = {}
    for name in ("scoordnet", "kfnet"):
        init = None
        for kind in kinds:
            t0 = time.time()
            try:
                run = _one_run(name, kind, data, Path(out_path).parent / f"{name}-{kind}", init)
            except Exception as e:  # reported by the tests of this run; the other runs go on
                set_mixed_precision(False)
                results[f"{name}/{kind}"] = {"error": f"{type(e).__name__}: {str(e).strip()[-500:]}"}
                continue
            print(f"{name} {kind}: {time.time() - t0:.1f} s", file=sys.stderr)
            init = run["before"] if init is None else init
            results[f"{name}/{kind}"] = run
    arrays = {}
    for key, run in results.items():
        for part in ("before", "after", "grads"):
            for i, a in enumerate(run.get(part, [])):
                arrays[f"{key}/{part}/{i}"] = a
    meta = {key: {k: v for k, v in run.items() if k not in ("before", "after", "grads")}
            for key, run in results.items()}
    np.savez(out_path, meta=json.dumps(meta), **arrays)


def _run_worker(scene_folder, tmp_path, kinds, timeout=300):
    out = tmp_path / "runs.npz"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(Path(__file__)), str(scene_folder), str(out), *kinds],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with np.load(out) as f:
        meta = json.loads(str(f["meta"]))
        arrays = {k: f[k] for k in f.files if k != "meta"}

    def get(key, part):
        n = sum(1 for k in arrays if k.startswith(f"{key}/{part}/"))
        return [arrays[f"{key}/{part}/{i}"] for i in range(n)]

    return meta, get


def _ok(meta, key):
    """The results of one run, which must have completed."""
    assert "error" not in meta[key], f"{key} failed: {meta[key]['error']}"
    return meta[key]


def _assert_gradients_close(expected, actual):
    """Element-wise within 1e-4 relative; entries below 1e-5 of the largest gradient are rounding noise
    (e.g. the flow logits' bias, whose true gradient is 0: softmax ignores a shift)."""
    scale = max(float(np.max(np.abs(g))) for g in expected)
    for i, (a, b) in enumerate(zip(expected, actual)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * scale, err_msg=f"variable {i}")


@pytest.fixture(scope="module")
def runs(tiny_scene, tmp_path_factory):
    """One step of each stage: one device, 2 mirrored CPU replicas, XLA, mixed precision."""
    return _run_worker(tiny_scene.train, tmp_path_factory.mktemp("runs"), list(RUNS))


@pytest.mark.parametrize("stage", ["scoordnet", "kfnet"])
def test_mirrored_two_replicas_equal_one_device(runs, stage):
    meta, get = runs
    one, two = _ok(meta, f"{stage}/single"), _ok(meta, f"{stage}/mirrored")
    assert one["replicas"] == 1 and two["replicas"] == 2
    # Same starting point and same global batch (one half per replica).
    for a, b in zip(get(f"{stage}/single", "before"), get(f"{stage}/mirrored", "before")):
        np.testing.assert_array_equal(a, b)
    assert set(one["metrics"]) == set(two["metrics"]) and len(one["metrics"]) >= 4
    for k in one["metrics"]:
        np.testing.assert_allclose(two["metrics"][k], one["metrics"][k], rtol=1e-5, atol=1e-7,
                                   err_msg=k)
    assert one["metrics"]["weight_decay"] > 1e-3 * abs(one["metrics"]["loss"])  # a doubled term shows
    # Gradients summed over replicas are the one-device gradients: a factor 2 anywhere fails.
    g1, g2 = get(f"{stage}/single", "grads"), get(f"{stage}/mirrored", "grads")
    assert len(g1) == len(g2) > 10
    _assert_gradients_close(g1, g2)
    # One Adam step at lr 1e-3 moves weights by ≈ 1e-3; both runs move them alike.
    before, after1, after2 = (get(f"{stage}/single", "before"), get(f"{stage}/single", "after"),
                              get(f"{stage}/mirrored", "after"))
    assert max(np.max(np.abs(a - b)) for a, b in zip(after1, before)) > 0.5 * LR
    for i, (a, b) in enumerate(zip(after1, after2)):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5, err_msg=str(i))
    assert two["copies_differ"] == 0.0
    assert one["saved"] == two["saved"] == ["ckpt-1.index"]


@pytest.mark.parametrize("stage", ["scoordnet", "kfnet"])
def test_xla_step_equals_the_plain_step(runs, stage):
    meta, get = runs
    plain, xla = _ok(meta, f"{stage}/single"), _ok(meta, f"{stage}/xla")
    for k in plain["metrics"]:
        np.testing.assert_allclose(xla["metrics"][k], plain["metrics"][k], rtol=1e-5, atol=1e-6,
                                   err_msg=k)
    _assert_gradients_close(get(f"{stage}/single", "grads"), get(f"{stage}/xla", "grads"))
    for i, (a, b) in enumerate(zip(get(f"{stage}/single", "after"), get(f"{stage}/xla", "after"))):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5, err_msg=str(i))


@pytest.mark.parametrize("stage", ["scoordnet", "kfnet"])
def test_mixed_precision_keeps_outputs_and_weights_float32(runs, stage):
    meta, get = runs
    plain, mixed = _ok(meta, f"{stage}/single"), _ok(meta, f"{stage}/mixed")
    assert mixed["policy"] == "mixed_bfloat16" and plain["policy"] == "float32"
    assert set(mixed["dtypes"].values()) == {"float32"}, mixed["dtypes"]
    assert mixed["variable_dtypes"] == ["float32"]
    # bfloat16 keeps 8 mantissa bits: the step agrees to about a percent, not to float32 precision.
    loss, loss16 = plain["metrics"]["loss"], mixed["metrics"]["loss"]
    assert abs(loss16 - loss) <= 0.01 * abs(loss)
    grads, grads16 = get(f"{stage}/single", "grads"), get(f"{stage}/mixed", "grads")
    assert any(not np.array_equal(a, b) for a, b in zip(grads, grads16))  # bfloat16 did compute
    cosine = sum(float(np.sum(a * b)) for a, b in zip(grads, grads16)) / np.sqrt(
        sum(float(np.sum(a * a)) for a in grads) * sum(float(np.sum(b * b)) for b in grads16))
    assert cosine > 0.99


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_on_localhost_equal_one_process_and_write_one_checkpoint(tiny_scene, tmp_path):
    """MultiWorkerMirroredStrategy with two processes (TF_CONFIG on 127.0.0.1): 3 steps of SCoordNet
    on a global batch of 2 end with the weights of a one-process run, saved once by the chief."""
    hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", TMPDIR=str(scratch))
    procs = []
    for index in (0, 1, None):
        cluster = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        extra = ["--strategy", "multiworker"] if index is not None else []
        procs.append(subprocess.Popen(
            [sys.executable, str(ROOT / "scoordnet" / "train.py"),
             "--input_folder", str(tiny_scene.train),
             "--model_folder", str(tmp_path / ("one" if index is None else "model")), "--scene", "tiny",
             "--max_steps", "3", "--snapshot", "100", "--batch_size", "2", "--no_progress", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env if index is None else dict(env, TF_CONFIG=json.dumps(cluster))))
    try:
        outputs = [proc.communicate(timeout=240)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
        assert "finished step 3" in out
    # The chief (worker 0) wrote the model folder once; worker 1's scratch checkpoint is gone.
    model = tmp_path / "model"
    assert sorted(p.name for p in model.iterdir()) == [
        "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index", "log", "model.json"]
    assert len(list((model / "log").iterdir())) == 1
    assert list(scratch.iterdir()) == []
    import tensorflow as tf

    two = tf.train.load_checkpoint(str(model / "ckpt-3"))
    one = tf.train.load_checkpoint(str(tmp_path / "one" / "ckpt-3"))

    def values(reader):
        return sorted(k for k in reader.get_variable_to_shape_map()
                      if k.endswith("VARIABLE_VALUE") and "save_counter" not in k)

    keys = values(one)
    assert len(keys) > 40 and keys == values(two)
    for k in keys:  # weights and Adam moments
        np.testing.assert_allclose(two.get_tensor(k), one.get_tensor(k), rtol=1e-5, atol=1e-7,
                                   err_msg=k)
    assert two.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 3


def test_xla_on_several_cpu_replicas_is_refused(tiny_scene, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scoordnet" / "train.py"), "--input_folder",
                          str(tiny_scene.train), "--model_folder", str(tmp_path / "m"),
                          "--scene", "tiny",
                          "--strategy", "mirrored", "--cpu_replicas", "2", "--xla"],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""))
    assert out.returncode == 2
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --xla with MirroredStrategy needs GPUs"), last
    assert not (tmp_path / "m").exists()


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], sys.argv[3:])
