"""Every reader of a user file, fed arbitrary bytes and shapes (hypothesis): it returns a valid
result or raises InputError naming the file; never another exception, never a pickle load."""

import io
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common.checkpoints import read_model_info
from common.config import load_config
from common.data.labels import label_layout, read_label
from common.data.scene import read_transform
from common.errors import InputError
from common.formats import read_list, read_map_file, read_matrix_file, read_pose_file, read_tum
from common.poses import check_rigid
from common.train_cli import stage_settings

EXAMPLES = int(os.environ.get("KFNET_FUZZ_EXAMPLES", 60))  # more for a longer hunt
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

WORDS = ["0", "1", "-1", "0.5", "2", "1e308", "-1e308", "nan", "inf", "x", "#", "FAILED", "a.png",
         "\t", "é", "", "4", "7", "0 0 0 1"]
text_files = st.lists(st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join), max_size=12).map(
    lambda lines: "\n".join(lines).encode())
NUMBERS = ["0", "1", "-1", "0.5", "1e308", "-1e308", "nan", "inf", "1e-300", "x"]
number_rows = st.integers(1, 16).flatmap(lambda n: st.lists(
    st.lists(st.sampled_from(NUMBERS), min_size=n, max_size=n).map(" ".join), min_size=1, max_size=5))
number_files = st.one_of(number_rows, st.integers(0, 3).map(lambda k: ["1 0 0 0"] * k + ["0 0 0 0"] * (4 - k)),
                         st.lists(st.sampled_from(["a.png", "3"]), max_size=2).flatmap(
                             lambda head: number_rows.map(lambda rows: [" ".join(head + [r]) for r in rows]))
                         ).map(lambda lines: "\n".join(lines).encode())
any_bytes = st.one_of(st.binary(max_size=300), text_files, number_files)


@st.composite
def npy_files(draw):
    """.npy bytes of random dtype and shape, sometimes a pickled object array, sometimes cut short
    or with one byte changed."""
    kind = draw(st.sampled_from(["<f4", ">f4", "<f8", "<i4", "|u1", "object"]))
    shape = tuple(draw(st.lists(st.integers(0, 10), min_size=0, max_size=4)))
    buffer = io.BytesIO()
    if kind == "object":
        np.save(buffer, np.array([{"not": "data"}, None], dtype=object), allow_pickle=True)
    else:
        np.save(buffer, np.ones(shape, dtype=kind))
    data = buffer.getvalue()
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    if cut is not None:
        data = data[:cut]
    flip = draw(st.one_of(st.none(), st.integers(0, max(len(data) - 1, 0))))
    if flip is not None and data:
        data = data[:flip] + bytes([draw(st.integers(0, 255))]) + data[flip + 1:]
    return data


def _check(path, call):
    """call() → its result, or None after an InputError that names `path`."""
    try:
        return call()
    except InputError as e:
        assert str(path) in str(e), str(e)
        assert "\n" not in str(e)
        return None


@pytest.fixture
def folder(tmp_path):
    return tmp_path


@FUZZ
@given(data=any_bytes)
@example(data=b"\x80")
def test_list_files(folder, data):
    path = folder / "image_list.txt"
    path.write_bytes(data)
    out = _check(path, lambda: read_list(path))
    if out is not None:
        assert all(isinstance(p, str) and p.strip() for p in out)


def _check_label(path):
    def read():
        return read_label(path, (64, 80), label_layout(path, (64, 80)))

    label = _check(path, read)
    if label is not None:
        assert label.shape == (8, 10, 4) and label.dtype == np.float32


@FUZZ
@given(data=st.one_of(any_bytes, st.integers(0, 2).map(lambda n: bytes(8 * 10 * 16 + n - 1))))
def test_raw_label_files(folder, data):
    path = folder / "frame.label.bin"
    path.write_bytes(data)
    _check_label(path)


@FUZZ
@given(data=st.one_of(npy_files(), any_bytes))
@example(data=b"\x93NUMPY")
@example(data=b"\x93NUMPY\x01\x00\x16\x00{'descr': '<f4', 'shape': (\n\x00\x00\x80?")
def test_npy_label_files(folder, data):
    path = folder / "frame.label.npy"
    path.write_bytes(data)
    _check_label(path)


@FUZZ
@given(data=any_bytes)
def test_transform_files(folder, data):
    path = folder / "transform.txt"
    path.write_bytes(data)
    out = _check(path, lambda: read_transform(folder))
    if out is not None:
        assert out.shape == (4, 4) and check_rigid(out) is None


@FUZZ
@given(data=any_bytes)
def test_pose_matrix_files(folder, data):
    path = folder / "frame.pose.txt"
    path.write_bytes(data)
    out = _check(path, lambda: read_matrix_file(path))
    if out is not None:
        assert out.shape == (4, 4) and np.all(np.isfinite(out))


@FUZZ
@given(data=any_bytes)
@example(data=b"\x00\x1f0\x1f0\x1f0\x1f1\x1f0\x1f0\x1f0\x1f0")
@example(data=b"\x80")
def test_pose_files(folder, data):
    path = folder / "poses.txt"
    path.write_bytes(data)
    out = _check(path, lambda: read_pose_file(path))
    for rec in out or []:
        assert (rec.pose_cw is None) != (rec.failure is None)
        if rec.pose_cw is not None:
            assert np.all(np.isfinite(rec.pose_cw)) and check_rigid(rec.pose_cw) is None


@FUZZ
@given(data=any_bytes)
@example(data=b"0\t0\t0\t0\t0\t0\t0\t0")
def test_tum_files(folder, data):
    path = folder / "poses.tum.txt"
    path.write_bytes(data)
    out = _check(path, lambda: read_tum(path))
    if out is not None:
        stamps, poses = out
        assert len(stamps) == len(poses) and np.all(np.isfinite(poses))
        assert all(check_rigid(p) is None for p in poses)


YAML_WORDS = ["stepvalue:", "batch_size:", "max_steps:", "width:", "scoordnet:", "inherit:", "- ", "  ",
              "1", "-3", "0", "abc", "[1, 2]", "{a: 1}", "null", "'", ":", "tiny", "synthetic", "1e9"]
yaml_files = st.lists(st.lists(st.sampled_from(YAML_WORDS), max_size=6).map(" ".join), max_size=8).map(
    lambda lines: "\n".join(lines).encode())


@FUZZ
@given(data=st.one_of(yaml_files, any_bytes))
@example(data=b"stepvalue:")
@example(data=b"scoordnet: 1")
@example(data=b"inherit: [1]")
@example(data=b"\x80")
def test_config_files(folder, data):
    path = folder / "scene.yaml"
    path.write_bytes(data)
    args = SimpleNamespace(scene=None, config=str(path), max_steps=None, stepvalue=None, base_lr=None,
                           batch_size=None, weight_decay=None, snapshot=None, keep=None,
                           summary_every=None, width=None, seed=None, augment=None, sequence_length=None)

    def read():
        load_config(config=str(path))
        return stage_settings(args, "scoordnet")

    cfg = _check(path, read)
    if cfg is not None:
        assert int(cfg["stepvalue"]) > 0 and int(cfg["batch_size"]) > 0 and cfg["max_steps"] > 0


@FUZZ
@given(data=st.one_of(npy_files(), any_bytes), channels=st.sampled_from([3, 4]))
def test_coord_and_flow_files(folder, data, channels):
    path = folder / ("coord_3.npy" if channels == 4 else "2_3_flow.npy")
    path.write_bytes(data)
    out = _check(path, lambda: read_map_file(path, channels, None if channels == 4 else (10, 10)))
    if out is not None:
        assert out.ndim == 3 and out.shape[2] == channels and out.dtype == np.float32


model_infos = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["stage", "widths", "scoordnet", "oflownet", "x"]),
                                            inner, max_size=3)),
    max_leaves=8)


@FUZZ
@given(data=st.one_of(model_infos.map(lambda v: json.dumps(v).encode()), any_bytes))
@example(data=b'{"widths": [], "stage": null}')
def test_model_json(folder, data):
    path = folder / "model.json"
    path.write_bytes(data)
    info = _check(path, lambda: read_model_info(folder))
    if info is not None:
        assert info["stage"] in ("scoordnet", "oflownet", "kfnet")
        assert set(info["widths"]) <= {"scoordnet", "oflownet"}
        assert all(isinstance(w, float) and 0 < w < 100 for w in info["widths"].values())
