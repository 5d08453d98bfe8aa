"""Results other tools read: ACE / DSAC* pose files, TUM ground truth + estimate, thresholds."""

import json
import math

import numpy as np
import pytest

from common.formats import foreign_name, read_pose_file, read_tum
from common.poses import quaternion_to_rotation
from pnp.solve import main
from tests.test_pnp import CAMERA_FLAGS, write_scene


def parse_ace(path):
    """{name: (camera-to-world pose, r_err, t_err, inliers)} by ACE's eval_poses.py rules: 11
    whitespace fields, quaternion w x y z then translation of the world-to-camera pose."""
    out = {}
    for line in path.read_text().splitlines():
        name, qw, qx, qy, qz, tx, ty, tz, r_err, t_err, inliers = line.split()
        pose_wc = np.eye(4)
        pose_wc[:3, :3] = quaternion_to_rotation([float(v) for v in (qw, qx, qy, qz)])
        pose_wc[:3, 3] = [float(tx), float(ty), float(tz)]
        out[name] = (np.linalg.inv(pose_wc), float(r_err), float(t_err), int(inliers))
    return out


def parse_dsacstar(path):
    """{name: (camera-to-world pose, r_err, t_err)}: DSAC*'s test.py lines, 10 fields."""
    out = {}
    for line in path.read_text().splitlines():
        name, *vals = line.split()
        assert len(vals) == 9
        pose_wc = np.eye(4)
        pose_wc[:3, :3] = quaternion_to_rotation([float(v) for v in vals[:4]])
        pose_wc[:3, 3] = [float(v) for v in vals[4:7]]
        out[name] = (np.linalg.inv(pose_wc), float(vals[7]), float(vals[8]))
    return out


def test_foreign_names_follow_the_setup_scripts():
    assert foreign_name("/d/chess/seq-03/frame-000012.color.png") == "seq-03-frame-000012.color.png"
    assert foreign_name("data/frame-000004.color.jpg") == "frame-000004.color.jpg"
    assert foreign_name("rgb/1305031102.175304.png") == "1305031102.175304.png"


def test_ace_and_dsacstar_files_agree_with_the_kfnet_pose_file(tmp_path):
    coords_dir, data, truth = write_scene(tmp_path, n_per_seq=(3, 2))
    gt = ["--gt", str(data / "pose_list.txt"), "--thread_num", "1", *CAMERA_FLAGS]
    # Frame 4 fails: the formats still carry a line for it.
    dead = np.load(coords_dir / "coord_4.npy")
    dead[..., 3] = 0
    np.save(coords_dir / "coord_4.npy", dead)
    assert main([str(coords_dir), str(tmp_path / "poses.txt"), *gt]) == 0
    assert main([str(coords_dir), str(tmp_path / "poses_ace.txt"), "--format", "ace", *gt]) == 0
    assert main([str(coords_dir), str(tmp_path / "poses_dsac.txt"), "--format", "dsacstar",
                 *gt]) == 0
    ours = {foreign_name(r.image): r for r in read_pose_file(tmp_path / "poses.txt")}
    ace, dsac = parse_ace(tmp_path / "poses_ace.txt"), parse_dsacstar(tmp_path / "poses_dsac.txt")
    names = [f"seq-01-frame-00000{i}.color.png" for i in range(3)] + \
            [f"seq-02-frame-00000{i}.color.png" for i in range(2)]
    assert list(ace) == names and list(dsac) == names  # ACE's sorted rgb/ folder order
    for name, rec in ours.items():
        if rec.pose_cw is None:
            assert np.allclose(ace[name][0], np.eye(4)) and ace[name][3] == 0
            continue
        assert np.allclose(ace[name][0], rec.pose_cw, atol=1e-8)
        assert np.allclose(dsac[name][0], rec.pose_cw, atol=1e-8)
        # ACE's errors: degrees and metres.
        assert ace[name][1] == pytest.approx(rec.r_err, abs=1e-4)
        assert ace[name][2] == pytest.approx(rec.t_err, abs=1e-6)
        assert dsac[name][1:] == pytest.approx(ace[name][1:3], abs=1e-9)
        assert ace[name][3] >= 8
    # The failed frame's identity pose is the world origin: its error is the true centre's norm.
    failed = ace["seq-02-frame-000001.color.png"]
    assert failed[2] == pytest.approx(np.linalg.norm(truth[4][:3, 3]), rel=1e-6)


def test_tum_ground_truth_and_estimate_per_sequence(tmp_path):
    coords_dir, data, truth = write_scene(tmp_path, n_per_seq=(3, 2))
    stamps = [100.5 + 0.25 * k for k in range(5)]
    (data / "timestamps.txt").write_text("".join(f"{s!r}\n" for s in stamps))
    out = tmp_path / "run" / "poses.txt"
    assert main([str(coords_dir), str(out), "--gt", str(data / "pose_list.txt"),
                 "--thread_num", "1", *CAMERA_FLAGS]) == 0
    records = read_pose_file(out)
    for name, ks in (("", range(5)), (".seq-01", range(3)), (".seq-02", range(3, 5))):
        t_gt, gt = read_tum(out.with_name(f"poses{name}.gt.tum.txt"))
        t_est, est = read_tum(out.with_name(f"poses{name}.tum.txt"))
        assert t_gt.tolist() == t_est.tolist() == [stamps[k] for k in ks]
        assert np.allclose(gt, np.stack([truth[k] for k in ks]), atol=1e-7)
        assert np.allclose(est, np.stack([records[k].pose_cw for k in ks]), atol=1e-7)
    # Without timestamps.txt: frame indices.
    (data / "timestamps.txt").unlink()
    assert main([str(coords_dir), str(out), "--gt", str(data / "pose_list.txt"),
                 "--thread_num", "1", *CAMERA_FLAGS]) == 0
    assert read_tum(out.with_name("poses.seq-02.gt.tum.txt"))[0].tolist() == [3.0, 4.0]


def test_summary_has_ace_and_outdoor_thresholds_per_sequence(tmp_path, capsys):
    coords_dir, data, _ = write_scene(tmp_path, n_per_seq=(3, 2))
    out = tmp_path / "poses.txt"
    assert main([str(coords_dir), str(out), "--gt", str(data / "pose_list.txt"),
                 "--thread_num", "1", "--table", "outdoor", *CAMERA_FLAGS]) == 0
    assert "25cm/2d" in capsys.readouterr().out
    summary = json.loads(out.with_name("poses.summary.json").read_text())
    records = read_pose_file(out)
    for block, recs in ((summary["overall"], records), (summary["sequences"][1], records[3:])):
        for cm, deg in ((10, 5), (5, 5), (2, 2), (1, 1), (25, 2), (50, 5), (500, 10)):
            expected = np.mean([100 * r.t_err <= cm + 5e-5 and r.r_err <= deg for r in recs])
            assert block[f"within_{cm}cm_{deg}deg"] == pytest.approx(expected)
    assert math.isclose(summary["overall"]["within_500cm_10deg"], 1.0)
