"""The whole pipeline on a small synthetic scene, killed with SIGKILL mid-run and run again."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open3d", reason="Open3D (pip install -e .[vis]) renders the synthetic scene")

from common.config import load_config
from common.data.prepare import Camera, prepare_scene
from common.data.synthetic import SceneSettings, write_scene

ROOT = Path(__file__).resolve().parents[1]
SCENE = SceneSettings(width=160, height=120, frames=100, sequences=3, test_sequences=1, seed=0,
                      loop_frames=100)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """Runs scripts/run_pipeline.py, kills it (SIGKILL) during stage 1, runs it again to the end."""
    root = tmp_path_factory.mktemp("pipeline")
    write_scene(root / "scene", SCENE, progress=False)
    cfg = load_config("pipeline_test")
    f = float(cfg["focal"])
    prepare_scene(root / "scene", root / "data",
                  Camera(focal=f, focal_y=f, cx=float(cfg["cx"]), cy=float(cfg["cy"]), depth_focal=f),
                  progress=False)
    work = root / "work"
    cmd = [sys.executable, str(ROOT / "scripts" / "run_pipeline.py"), "--data_folder", str(root / "data"),
           "--work_folder", str(work), "--scene", "pipeline_test", "--thread_num", "2", "--no_progress"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (work / "models" / "scoordnet" / "ckpt-200.index").exists() and time.time() < deadline:
        assert first.poll() is None, "the pipeline ended before it could be killed"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the pipeline and the stage it is running
    first.wait()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return work, second.stdout


def test_resumed_run_continues_from_the_last_checkpoint(pipeline_run):
    work, printed = pipeline_run
    assert "resuming from" in printed and "at step 200" in printed
    assert not list(work.rglob("*.tmp")), "a torn temporary file survived"


def test_every_stage_leaves_its_outputs(pipeline_run):
    work, printed = pipeline_run
    # KFNet starts at 4 × its stepvalue (75) and runs 75 steps of 16-frame windows.
    for stage, last in (("scoordnet", 1000), ("oflownet", 3000), ("kfnet", 375)):
        assert (work / "models" / stage / f"ckpt-{last}.index").exists(), stage
        assert (work / "models" / stage / "model.json").exists()
    results = work / "results"
    for name in ("kfnet", "scoordnet"):
        maps = sorted(results.joinpath(name).glob("coord_*.npy"))
        assert len(maps) == SCENE.frames
        assert all(np.load(m).shape == (15, 20, 4) for m in maps)
        assert json.loads((results / name / "run.json").read_text())["complete"]
        for suffix in (".txt", ".tum.txt", ".summary.json"):
            assert (results / f"{name}_poses{suffix}").exists()
    assert len(list((results / "kfnet" / "measurement").glob("coord_*.npy"))) == SCENE.frames
    assert len(list((results / "kfnet" / "prior").glob("coord_*.npy"))) == SCENE.frames - 1
    for plot in ("trajectory_kfnet.png", "pointcloud_kfnet.png"):
        assert (work / "plots" / plot).stat().st_size > 1000
    for suffix in (".txt", ".tum.txt", ".summary.json"):
        assert (results / f"kfnet_measurement_poses{suffix}").exists()  # PnP on KFNet's own measurement
    table = (work / "results.md").read_text()
    for row in ("| SCoordNet alone |", "| KFNet's measurement (its SCoordNet after stage 3) |",
                "| KFNet (posterior) |"):
        assert row in printed and row in table, row
    assert "KFNet against its own measurement: translation" in table
    # 100 test frames: the pose differences come with their block-bootstrap intervals.
    line = next(x for x in table.splitlines() if x.startswith("KFNet against SCoordNet alone"))
    assert re.search(r"translation [+−][0-9.]+ % \[[+−][0-9.]+ … [+−][0-9.]+ cm\]", line), line
    assert "95 % interval of the difference of the median pose errors" in table
    # The lag of each method's poses, from the pose summaries it read.
    lag = next(x for x in table.splitlines() if x.startswith("Lag along the motion"))
    values = [float(v.replace("−", "-")) for v in re.findall(r"([+−-][0-9.]+) cm", lag)]
    expected = [json.loads((results / f"{name}_poses.summary.json").read_text())["overall"]["lag_cm"]
                for name in ("scoordnet", "kfnet_measurement", "kfnet")]
    assert values == pytest.approx(expected, abs=0.006), lag


def test_kfnet_posterior_beats_scoordnet_alone_and_its_prior(pipeline_run):
    """KFNet's posterior coordinates beat SCoordNet alone's (the paper's comparison), and the
    Kalman update improves on its own prediction.

    Scene and config seed 0, the demo's settings with 1000 SCoordNet steps and 75 stage-3 steps of
    16-frame windows, 100 frames per sequence: posterior 28.11 cm, SCoordNet alone 30.60, prior
    30.38. Its own measurement (25.38) is not beaten at this budget (the demo's is, by 5.6 %):
    docs/results.md has the tables."""
    work, _ = pipeline_run
    kf = json.loads((work / "results" / "kfnet" / "run.json").read_text())["summary"]
    alone = json.loads((work / "results" / "scoordnet" / "run.json").read_text())["summary"]["scoordnet"]
    assert kf["posterior"]["median_cm"] < alone["median_cm"], (kf, alone)
    assert kf["posterior"]["median_cm"] < kf["prior"]["median_cm"], kf


def test_rerun_skips_every_finished_step(pipeline_run):
    work, _ = pipeline_run
    cmd = [sys.executable, str(ROOT / "scripts" / "run_pipeline.py"), "--data_folder",
           str(work.parent / "data"), "--work_folder", str(work), "--scene", "pipeline_test", "--no_progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0
    # three trainings, two tests, three PnP runs (SCoordNet alone, KFNet's measurement, KFNet),
    # the trajectory plot and the point cloud
    assert out.stdout.count("already complete, skipped") == 10, out.stdout
    assert "== 1/7 train SCoordNet\n" not in out.stdout


def test_true_flow_bound_reads_the_pipeline_outputs(pipeline_run, tmp_path):
    """scripts/filter_oracle.py on the KFNet test's maps: its measurement error is the test's own."""
    work, _ = pipeline_run
    out = tmp_path / "oracle.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "filter_oracle.py"), "--input_folder",
           str(work.parent / "data" / "test"), "--results_folder", str(work / "results" / "kfnet"),
           "--scene", "pipeline_test", "--process_sigma_cm", "1", "5", "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    bound = json.loads(out.read_text())
    kf = json.loads((work / "results" / "kfnet" / "run.json").read_text())["summary"]
    assert bound["measurement_median_cm"] == pytest.approx(kf["measurement"]["median_cm"], abs=1e-3)
    assert bound["kfnet_posterior_median_cm"] == pytest.approx(kf["posterior"]["median_cm"], abs=1e-3)
    assert 0.0 < bound["true_flow_median_cells"] < 1.0  # the synthetic camera moves slowly
    assert set(bound["true_flow_posterior_median_cm"]) == {"1", "5"}
    assert "| posterior with the true flow, σ_q = 5 cm |" in done.stdout

    missing = subprocess.run(cmd[:-2] + ["--results_folder", str(work / "results" / "scoordnet")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "--save_measurement" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1

    # Measurement maps without the posterior's beside them: one line naming the missing map.
    only = tmp_path / "only_measurement"
    only.mkdir()
    (only / "measurement").symlink_to(work / "results" / "kfnet" / "measurement")
    no_posterior = subprocess.run(cmd[:-2] + ["--results_folder", str(only)],
                                  capture_output=True, text=True, timeout=300)
    assert no_posterior.returncode == 2, no_posterior.stderr[-2000:]
    assert no_posterior.stderr.strip().splitlines() == [
        f"error: missing {only / 'coord_0.npy'}: --results_folder must be a kfnet/test.py output folder "
        "(its posterior maps beside measurement/)"]
