"""Faults of long runs: two writers on one folder, a full disk, a file that goes bad, damaged checkpoints."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import common.locks
from common.locks import LOCK_NAME
from common.trainer import Trainer
from pnp import solve as pnp_solve
from scoordnet import test as scoord_test
from scoordnet import train as scoord_train
from tests.test_scoordnet import cli

ROOT = Path(__file__).resolve().parents[1]


def _train_argv(data, model, steps, *extra):
    return ["--input_folder", str(data), "--model_folder", str(model), "--scene", "tiny",
            "--max_steps", str(steps), "--no_progress", *extra]


def _test_argv(data, model, out):
    return ["--input_folder", str(data), "--output_folder", str(out), "--model_folder", str(model),
            "--scene", "tiny", "--quiet", "--no_progress"]


def _one_error_line(capsys):
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _holder(folder):
    """A second real process that locks `folder` and waits."""
    code = ("import sys, time; from common.locks import lock_folder; lock_folder(sys.argv[1], 'x'); "
            "print('locked', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture(scope="module")
def trained(tiny_scene, tmp_path_factory):
    """A SCoordNet model folder trained 10 steps (ckpt-5, ckpt-10) and its test output."""
    root = tmp_path_factory.mktemp("trained")
    assert cli(scoord_train.main, _train_argv(tiny_scene.train, root / "m", 10, "--snapshot", "5")) == 0
    return root / "m"


def test_a_running_training_holds_its_model_folder(tiny_scene, tmp_path, capsys):
    model = tmp_path / "m"
    cmd = [sys.executable, str(ROOT / "scoordnet" / "train.py"),
           *_train_argv(tiny_scene.train, model, 100000, "--snapshot", "5")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while common.locks.holder_pid(model) != proc.pid and time.time() < deadline:
            time.sleep(0.2)
        assert common.locks.holder_pid(model) == proc.pid
        assert cli(scoord_train.main, _train_argv(tiny_scene.train, model, 1)) == 2
        line = _one_error_line(capsys)
        assert f"--model_folder {model.resolve()} is in use by process {proc.pid}" in line, line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Killed: its lock file stays behind, but the OS released the lock.
    assert (model / LOCK_NAME).read_text().strip() == str(proc.pid)
    lock = common.locks.lock_folder(model, "--model_folder")
    assert common.locks.holder_pid(model) == os.getpid()
    lock.release()
    assert not (model / LOCK_NAME).exists()  # a clean end removes it


def test_second_writer_refuses_at_once_and_writes_nothing(tiny_scene, trained, tmp_path, capsys):
    """Training, the test CLI and pnp/solve.py on a folder another process holds: exit 2, one line
    naming the folder and the holder's PID, and the folder holds nothing but the lock."""
    model, out, poses = tmp_path / "model", tmp_path / "out", tmp_path / "poses"
    for folder in (model, out, poses):
        folder.mkdir()
    holders = {folder: _holder(folder) for folder in (model, out, poses)}
    coords = tmp_path / "coords"
    coords.mkdir()
    for k in range(3):
        np.save(coords / f"coord_{k}.npy", np.ones((8, 10, 4), np.float32))
    try:
        runs = [(scoord_train.main, _train_argv(tiny_scene.train, model, 2), "--model_folder", model),
                (scoord_test.main, _test_argv(tiny_scene.test, trained, out), "--output_folder", out),
                (pnp_solve.main, [str(coords), str(poses / "p.txt"), "--scene", "tiny", "--no_progress"],
                 "output folder", poses)]
        for main, argv, flag, folder in runs:
            assert cli(main, argv) == 2
            line = _one_error_line(capsys)
            assert f"{flag} {folder.resolve()} is in use by process {holders[folder].pid}" in line, line
            assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]
    finally:
        for proc in holders.values():
            proc.kill()
            proc.wait()


def test_training_skips_a_damaged_newest_checkpoint(tiny_scene, trained, tmp_path, capsys):
    model = tmp_path / "m"
    shutil.copytree(trained, model)
    data = model / "ckpt-10.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert cli(scoord_train.main, _train_argv(tiny_scene.train, model, 12)) == 0
    captured = capsys.readouterr()
    assert "warning: cannot restore" in captured.err and "ckpt-10" in captured.err
    assert f"resuming from {model / 'ckpt-5'} at step 5" in captured.out
    assert "finished step 12" in captured.out


def test_test_cli_uses_the_newest_whole_checkpoint(tiny_scene, trained, tmp_path, capsys):
    model, out = tmp_path / "m", tmp_path / "out"
    shutil.copytree(trained, model)
    data = model / "ckpt-10.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100])
    assert cli(scoord_test.main, _test_argv(tiny_scene.test, model, out)) == 0
    err = capsys.readouterr().err
    assert f"warning: skipping damaged checkpoint {model / 'ckpt-10'}: its data cannot be read" in err
    assert f"using {model / 'ckpt-5'}" in err
    (model / "ckpt-5.index").rename(model / "saved.index")  # a missing index: skipped too
    assert cli(scoord_test.main, _test_argv(tiny_scene.test, model, tmp_path / "out1")) == 2
    line = _one_error_line(capsys)
    assert line == (f"error: no whole checkpoint in {model} (--model_folder): {model / 'ckpt-10'}: its data "
                    f"cannot be read (Read less bytes than requested); {model / 'ckpt-5'}: its index "
                    "file is missing")
    assert not (tmp_path / "out1").exists()
    (model / "saved.index").rename(model / "ckpt-5.index")
    assert json.loads((out / "run.json").read_text())["signature"]["checkpoint"] == str(
        (model / "ckpt-5").resolve())


def test_full_disk_on_a_checkpoint_keeps_the_previous_one(tiny_scene, tmp_path, capsys, monkeypatch):
    """The checkpoint writer (TensorFlow's SaveV2) fails with ENOSPC at step 4 after writing part
    of a file: one line naming ckpt-4, ckpt-2 still whole, nothing under ckpt-4, then resumes."""
    from tensorflow.python.ops import io_ops

    model = tmp_path / "m"
    real = io_ops.save_v2

    def full_disk(prefix, *args, **kwargs):
        prefix = prefix.numpy().decode() if hasattr(prefix, "numpy") else str(prefix)
        if "ckpt-4_temp" in prefix:
            Path(prefix).parent.mkdir(parents=True, exist_ok=True)  # as SaveV2 does
            Path(prefix + ".data-00000-of-00001").write_bytes(b"\0" * 1000)
            raise tf.errors.ResourceExhaustedError(None, None, f"{prefix}; No space left on device")
        return real(prefix, *args, **kwargs)

    monkeypatch.setattr(io_ops, "save_v2", full_disk)
    argv = _train_argv(tiny_scene.train, model, 4, "--snapshot", "2")
    assert cli(scoord_train.main, argv) == 1
    line = _one_error_line(capsys)
    assert f"cannot write {model / 'ckpt-4'}: " in line and "No space left on device" in line, line
    assert sorted(p.name for p in model.iterdir() if "ckpt-4" in p.name) == []
    reader = tf.train.load_checkpoint(str(model / "ckpt-2"))
    assert all(reader.get_tensor(k) is not None for k in reader.get_variable_to_shape_map())
    assert tf.train.latest_checkpoint(str(model)) == str(model / "ckpt-2")
    monkeypatch.setattr(io_ops, "save_v2", real)  # space is back
    assert cli(scoord_train.main, argv) == 0
    out = capsys.readouterr().out
    assert "at step 2" in out and "finished step 4" in out


def _fail_fsync_of(name, err=errno.ENOSPC):
    """os.fsync that fails (as a full disk does at write-back) for the temporary file of `name`."""
    real = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(f"/{name}.tmp"):
            raise OSError(err, os.strerror(err))
        return real(fd)

    return fsync


def test_full_disk_on_npy_and_pose_files(tiny_scene, trained, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(common.locks.os, "fsync", _fail_fsync_of("coord_5.npy"))
    assert cli(scoord_test.main, _test_argv(tiny_scene.test, trained, out)) == 1
    line = _one_error_line(capsys)
    assert line == f"error: cannot write {out / 'coord_5.npy'}: No space left on device"
    assert sorted(p.name for p in out.glob("coord_*")) == [f"coord_{k}.npy" for k in range(5)]
    assert not list(out.rglob("*.tmp")) and not (out / LOCK_NAME).exists()
    monkeypatch.undo()
    assert cli(scoord_test.main, _test_argv(tiny_scene.test, trained, out)) == 0
    assert "5 of 12 frames already in" in capsys.readouterr().out
    assert len(list(out.glob("coord_*.npy"))) == 12

    poses = tmp_path / "poses" / "p.txt"
    argv = [str(out), str(poses), "--scene", "tiny", "--thread_num", "1", "--no_progress"]
    assert cli(pnp_solve.main, argv) == 0
    before = {p.name: p.read_bytes() for p in poses.parent.iterdir()}
    capsys.readouterr()
    for name, err in (("p.txt", errno.EIO), ("p.tum.txt", errno.ENOSPC)):
        monkeypatch.setattr(common.locks.os, "fsync", _fail_fsync_of(name, err))
        assert cli(pnp_solve.main, argv + ["--seed", "3"]) == 1
        line = _one_error_line(capsys)
        assert line == f"error: cannot write {poses.parent / name}: {os.strerror(err)}"
        assert {p.name: p.read_bytes() for p in poses.parent.iterdir()} == before  # all or nothing
        monkeypatch.undo()


@pytest.mark.parametrize("fault", ["truncated_image", "short_label"])
def test_a_file_that_goes_bad_mid_run(tiny_scene, tmp_path, capsys, monkeypatch, fault):
    """At step 3 a training file breaks: one line naming it and its line in the list, after
    saving a checkpoint of the steps done."""
    data = tmp_path / "data"
    shutil.copytree(tiny_scene.train, data)
    images = (data / "image_list.txt").read_text().split()
    labels = (data / "label_list.txt").read_text().split()
    line_no = 7
    image = tmp_path / "frame.png"
    shutil.copy(images[line_no - 1], image)
    images[line_no - 1] = str(image)
    label = tmp_path / "frame.label.bin"
    shutil.copy(data / labels[line_no - 1], label)
    labels[line_no - 1] = str(label)
    (data / "image_list.txt").write_text("\n".join(images) + "\n")
    (data / "label_list.txt").write_text("\n".join(labels) + "\n")
    bad = {"deleted_image": image, "truncated_image": image, "short_label": label}[fault]

    def break_file():
        if fault == "deleted_image":
            image.unlink()
        elif fault == "truncated_image":
            image.write_bytes(image.read_bytes()[:200])
        else:
            label.write_bytes(label.read_bytes()[:64])

    real_make_step = Trainer.make_step

    def make_step(self):
        step = real_make_step(self)

        def counted(batch):
            metrics = step(batch)
            if self.step == 3:
                break_file()
            return metrics

        return counted

    monkeypatch.setattr(Trainer, "make_step", make_step)
    model = tmp_path / "m"
    assert cli(scoord_train.main, _train_argv(data, model, 40, "--snapshot", "100")) == 2
    line = _one_error_line(capsys)
    listed = "label_list.txt" if fault == "short_label" else "image_list.txt"
    assert line.startswith(f"error: {data / listed} line {line_no}: {bad}"), line
    saved = int(line.split("saved step ")[1].split()[0])
    assert saved >= 3 and (model / f"ckpt-{saved}.index").exists()
