"""RANSAC-PnP (pnp/): P3P, refinement, the frame solver and the command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.errors import InputError
from common.formats import pnp_output_paths, read_pose_file, read_tum
from common.geometry import cell_pixels
from common.poses import pose_errors
from pnp.p3p import p3p
from pnp.refine import refine_pose, reprojection_errors, reprojection_errors_many, so3_exp
from pnp.solve import default_threshold, main, solve_frame
from pnp.synthetic import make_frame, random_rotation

REPO = Path(__file__).resolve().parents[1]
K = np.array([[525.0, 0, 320], [0, 525.0, 240], [0, 0, 1]])
# A quarter-size camera for the command-line runs: 30×40 maps of 320×240 images.
K_SMALL = np.array([[262.5, 0, 160], [0, 262.5, 120], [0, 0, 1]])


def world_to_camera(pose_cw):
    rot = pose_cw[:3, :3].T
    return rot, -rot @ pose_cw[:3, 3]


def test_p3p_recovers_the_true_pose_among_its_solutions():
    rng = np.random.default_rng(3)
    m = 200
    rots = np.stack([random_rotation(rng) for _ in range(m)])
    ts = rng.normal(size=(m, 3))
    cam = rng.uniform(-1, 1, (m, 3, 3))
    cam[..., 2] = rng.uniform(1, 4, (m, 3))
    rays = cam / np.linalg.norm(cam, axis=-1, keepdims=True)
    world = np.einsum("mji,mkj->mki", rots, cam - ts[:, None])  # Rᵀ (X_cam − t)
    rot, t, sample = p3p(rays, world)
    err = np.linalg.norm(rot - rots[sample], axis=(1, 2)) + np.linalg.norm(t - ts[sample], axis=1)
    best = np.full(m, np.inf)
    np.minimum.at(best, sample, err)
    assert np.all(best < 1e-5)
    assert np.median(best) < 1e-10
    # Every solution is a rotation and reproduces the three rays.
    assert np.allclose(rot @ np.swapaxes(rot, 1, 2), np.eye(3), atol=1e-9)
    back = np.einsum("kij,kpj->kpi", rot, world[sample]) + t[:, None]
    back /= np.linalg.norm(back, axis=-1, keepdims=True)
    assert np.allclose(back, rays[sample], atol=1e-6)


def test_p3p_skips_degenerate_samples():
    rays = np.tile(np.array([[0, 0, 1.0], [0.1, 0, 1], [0, 0.1, 1]]), (2, 1, 1))
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    world = np.array([[[0, 0, 0], [1, 0, 0], [2, 0, 0.0]],      # collinear
                      [[0, 0, 0], [0, 0, 0], [1, 1, 1.0]]])     # repeated point
    rot, t, sample = p3p(rays, world)
    assert len(rot) == 0 and len(sample) == 0


def test_so3_exp_hand_cases():
    quarter_turn_z = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    assert np.allclose(so3_exp(np.array([0, 0, np.pi / 2])), quarter_turn_z, atol=1e-12)
    assert np.allclose(so3_exp(np.array([np.pi, 0, 0])), np.diag([1.0, -1, -1]), atol=1e-12)
    assert np.allclose(so3_exp(np.zeros(3)), np.eye(3))


def test_reprojection_errors_by_hand_and_batched():
    rot, t = np.eye(3), np.array([0.0, 0, 2])
    points = np.array([[0.0, 0, 0], [0.2, -0.1, 0], [0, 0, -3]])  # last one is behind the camera
    pixels = np.array([[323.0, 244], [372.5, 213.75], [0, 0]])
    err, z = reprojection_errors(rot, t, points, pixels, K)
    assert np.allclose(err[:2], [5.0, 0.0]) and np.allclose(z, [2, 2, -1])
    many = reprojection_errors_many(np.stack([rot, rot]), np.stack([t, t + [0, 0, 1]]),
                                    points, pixels, K)
    assert many.dtype == np.float32 and many.shape == (2, 3)
    assert np.allclose(many[0, :2], [25.0, 0.0], atol=1e-3) and np.isinf(many[0, 2])
    # Camera 1 m further back: the second point lands at (320 + 525·0.2/3, 240 − 525·0.1/3).
    assert many[1, 1] == pytest.approx((372.5 - 355) ** 2 + (213.75 - 222.5) ** 2, rel=1e-5)


def test_refine_pose_converges_from_a_perturbed_start_and_downweights_outliers():
    rng = np.random.default_rng(1)
    frame = make_frame(rng, K, h=20, w=25, noise=0.0)
    rot, t = world_to_camera(frame.pose_cw)
    points = frame.coords.reshape(-1, 3).astype(np.float64)
    pixels = cell_pixels(20, 25).reshape(-1, 2)
    pixels[:25] += 40.0  # a few gross outliers, same confidence as the rest
    start = np.array([[1, -0.02, 0], [0.02, 1, 0], [0, 0, 1]]) @ rot
    r1, t1 = refine_pose(start, t + 0.05, points, pixels, K, np.full(len(points), 0.01),
                         iterations=30)
    assert np.abs(r1 - rot).max() < 1e-3 and np.abs(t1 - t).max() < 1e-3
    err, _ = reprojection_errors(r1, t1, points, pixels, K)
    assert np.median(err[25:]) < 0.05


def test_exact_recovery_on_noise_free_correspondences():
    rng = np.random.default_rng(0)
    frame = make_frame(rng, K, noise=0.0)
    pose, mask, info = solve_frame(frame.coords.astype(np.float64), frame.confidence, K, seed=1)
    t_err, r_err = pose_errors(pose, frame.pose_cw)
    assert t_err < 1e-6 and r_err < 1e-5
    assert info["failure"] is None and info["inliers"] == 60 * 80 == mask.sum()
    assert info["usable"] == 4800 and 1 <= info["samples"] <= 256


def test_robust_recovery_with_half_outliers():
    rng = np.random.default_rng(5)
    frame = make_frame(rng, K, noise=0.01, outlier_share=0.5)
    pose, mask, info = solve_frame(frame.coords, frame.confidence, K, seed=0)
    t_err, r_err = pose_errors(pose, frame.pose_cw)
    assert t_err < 0.01 and r_err < 0.2
    out = frame.outliers
    assert mask[~out].mean() > 0.9          # most inliers kept
    assert mask[out].mean() < 0.1           # few outliers pass (those moved along the ray can)


def test_solver_is_deterministic_for_a_seed():
    rng = np.random.default_rng(6)
    frame = make_frame(rng, K, noise=0.02, outlier_share=0.3)
    a = solve_frame(frame.coords, frame.confidence, K, seed=(4, 2))
    b = solve_frame(frame.coords, frame.confidence, K, seed=(4, 2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_confidence_guided_sampling_beats_uniform_sampling():
    # 90 % scattered outliers, all with a low confidence; a budget of 32 minimal samples.
    # Uniform sampling draws an all-inlier triple with probability 0.1³ per sample.
    hits = {"confidence": 0, "uniform": 0}
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        frame = make_frame(rng, K, noise=0.01, outlier_share=0.9, confident_outliers=0.0,
                           blobs=False)
        for mode in hits:
            pose, _, _ = solve_frame(frame.coords, frame.confidence, K, hypotheses=32, seed=seed,
                                     sampling=mode)
            hits[mode] += pose is not None and pose_errors(pose, frame.pose_cw)[0] < 0.05
    assert hits["confidence"] == 10
    assert hits["uniform"] <= 2


def test_unusable_cells_give_a_failure_not_a_crash():
    rng = np.random.default_rng(2)
    frame = make_frame(rng, K, h=6, w=8, noise=0.0)
    coords, conf = frame.coords.copy(), frame.confidence.copy()
    conf[:] = 0
    conf[0, :3] = 1.0
    coords[0, 0] = np.nan
    pose, mask, info = solve_frame(coords, conf, K)
    assert pose is None and not mask.any()
    assert info["failure"] == "only 2 usable cells (need at least 4)"
    with pytest.raises(ValueError, match="must be"):
        solve_frame(coords[..., :2], conf, K)
    with pytest.raises(ValueError, match="must be"):
        solve_frame(coords, conf[:, :4], K)


def test_default_threshold_keeps_the_view_angle():
    assert default_threshold(K) == pytest.approx(10.0)
    assert default_threshold(K_SMALL) == pytest.approx(5.0)


def test_output_paths():
    assert [p.name for p in pnp_output_paths("/x/poses.txt")] == ["poses.txt", "poses.tum.txt",
                                                              "poses.summary.json"]
    assert [p.name for p in pnp_output_paths("run")] == ["run", "run.tum.txt", "run.summary.json"]


def write_scene(root, n_per_seq=(3, 3), outlier_share=0.3, seed=0):
    """coords/coord_<k>.npy, and data/ with image_list.txt, pose_list.txt, seq-0X/*.pose.txt."""
    rng = np.random.default_rng(seed)
    coords_dir, data = root / "coords", root / "data"
    coords_dir.mkdir()
    images, poses, truth = [], [], []
    k = 0
    for s, n in enumerate(n_per_seq, 1):
        (data / f"seq-{s:02d}").mkdir(parents=True)
        for i in range(n):
            f = make_frame(rng, K_SMALL, h=30, w=40, noise=0.01, outlier_share=outlier_share)
            coord = np.dstack([f.coords, f.confidence]).astype(np.float32)
            np.save(coords_dir / f"coord_{k}.npy", coord)
            np.savetxt(data / f"seq-{s:02d}" / f"frame-{i:06d}.pose.txt", f.pose_cw)
            images.append(f"seq-{s:02d}/frame-{i:06d}.color.png")
            poses.append(f"seq-{s:02d}/frame-{i:06d}.pose.txt")
            truth.append(f.pose_cw)
            k += 1
    (data / "image_list.txt").write_text("\n".join(images) + "\n")
    (data / "pose_list.txt").write_text("\n".join(poses) + "\n")
    return coords_dir, data, truth


CAMERA_FLAGS = ["--focal", "262.5", "--cx", "160", "--cy", "120"]


@pytest.mark.parametrize("threads", [1, 2])
def test_cli_on_generated_maps_with_ground_truth(tmp_path, capsys, threads):
    coords_dir, data, truth = write_scene(tmp_path)
    out = tmp_path / "out" / "poses.txt"
    assert main([str(coords_dir), str(out), "--gt", str(data / "pose_list.txt"),
                 "--thread_num", str(threads), *CAMERA_FLAGS]) == 0
    printed = capsys.readouterr().out
    assert "seq-01" in printed and "seq-02" in printed

    records = read_pose_file(out)
    assert [r.index for r in records] == list(range(6))
    assert records[4].image == "seq-02/frame-000001.color.png"
    for rec in records:
        t_err, r_err = pose_errors(rec.pose_cw, truth[rec.index])
        assert t_err < 0.02 and r_err < 0.5
        assert rec.t_err == pytest.approx(t_err, abs=1e-5)
        assert rec.r_err == pytest.approx(r_err, abs=1e-3)

    stamps, tum = read_tum(tmp_path / "out" / "poses.tum.txt")
    assert stamps.tolist() == list(range(6))
    assert np.allclose(tum, np.stack([r.pose_cw for r in records]), atol=1e-7)

    summary = json.loads((tmp_path / "out" / "poses.summary.json").read_text())
    t_cm = sorted(100 * r.t_err for r in records)
    assert summary["overall"]["frames"] == 6 and summary["overall"]["failed"] == 0
    assert summary["overall"]["median_t_cm"] == pytest.approx((t_cm[2] + t_cm[3]) / 2, abs=1e-3)
    assert [s["name"] for s in summary["sequences"]] == ["seq-01", "seq-02"]
    assert [s["first_frame"] for s in summary["sequences"]] == [0, 3]
    assert summary["overall"]["ms_per_frame"] > 0
    assert summary["settings"]["threshold"] == pytest.approx(5.0)


def test_cli_records_bad_frames_and_keeps_going(tmp_path, capsys):
    coords_dir, data, _ = write_scene(tmp_path, n_per_seq=(5,))
    np.save(coords_dir / "coord_1.npy", np.zeros((30, 40, 3), np.float32))     # wrong shape
    (coords_dir / "coord_2.npy").write_bytes(b"not a numpy file")               # unreadable
    dead = np.load(coords_dir / "coord_3.npy")
    dead[..., 3] = 0                                                            # no usable cell
    np.save(coords_dir / "coord_3.npy", dead)
    out = tmp_path / "poses.txt"
    assert main([str(coords_dir), str(out), "--gt", str(data / "pose_list.txt"),
                 "--thread_num", "1", *CAMERA_FLAGS]) == 0
    records = {r.index: r for r in read_pose_file(out)}
    assert records[0].pose_cw is not None and records[4].pose_cw is not None
    assert records[1].failure == "coord file has shape (30, 40, 3), expected (h, w, 4)"
    assert records[2].failure.startswith("unreadable coord file")
    assert records[3].failure == "only 0 usable cells (need at least 4)"
    summary = json.loads((tmp_path / "poses.summary.json").read_text())
    assert summary["overall"]["failed"] == 3 and summary["overall"]["within_10cm_5deg"] == 0.4
    assert "3 of 5 frames failed" in capsys.readouterr().out


def test_cli_without_ground_truth(tmp_path):
    coords_dir, data, _ = write_scene(tmp_path, n_per_seq=(2, 1))
    out = tmp_path / "poses.txt"
    assert main([str(coords_dir), str(out), "--thread_num", "1", *CAMERA_FLAGS]) == 0
    records = read_pose_file(out)
    assert [r.image for r in records] == ["coord_0.npy", "coord_1.npy", "coord_2.npy"]
    assert all(r.pose_cw is not None and r.t_err is None for r in records)
    summary = json.loads((tmp_path / "poses.summary.json").read_text())
    assert summary["overall"]["frames"] == 3 and "median_t_cm" not in summary["overall"]
    # An image list alone gives image names and sequences.
    assert main([str(coords_dir), str(out), "--image_list", str(data / "image_list.txt"),
                 "--thread_num", "1", *CAMERA_FLAGS]) == 0
    assert read_pose_file(out)[2].image == "seq-02/frame-000000.color.png"
    summary = json.loads((tmp_path / "poses.summary.json").read_text())
    sequences = [(s["name"], s["frames"]) for s in summary["sequences"]]
    assert sequences == [("seq-01", 2), ("seq-02", 1)]


def test_cli_whole_run_errors(tmp_path):
    coords_dir, data, _ = write_scene(tmp_path, n_per_seq=(2,))
    out = tmp_path / "poses.txt"
    with pytest.raises(InputError, match="coord folder not found"):
        main([str(tmp_path / "nope"), str(out)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no coord_<k>.npy files"):
        main([str(tmp_path / "empty"), str(out)])
    short = tmp_path / "short_list.txt"
    short.write_text(str(data / "seq-01" / "frame-000000.pose.txt") + "\n")
    with pytest.raises(InputError, match="has 1 entries but coord files go up to coord_1.npy"):
        main([str(coords_dir), str(out), "--gt", str(short)])
    with pytest.raises(InputError, match="is a folder"):
        main([str(coords_dir), str(tmp_path)])
    assert not out.exists() and not (tmp_path / "poses.tum.txt").exists()


def test_cli_script_exit_code_and_message(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "pnp" / "solve.py"), str(tmp_path / "nope"),
                           str(tmp_path / "p.txt")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: coord folder not found: {tmp_path / 'nope'}"


def test_focal_y_and_a_warning_for_default_intrinsics_that_do_not_fit(tmp_path, capsys):
    coords_dir, _, _ = write_scene(tmp_path, n_per_seq=(1,))
    out = tmp_path / "poses.txt"
    assert main([str(coords_dir), str(out), "--thread_num", "1", "--no_progress", "--focal", "262.5", "--focal_y", "270",
                 "--cx", "160", "--cy", "120"]) == 0
    assert "warning" not in capsys.readouterr().err
    K = json.loads((tmp_path / "poses.summary.json").read_text())["settings"]["K"]
    assert K == [[262.5, 0, 160], [0, 270, 120], [0, 0, 1]]
    # Without intrinsics: 7-Scenes' 525 and (320, 240), for maps of 40x30 cells (320x240 pixels).
    assert main([str(coords_dir), str(out), "--thread_num", "1", "--no_progress"]) == 0
    assert capsys.readouterr().err.strip().splitlines() == [
        "warning: intrinsics fx 525, fy 525, centre (320, 240) (the 7-Scenes defaults of "
        "configs/defaults.yaml) do not fit maps of 40x30 cells (320x240 pixels, centre (160, 120)); "
        "pass --scene/--config or --focal/--focal_y/--cx/--cy"]


def test_summary_lag_never_pairs_frames_across_sequences():
    from common.formats import PoseRecord
    from pnp.evaluate import format_summary, summarize

    def pose(x):
        m = np.eye(4)
        m[0, 3] = x
        return m

    # Two sequences moving +x by 10 cm a frame; the first's estimates trail by 1 cm, the second's
    # by 4 cm. Frame 3 starts the second sequence 5 m away: pairing it with frame 2 would add a
    # huge step and lag.
    truth = {0: 0.0, 1: 0.1, 2: 0.2, 3: 5.0, 4: 5.1, 5: 5.2}
    trail = {0: 0.0, 1: 0.01, 2: 0.01, 3: 0.0, 4: 0.04, 5: 0.04}
    gt = {k: pose(x) for k, x in truth.items()}
    records = [PoseRecord(k, f"f{k}", pose_cw=pose(truth[k] - trail[k])) for k in truth]
    for r in records:
        r.t_err, r.r_err = pose_errors(r.pose_cw, gt[r.index])
    seq_of = {k: int(k >= 3) for k in truth}
    summary = summarize(records, {}, seq_of, {0: "a", 1: "b"}, True, gt)
    assert [s["lag_cm"] for s in summary["sequences"]] == [pytest.approx(1.0), pytest.approx(4.0)]
    assert summary["overall"]["lag_cm"] == pytest.approx(2.5)
    assert summary["overall"]["median_step_cm"] == pytest.approx(10.0)
    assert format_summary(summary)[-1].startswith("lag along the motion: +2.50 cm")
    # Without ground truth poses there is no lag and no line for it.
    plain = summarize(records, {}, seq_of, {0: "a", 1: "b"}, True)
    assert "lag_cm" not in plain["overall"]
    assert format_summary(plain)[-1].startswith("all")
