"""Every stage CLI on bad input: one line `error: …` naming the problem, exit code 2, nothing written."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from common.checkpoints import write_model_info
from kfnet import test as kfnet_test
from kfnet import train as kfnet_train
from oflownet import test as oflownet_test
from oflownet import train as oflownet_train
from oflownet.model import OFlowNet
from scoordnet import test as scoord_test
from scoordnet import train as scoord_train
from scoordnet.model import SCoordNet
from tests.test_scoordnet import cli

TRAINERS = {"scoordnet": scoord_train.main, "oflownet": oflownet_train.main, "kfnet": kfnet_train.main}
TESTERS = {"scoordnet": scoord_test.main, "oflownet": oflownet_test.main, "kfnet": kfnet_test.main}
CASES = {
    "missing_folder": "input folder not found",
    "empty_list": "image_list.txt is empty",
    "wrong_scene": "unknown scene 'atlantis'",
    "unreadable_image": "cannot read image",
    "wrong_label_size": "has 40 bytes",
    "output_is_file": "is a file, not a folder",
}


@pytest.fixture(scope="module")
def model(tiny_scene, tmp_path_factory):
    """A KFNet-style model folder (both networks, tiny widths, random weights)."""
    folder = tmp_path_factory.mktemp("model")
    nets = {"scoordnet": SCoordNet(0.125).build_for((64, 80)), "oflownet": OFlowNet(0.25)}
    tf.train.Checkpoint(**nets).write(str(folder / "ckpt-1"))
    (folder / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    write_model_info(folder, "kfnet", {"scoordnet": 0.125, "oflownet": 0.25})
    return folder


def _broken_copy(tiny_scene, tmp_path, case):
    """A copy of the tiny training folder with one problem."""
    folder = tmp_path / "input"
    shutil.copytree(tiny_scene.train, folder)
    images = (folder / "image_list.txt").read_text().split()
    labels = (folder / "label_list.txt").read_text().split()
    if case == "missing_folder":
        shutil.rmtree(folder)
    elif case == "empty_list":
        (folder / "image_list.txt").write_text("")
    elif case == "unreadable_image":
        broken = tmp_path / "broken.png"
        broken.write_bytes(b"\x89PNG not really")
        images[5] = str(broken)
        (folder / "image_list.txt").write_text("\n".join(images) + "\n")
    elif case == "wrong_label_size":
        np.zeros(10, np.float32).tofile(folder / labels[3])
    return folder


def _expect_one_line_error(capsys, code, message):
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


@pytest.mark.parametrize("stage", sorted(TRAINERS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_train_clis_reject_bad_input(tiny_scene, tmp_path, capsys, stage, case):
    folder = _broken_copy(tiny_scene, tmp_path, case)
    out = tmp_path / "model_out"
    if case == "output_is_file":
        out.write_text("not a folder")
    argv = ["--input_folder", str(folder), "--model_folder", str(out), "--scene",
            "atlantis" if case == "wrong_scene" else "tiny", "--max_steps", "1", "--no_progress"]
    _expect_one_line_error(capsys, cli(TRAINERS[stage], argv), CASES[case])
    if case != "output_is_file":
        assert not out.exists()


@pytest.mark.parametrize("stage", sorted(TESTERS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_test_clis_reject_bad_input(tiny_scene, model, tmp_path, capsys, stage, case):
    folder = _broken_copy(tiny_scene, tmp_path, case)
    out = tmp_path / "results"
    if case == "output_is_file":
        out.write_text("not a folder")
    argv = ["--input_folder", str(folder), "--output_folder", str(out), "--model_folder", str(model),
            "--scene", "atlantis" if case == "wrong_scene" else "tiny", "--no_progress"]
    _expect_one_line_error(capsys, cli(TESTERS[stage], argv), CASES[case])
    if case == "output_is_file":
        assert out.read_text() == "not a folder"
    else:
        assert not out.exists()
