"""--val_folder: a validation pass every K steps, its medians in the event file and on the console;
a bad folder stops at the start."""

import json

import numpy as np
import pytest

from kfnet import train as kfnet_train
from oflownet import train as oflow_train
from scoordnet import test as scoord_test
from scoordnet import train as scoord_train
from tests.test_summaries import read_events, run_cli


def _train(main, scene, folder, *extra):
    return run_cli(main, ["--input_folder", str(scene.train), "--model_folder", str(folder),
                          "--scene", "tiny", "--no_progress", "--seed", "1", *extra])


def test_scoordnet_validation_scalar_is_the_test_scripts_median(tiny_scene, tmp_path, capsys):
    model = tmp_path / "m"
    assert _train(scoord_train.main, tiny_scene, model, "--max_steps", "3", "--snapshot", "3",
                  "--val_folder", str(tiny_scene.test), "--val_every", "2") == 0
    out = capsys.readouterr().out
    scalars, _, _ = read_events(model / "log")
    val = scalars["val/coord_error_median_cm"]
    assert sorted(val) == [2, 3]  # every 2 steps and at the last
    assert val[2] != pytest.approx(val[3], rel=1e-4)  # the weights changed in between
    assert f"step 3 validation: coord_error_median_cm {val[3]:.2f}" in out

    # The same number as scoordnet/test.py on the last checkpoint (world frame, all test frames).
    assert run_cli(scoord_test.main, ["--input_folder", str(tiny_scene.test), "--output_folder",
                                      str(tmp_path / "out"), "--model_folder", str(model), "--quiet",
                                      "--no_progress"]) == 0
    summary = json.loads((tmp_path / "out" / "run.json").read_text())["summary"]["scoordnet"]
    assert val[3] == pytest.approx(summary["median_cm"], rel=1e-4)

    # --image_list: two of the test frames, in another order; labels follow, outputs are numbered
    # by the given list's lines.
    images = (tiny_scene.test / "image_list.txt").read_text().split()
    chosen = tmp_path / "chosen.txt"
    chosen.write_text(f"{images[5]}\n{images[2]}\n")
    assert run_cli(scoord_test.main, ["--input_folder", str(tiny_scene.test), "--output_folder",
                                      str(tmp_path / "two"), "--model_folder", str(model), "--quiet",
                                      "--no_progress", "--image_list", str(chosen)]) == 0
    assert sorted(p.name for p in (tmp_path / "two").glob("coord_*.npy")) == ["coord_0.npy", "coord_1.npy"]
    for k, full in ((0, 5), (1, 2)):
        np.testing.assert_allclose(np.load(tmp_path / "two" / f"coord_{k}.npy"),
                                   np.load(tmp_path / "out" / f"coord_{full}.npy"), rtol=1e-5, atol=1e-5)
    two = json.loads((tmp_path / "two" / "run.json").read_text())
    assert two["summary"]["scoordnet"]["frames"] == 2
    assert two["signature"]["image_list"] == str(chosen)


def test_flow_stage_validates(tiny_scene, tmp_path, capsys):
    from common.data.scene import load_input_folder

    assert _train(oflow_train.main, tiny_scene, tmp_path / "o", "--max_steps", "1",
                  "--val_folder", str(tiny_scene.test), "--val_frames", "5") == 0
    scalars, _, _ = read_events(tmp_path / "o" / "log")
    assert sorted(scalars["val/warped_label_error_median_cm"]) == [1]
    # Zero flow: frame k-1's labels against frame k's at the same cell, over the first 5 frames.
    test = load_input_folder(tiny_scene.test)
    from common.data.labels import read_label

    labels = [read_label(p, test.image_hw, layout)
              for p, layout in zip(test.label_paths[:5], test.label_layouts[:5])]
    errors = []
    for (prev, cur) in zip(labels[:-1], labels[1:]):
        both = (prev[..., 3] > 0.5) & (cur[..., 3] > 0.5)
        errors.append(100 * np.linalg.norm(prev[..., :3] - cur[..., :3], axis=-1)[both])
    assert scalars["val/zero_flow_error_median_cm"][1] == pytest.approx(
        np.median(np.concatenate(errors)), rel=1e-5)


def test_filter_stage_validates(tiny_scene, tmp_path, capsys):
    assert _train(kfnet_train.main, tiny_scene, tmp_path / "k", "--max_steps", "1",
                  "--val_folder", str(tiny_scene.test), "--val_frames", "5") == 0
    scalars, _, _ = read_events(tmp_path / "k" / "log")
    medians = {k: scalars[f"val/{k}_coord_error_median_cm"][1]
               for k in ("measurement", "prior", "posterior")}
    assert all(np.isfinite(v) and v > 0 for v in medians.values())
    assert "step 1 validation: measurement_coord_error_median_cm" in capsys.readouterr().out


def test_bad_validation_folder_stops_at_the_start(tiny_scene, tmp_path, capsys):
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for name in ("image_list.txt", "transform.txt"):
        (unlabelled / name).write_text((tiny_scene.test / name).read_text())
    cases = [
        (["--val_folder", str(tmp_path / "missing")], f"error: --val_folder: input folder not found: "
                                                      f"{tmp_path / 'missing'}"),
        (["--val_folder", str(unlabelled)], f"error: --val_folder {unlabelled} has no label_list.txt: "
                                            "validation measures errors against labels"),
        (["--val_every", "5"], "error: --val_every needs --val_folder"),
        (["--val_folder", str(tiny_scene.test), "--val_every", "0"],
         "error: --val_every must be positive, got 0"),
    ]
    for extra, message in cases:
        model = tmp_path / "m"
        assert _train(scoord_train.main, tiny_scene, model, "--max_steps", "1", *extra) == 2
        assert capsys.readouterr().err.strip().splitlines() == [message]
        assert not model.exists()
