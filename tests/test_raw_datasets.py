"""Raw-download preparations (TUM RGB-D, generic layout, 12-Scenes, 7-Scenes calibrated / pGT),
each built from the synthetic room and checked against the room's own geometry."""

import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pytest

from common.data.labels import read_label
from common.data.raw import tum_camera_name
from common.data.rgbd import SEVEN_SCENES_DEPTH_TO_RGB, interpolate_pose
from common.data.synthetic import NO_DEPTH, SceneSettings, make_scene, render, sequence_poses
from common.formats import read_list, read_matrix_file
from common.geometry import cell_pixels
from common.poses import invert_rigid, rotation_to_quaternion

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = SceneSettings(width=80, height=64, frames=12, sequences=3, test_sequences=1, seed=0)


@pytest.fixture(scope="module")
def room():
    return make_scene(SETTINGS.seed)


def true_points(room, pose_cw, intrinsics, hw):
    """[h, w, 3] world points the room shows at each map cell's pixel (common.geometry's
    cell_pixels) for a camera with intrinsics (fx, fy, cx, cy); NaN where nothing is hit."""
    fx, fy, cx, cy = intrinsics
    pix = cell_pixels(hw[0] // 8, hw[1] // 8)
    dirs = np.stack([(pix[..., 0] - cx) / fx, (pix[..., 1] - cy) / fy, np.ones(pix.shape[:2])], -1)
    dirs = dirs.reshape(-1, 3) @ pose_cw[:3, :3].T
    rays = np.hstack([np.broadcast_to(pose_cw[:3, 3], dirs.shape), dirs]).astype(np.float32)
    t = room.raycaster.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().astype(np.float64)
    points = pose_cw[:3, 3] + t[:, None] * dirs
    return points.reshape(*pix.shape[:2], 3)


def check_labels(folder, hw, intrinsics, poses, tol=1e-3, min_valid=0.5):
    """Labels of a prepared folder against the room seen from `poses` (camera-to-world, one per
    label): every valid cell within tol metres; returns the share of valid cells."""
    labels = read_list(folder / "label_list.txt")
    assert len(labels) == len(poses)
    valid_share = []
    for path, pose in zip(labels, poses):
        label = read_label(path, hw)
        valid = label[..., 3] == 1
        truth = true_points(pytest.room, pose, intrinsics, hw)
        err = np.linalg.norm(label[valid, :3] - truth[valid], axis=-1)
        assert np.all(err < tol), f"{path}: {err.max()}"
        valid_share.append(valid.mean())
    assert np.mean(valid_share) > min_valid
    return float(np.mean(valid_share))


@pytest.fixture(autouse=True)
def _room_global(room):
    pytest.room = room


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def run_script(name, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args),
                           "--no_progress"], capture_output=True, text=True, cwd=ROOT)
    return proc


# ---- TUM RGB-D ---------------------------------------------------------------------------------

TUM_K = (66.0, 65.0, 40.5, 31.5)


def tum_trajectory(t, start):
    """Closed-form camera-to-world pose at time t: constant velocity and constant turn rate about
    the camera's own y axis, so slerp between any two samples is exact."""
    rot, _ = cv2.Rodrigues(np.array([0.0, 0.6 * t, 0.0]))
    pose = np.eye(4)
    pose[:3, :3] = start[:3, :3] @ rot
    pose[:3, 3] = start[:3, 3] + np.array([0.3, -0.2, 0.05]) * t
    return pose


def write_tum_sequence(room, folder, seed, n=6):
    """A TUM sequence: colour at jittered ~30 Hz, depth a few ms off (×5000), ground truth at
    irregular ~100 Hz; one colour frame has no depth near it, one lies past the ground truth."""
    rng = np.random.default_rng(seed)
    start = sequence_poses(SETTINGS, seed)[0]
    t0 = 1305031102.0 + 10 * seed
    rgb_t = t0 + np.arange(n + 1) / 30 + rng.uniform(-0.004, 0.004, n + 1)
    rgb_lines, depth_lines, truth = ["# colour images"], ["# depth maps"], []
    for k, t in enumerate(rgb_t):
        pose = tum_trajectory(t - t0, start)
        colour, depth = render(room, pose, 80, 64, np.random.default_rng([seed, k]), TUM_K)
        d5000 = np.where(depth == NO_DEPTH, 0, np.round(depth.astype(np.float64) * 5)).astype(np.uint16)
        name = f"{t:.6f}"
        write_png(folder / "rgb" / f"{name}.png", colour[:, :, ::-1])
        rgb_lines.append(f"{name} rgb/{name}.png")
        truth.append((t, pose, k))
        if k == 2:  # frame 2 has no depth: its neighbours' lie ≥ 25 ms away, beyond 20 ms
            continue
        td = t + rng.uniform(-0.008, 0.008)
        write_png(folder / "depth" / f"{td:.6f}.png", d5000)
        depth_lines.append(f"{td:.6f} depth/{td:.6f}.png")
    gt_t = np.sort(np.concatenate([t0 - 0.02 + np.cumsum(rng.uniform(0.005, 0.012, 30))]))
    gt_t = gt_t[gt_t < rgb_t[n - 1] + 0.01]  # the last colour frame lies past the ground truth
    gt_lines = ["# timestamp tx ty tz qx qy qz qw"]
    for t in gt_t:
        pose = tum_trajectory(t - t0, start)
        w, x, y, z = rotation_to_quaternion(pose[:3, :3])
        gt_lines.append(f"{t:.6f} " + " ".join(f"{v:.9f}" for v in (*pose[:3, 3], x, y, z, w)))
    for name, lines in (("rgb.txt", rgb_lines), ("depth.txt", depth_lines),
                        ("groundtruth.txt", gt_lines)):
        (folder / name).write_text("\n".join(lines) + "\n")
    kept = [(round(t, 6), pose) for t, pose, k in truth if k not in (2, n)]
    return kept


def test_tum_prepares_interpolated_poses_and_exact_labels(room, tmp_path):
    train = write_tum_sequence(room, tmp_path / "tum" / "rgbd_dataset_freiburg1_a", 0)
    test = write_tum_sequence(room, tmp_path / "tum" / "rgbd_dataset_freiburg1_b", 1)
    out = tmp_path / "out"
    flags = ["--focal", TUM_K[0], "--focal_y", TUM_K[1], "--cx", TUM_K[2], "--cy", TUM_K[3]]
    proc = run_script("prepare_tum.py", "--train", tmp_path / "tum" / "rgbd_dataset_freiburg1_a",
                      "--test", tmp_path / "tum" / "rgbd_dataset_freiburg1_b",
                      "--output_folder", out, *flags)
    assert proc.returncode == 0, proc.stderr
    assert "5 frames; skipped 1 without depth within 0.02 s and 1 outside" in proc.stdout
    for split, truth in (("train", train), ("test", test)):
        stamps = [float(v) for v in (out / split / "timestamps.txt").read_text().split()]
        assert stamps == pytest.approx([t for t, _ in truth], abs=1e-6)
        poses = [read_matrix_file(p) for p in read_list(out / split / "pose_list.txt")]
        for pose, (_, expected) in zip(poses, truth):
            assert np.allclose(pose, expected, atol=2e-6)  # 1 µs timestamps, 9-digit quaternions
        check_labels(out / split, (64, 80), TUM_K, [p for _, p in truth])
    # Resumable: a second run keeps every label.
    again = run_script("prepare_tum.py", "--train", tmp_path / "tum" / "rgbd_dataset_freiburg1_a",
                       "--test", tmp_path / "tum" / "rgbd_dataset_freiburg1_b",
                       "--output_folder", out, *flags)
    assert "train: 0 labels written, 5 kept" in again.stdout
    # Bad input: one line naming the file, no lists.
    (tmp_path / "tum" / "rgbd_dataset_freiburg1_b" / "groundtruth.txt").write_text("1 2 3\n")
    bad = run_script("prepare_tum.py", "--train", tmp_path / "tum" / "rgbd_dataset_freiburg1_a",
                     "--test", tmp_path / "tum" / "rgbd_dataset_freiburg1_b",
                     "--output_folder", tmp_path / "bad", *flags)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "groundtruth.txt" in bad.stderr and not (tmp_path / "bad").exists()
    # Without intrinsics and with no freiburg name: a one-line error.
    shutil.move(tmp_path / "tum" / "rgbd_dataset_freiburg1_a", tmp_path / "tum" / "mine")
    bad = run_script("prepare_tum.py", "--train", tmp_path / "tum" / "mine", "--test",
                     tmp_path / "tum" / "mine", "--output_folder", tmp_path / "bad")
    assert bad.returncode == 2 and "--focal --cx --cy" in bad.stderr


def test_tum_camera_names_and_interpolation_by_hand():
    assert tum_camera_name("/d/rgbd_dataset_freiburg2_desk") == "freiburg2"
    assert tum_camera_name("rgbd_dataset_freiburg3_long_office_household") == "freiburg3"
    assert tum_camera_name("my_capture") is None
    a, b = np.eye(4), np.eye(4)
    b[:3, :3] = cv2.Rodrigues(np.array([0.0, 0.0, math.pi / 2]))[0]
    b[:3, 3] = [2.0, 0.0, 0.0]
    mid = interpolate_pose(np.array([0.0, 1.0]), np.stack([a, b]), 0.25, max_gap=2.0)
    assert np.allclose(mid[:3, :3], cv2.Rodrigues(np.array([0.0, 0.0, math.pi / 8]))[0])
    assert np.allclose(mid[:3, 3], [0.5, 0.0, 0.0])
    assert interpolate_pose(np.array([0.0, 1.0]), np.stack([a, b]), 0.5, max_gap=0.5) is None
    assert interpolate_pose(np.array([0.0, 1.0]), np.stack([a, b]), 1.5, max_gap=2.0) is None


# ---- Generic layout ----------------------------------------------------------------------------

def test_generic_layout_with_its_depth_scale(tiny_scene, tmp_path):
    root = tmp_path / "capture"
    for seq in ("seq-01", "seq-03"):
        for k in range(0, 12, 3):
            src = tiny_scene.dataset / seq / f"frame-{k:06d}"
            dst = root / seq
            write_png(dst / "rgb" / f"{k:04d}.png", cv2.imread(f"{src}.color.png"))
            depth = cv2.imread(f"{src}.depth.png", cv2.IMREAD_UNCHANGED).astype(np.int64)
            depth = np.where(depth == NO_DEPTH, 0, depth * 4)  # quarter-millimetre units
            write_png(dst / "depth" / f"{k:04d}.png", depth.astype(np.uint16))
            (dst / "poses").mkdir(exist_ok=True)
            shutil.copy(f"{src}.pose.txt", dst / "poses" / f"{k:04d}.txt")
    shutil.copy(tiny_scene.dataset / "intrinsics.txt", root / "seq-01" / "intrinsics.txt")
    out = tmp_path / "out"
    proc = run_script("prepare_rgbd.py", "--train", root / "seq-01", "--test", root / "seq-03",
                      "--output_folder", out, "--depth_scale", 4000)
    assert proc.returncode == 0, proc.stderr
    f = 65.625
    for split, seq in (("train", "seq-01"), ("test", "seq-03")):
        poses = [read_matrix_file(p) for p in read_list(out / split / "pose_list.txt")]
        source = [read_matrix_file(tiny_scene.dataset / seq / f"frame-{k:06d}.pose.txt")
                  for k in range(0, 12, 3)]
        assert np.allclose(poses, source, atol=1e-12)
        check_labels(out / split, (64, 80), (f, f, 40.0, 32.0), source)
    (root / "seq-03" / "poses" / "0006.txt").unlink()
    bad = run_script("prepare_rgbd.py", "--train", root / "seq-01", "--test", root / "seq-03",
                     "--output_folder", tmp_path / "bad")
    assert bad.returncode == 2 and "0006.txt" in bad.stderr and not (tmp_path / "bad").exists()


# ---- 12-Scenes ---------------------------------------------------------------------------------

INFO = """m_versionNumber = 4
m_sensorName = StructureSensor
m_colorWidth = 1296
m_colorHeight = 968
m_depthWidth = 640
m_depthHeight = 480
m_depthShift = 1000
m_calibrationColorIntrinsic = 1169 0 647.75 0 0 1167 483.75 0 0 0 1 0 0 0 0 1
m_calibrationColorExtrinsic = 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1
m_calibrationDepthIntrinsic = 572 0 320 0 0 572 240 0 0 0 1 0 0 0 0 1
m_calibrationDepthExtrinsic = 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1
m_frames.size = 6
"""


def test_twelve_scenes_resizes_colour_and_skips_invalid_poses(room, tmp_path):
    scene = tmp_path / "apt1" / "kitchen"
    data = scene / "data"
    (scene / "info.txt").parent.mkdir(parents=True)
    (scene / "info.txt").write_text(INFO)
    (scene / "split.txt").write_text("sequence0 [frames=2]  [start=0 ; end=1]\n")
    sx, sy = 640 / 1296, 480 / 968
    depth_k = (1169 * sx, 1167 * sy, 648.25 * sx - 0.5, 484.25 * sy - 0.5)
    poses = sequence_poses(SETTINGS, 0)[:6]
    for k, pose in enumerate(poses):
        # Colour content is not what is tested: a cheap render scaled up to 1296×968.
        colour, _ = render(room, pose, 324, 242, np.random.default_rng(k))
        write_png(data / f"frame-{k:06d}.color.jpg", cv2.resize(colour, (1296, 968)))
        _, depth = render(room, pose, 640, 480, np.random.default_rng(k), depth_k)
        write_png(data / f"frame-{k:06d}.depth.png", np.where(depth == NO_DEPTH, 0, depth).astype(np.uint16))
        text = "".join(" ".join(f"{v:.10f}" for v in row) + "\n" for row in pose)
        if k == 4:
            text = "-inf -inf -inf -inf\n" * 3 + "0 0 0 1\n"
        (data / f"frame-{k:06d}.pose.txt").write_text(text)
    out = tmp_path / "out"
    proc = run_script("prepare_12scenes.py", "--dataset_folder", scene, "--output_folder", out)
    assert proc.returncode == 0, proc.stderr
    assert "3 train, 2 test frames, 1 skipped (invalid pose)" in proc.stdout
    images = read_list(out / "train" / "image_list.txt")
    assert [Path(p).name for p in images] == [f"frame-00000{k}.color.png" for k in (2, 3, 5)]
    assert cv2.imread(images[0]).shape == (480, 640, 3)
    for split, ks in (("test", (0, 1)), ("train", (2, 3, 5))):
        got = [read_matrix_file(p) for p in read_list(out / split / "pose_list.txt")]
        assert np.allclose(got, [poses[k] for k in ks], atol=1e-9)
        check_labels(out / split, (480, 640), depth_k, [poses[k] for k in ks])


# ---- 7-Scenes: calibrated registration and pseudo ground truth --------------------------------

def test_seven_scenes_calibrated_registration_on_a_known_offset(room, tmp_path):
    """Kinect-like capture at 320×240: colour from the RGB camera (f 262.5), depth from a depth
    camera (f 292.5) placed by 7-Scenes' calibration, .pose.txt the depth camera's pose."""
    d2r = np.asarray(SEVEN_SCENES_DEPTH_TO_RGB).reshape(4, 4)
    dataset = tmp_path / "chess"
    rgb_poses = {}
    for s, seq in ((0, "seq-01"), (2, "seq-03")):
        for k, pose_rgb in enumerate(sequence_poses(SETTINGS, s)[:4]):
            pose_depth = pose_rgb @ d2r  # world ← depth = world ← rgb · rgb ← depth
            colour, _ = render(room, pose_rgb, 320, 240, np.random.default_rng(k))
            _, depth = render(room, pose_depth, 320, 240, np.random.default_rng(k),
                              (292.5, 292.5, 160.0, 120.0))
            stem = dataset / seq / f"frame-{k:06d}"
            write_png(Path(f"{stem}.color.png"), colour[:, :, ::-1])
            write_png(Path(f"{stem}.depth.png"), depth)
            Path(f"{stem}.pose.txt").write_text(
                "".join(" ".join(f"{v:.12f}" for v in row) + "\n" for row in pose_depth))
            rgb_poses[(seq, k)] = pose_rgb
    (dataset / "TrainSplit.txt").write_text("sequence1\n")
    (dataset / "TestSplit.txt").write_text("sequence3\n")
    flags = ["--dataset_folder", dataset, "--focal", 262.5, "--cx", 160, "--cy", 120,
             "--depth_focal", 292.5]
    for reg in ("focal", "calibrated"):
        proc = run_script("prepare_7scenes.py", *flags, "--output_folder", tmp_path / reg,
                          "--registration", reg)
        assert proc.returncode == 0, proc.stderr
    truth = [rgb_poses[("seq-03", k)] for k in range(4)]
    got = [read_matrix_file(p) for p in read_list(tmp_path / "calibrated" / "test" / "pose_list.txt")]
    assert np.allclose(got, truth, atol=1e-9)  # RGB-camera poses
    errors = {}
    for reg in ("focal", "calibrated"):
        errs = []
        for path, pose in zip(read_list(tmp_path / reg / "test" / "label_list.txt"), truth):
            label = read_label(path, (240, 320))
            valid = label[..., 3] == 1
            gt = true_points(room, pose, (262.5, 262.5, 160.0, 120.0), (240, 320))
            errs.append(np.linalg.norm(label[valid, :3] - gt[valid], axis=-1))
        errors[reg] = float(np.median(np.concatenate(errs)))
    a = [read_label(p, (240, 320)) for p in read_list(tmp_path / "focal" / "test" / "label_list.txt")]
    b = [read_label(p, (240, 320)) for p in read_list(tmp_path / "calibrated" / "test" / "label_list.txt")]
    both = [(x[..., 3] == 1) & (y[..., 3] == 1) for x, y in zip(a, b)]
    change_cm = 100 * np.median(np.concatenate([np.linalg.norm(x[m, :3] - y[m, :3], axis=-1)
                                                 for x, y, m in zip(a, b, both)]))
    print(f"median label change {change_cm:.2f} cm; median error vs the room: focal-only "
          f"{100 * errors['focal']:.2f} cm, calibrated {100 * errors['calibrated']:.2f} cm")
    assert errors["calibrated"] < 0.004 < 0.01 < errors["focal"]
    assert 2.0 < change_cm < 10.0


def test_seven_scenes_pseudo_ground_truth(tiny_scene, tmp_path):
    """pGT in another world frame (a known rigid T): poses and labels follow it; frames the
    file lacks are skipped."""
    t = np.eye(4)
    t[:3, :3] = cv2.Rodrigues(np.array([0.1, -0.2, 0.3]))[0]
    t[:3, 3] = [0.5, -1.0, 2.0]
    lines = []
    for seq in ("seq-01", "seq-02", "seq-03"):
        for k in range(12):
            if (seq, k) == ("seq-03", 5):
                continue
            pose = t @ read_matrix_file(tiny_scene.dataset / seq / f"frame-{k:06d}.pose.txt")
            wc = invert_rigid(pose)
            q = rotation_to_quaternion(wc[:3, :3])
            lines.append(f"{seq}/frame-{k:06d}.color.png " + " ".join(
                f"{v:.12f}" for v in (*q, *wc[:3, 3])) + " 65.7")
    (tmp_path / "scene_train.txt").write_text("\n".join(lines[:24]) + "\n")
    (tmp_path / "scene_test.txt").write_text("\n".join(lines[24:]) + "\n")
    out = tmp_path / "out"
    proc = run_script("prepare_7scenes.py", "--dataset_folder", tiny_scene.dataset,
                      "--output_folder", out, "--poses", "pgt", tmp_path / "scene_train.txt",
                      tmp_path / "scene_test.txt")
    assert proc.returncode == 0, proc.stderr
    assert "35 frames, 1 frames without a pose skipped" in proc.stdout
    images = read_list(out / "test" / "image_list.txt")
    assert len(images) == 11 and not any("frame-000005" in p for p in images)
    ref_labels = {Path(p).name: p for p in read_list(tiny_scene.test / "label_list.txt")}
    for image, pose_path, label_path in zip(images, read_list(out / "test" / "pose_list.txt"),
                                            read_list(out / "test" / "label_list.txt")):
        source = read_matrix_file(image.replace(".color.png", ".pose.txt"))
        assert np.allclose(read_matrix_file(pose_path), t @ source, atol=1e-9)
        mine, ref = read_label(label_path, (64, 80)), read_label(ref_labels[Path(label_path).name], (64, 80))
        assert np.array_equal(mine[..., 3], ref[..., 3])
        valid = ref[..., 3] == 1
        assert np.allclose(mine[valid, :3], ref[valid, :3].astype(np.float64) @ t[:3, :3].T + t[:3, 3],
                           atol=2e-5)
    bad = run_script("prepare_7scenes.py", "--dataset_folder", tiny_scene.dataset,
                     "--output_folder", tmp_path / "bad", "--poses", "pgt", tmp_path / "nope.txt")
    assert bad.returncode == 2 and "nope.txt" in bad.stderr and not (tmp_path / "bad").exists()
