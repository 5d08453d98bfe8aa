"""7-Scenes preparation: labels from depth and pose, registration, transform.txt, re-runs."""

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from common.data.labels import read_label
from common.data.prepare import (
    Camera,
    normalizing_transform,
    prepare_scene,
    register_depth,
    sample_cells,
    scene_label,
)
from common.errors import InputError
from common.formats import read_list, read_matrix_file

ROOT = Path(__file__).resolve().parents[1]
TINY = Camera(focal=65.625, focal_y=65.625, cx=40.0, cy=32.0, depth_focal=65.625)


def test_labels_reproject_onto_their_cells_at_the_rendered_depth(tiny_scene):
    images = read_list(tiny_scene.train / "image_list.txt")
    labels = read_list(tiny_scene.train / "label_list.txt")
    poses = read_list(tiny_scene.train / "pose_list.txt")
    assert len(images) == len(labels) == len(poses) == 24
    assert images[0] == str(tiny_scene.dataset / "seq-01" / "frame-000000.color.png")
    assert images[12] == str(tiny_scene.dataset / "seq-02" / "frame-000000.color.png")
    assert poses[23] == str(tiny_scene.dataset / "seq-02" / "frame-000011.pose.txt")
    label_list = (tiny_scene.train / "label_list.txt").read_text()
    assert label_list.startswith("labels/seq-01/frame-000000.")
    ys, xs = np.mgrid[0:64:8, 0:80:8]  # cell (i, j) stands for pixel (8j, 8i)
    for image, label_path, pose_path in list(zip(images, labels, poses))[::5]:
        label = read_label(label_path, (64, 80))
        assert label.shape == (8, 10, 4)
        pose = read_matrix_file(pose_path)
        depth = cv2.imread(image.replace("color", "depth"), cv2.IMREAD_UNCHANGED)[ys, xs]
        valid = label[..., 3] == 1
        assert np.array_equal(valid, (depth != 0) & (depth != 65535))
        assert np.all(label[~valid] == 0)
        cam = (label[valid, :3].astype(np.float64) - pose[:3, 3]) @ pose[:3, :3]
        assert np.allclose(cam[:, 2], depth[valid] / 1000.0, rtol=1e-6)
        assert np.allclose(65.625 * cam[:, 0] / cam[:, 2] + 40.0, xs[valid], atol=2e-4)
        assert np.allclose(65.625 * cam[:, 1] / cam[:, 2] + 32.0, ys[valid], atol=2e-4)


def test_transform_is_rigid_and_centres_the_training_points(tiny_scene):
    transform = read_matrix_file(tiny_scene.train / "transform.txt")
    text = (tiny_scene.train / "transform.txt").read_text()
    assert (tiny_scene.test / "transform.txt").read_text() == text
    rot = transform[:3, :3]
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-12) and np.isclose(np.linalg.det(rot), 1.0)
    assert np.array_equal(transform[3], [0, 0, 0, 1])
    # transform.txt comes from every 10th frame of the training list: seq-01 0 and 10, seq-02 8.
    labels = read_list(tiny_scene.train / "label_list.txt")[::10]
    assert len(labels) == 3
    grids = [read_label(p, (64, 80)) for p in labels]
    points = np.concatenate([g[g[..., 3] == 1, :3] for g in grids])
    normalized = points.astype(np.float64) @ rot.T + transform[:3, 3]
    assert np.allclose(normalized.mean(axis=0), 0, atol=1e-6)
    cov = np.cov(normalized.T)
    assert np.allclose(cov - np.diag(np.diag(cov)), 0, atol=1e-6)
    assert cov[0, 0] > cov[1, 1] > cov[2, 2] > 0


def test_normalizing_transform_hand_case():
    """Spreads 3, 2, 1 along world y, x, z around (1, 2, 3): axes y, x, then x × y = −z."""
    centre = np.array([1.0, 2.0, 3.0])
    offsets = np.array([[0, 3, 0], [0, -3, 0], [2, 0, 0], [-2, 0, 0], [0, 0, 1], [0, 0, -1]],
                       dtype=float)
    t = normalizing_transform(centre + offsets)
    expected = np.array([[0, 1, 0, -2], [1, 0, 0, -1], [0, 0, -1, 3], [0, 0, 0, 1]], dtype=float)
    assert np.allclose(t, expected, atol=1e-12)


def test_register_depth_nearest_wins():
    """Depth focal 8, RGB focal 3, centre (4, 4): depth pixels 3..5 of a row land on RGB pixel 4."""
    camera = Camera(focal=3.0, focal_y=3.0, cx=4.0, cy=4.0, depth_focal=8.0)
    depth = np.zeros((8, 8))
    depth[3:6, 3:6] = [[3.0, 2.5, 0.0], [2.0, 1.2, 4.0], [0.0, 1.9, 2.2]]
    depth[6, 6] = 5.0  # (6 - 4)·3/8 + 4 = 4.75 → RGB pixel (5, 5)
    out = register_depth(depth, camera, (8, 8))
    expected = np.zeros((8, 8))
    expected[4, 4] = 1.2
    expected[5, 5] = 5.0
    assert np.array_equal(out, expected)


def test_sample_cells_fills_from_the_nearest_pixel_within_two():
    depth = np.zeros((16, 16))
    depth[0, 1], depth[0, 2] = 2.0, 1.0  # cell (0, 0): its pixel (0, 0) empty, nearest at distance 1
    depth[8, 10] = 3.0  # cell (1, 1): pixel (8, 8), distance 2 → used
    depth[0, 11] = 4.0  # cell (0, 1): pixel (8, 0), distance 3 → too far
    assert np.array_equal(sample_cells(depth, 2), [[2.0, 0.0], [0.0, 3.0]])
    assert np.array_equal(sample_cells(depth, 0), np.zeros((2, 2)))


def test_unregistered_flat_wall_gives_the_right_coordinates():
    """A wall 2 m in front of a 7-Scenes Kinect: depth focal 585, RGB focal 525, centre (320, 240).

    The depth camera's narrower view covers RGB columns 33..606 and rows 25..454, so a cell is
    valid where its pixel (8j, 8i) lies within 2 px of that rectangle.
    """
    camera = Camera(focal=525.0, focal_y=525.0, cx=320.0, cy=240.0, depth_focal=585.0)
    pose = np.eye(4)
    pose[:3, 3] = [1.0, -2.0, 0.5]
    label = scene_label(np.full((480, 640), 2.0), pose, camera, (480, 640))
    ys, xs = np.mgrid[0:480:8, 0:640:8]
    dx, dy = np.maximum.reduce([33 - xs, 0 * xs, xs - 606]), np.maximum.reduce([25 - ys, 0 * ys, ys - 454])
    expected_valid = dx ** 2 + dy ** 2 <= 4
    assert np.array_equal(label[..., 3] == 1, expected_valid)
    expected = np.stack([(xs - 320) / 525 * 2 + 1.0, (ys - 240) / 525 * 2 - 2.0,
                         np.full(xs.shape, 2.5)], -1)
    assert np.allclose(label[expected_valid, :3], expected[expected_valid], atol=1e-6)
    assert np.all(label[~expected_valid] == 0)


def test_rerun_keeps_finished_labels(tiny_scene, tmp_path):
    out = tmp_path / "prep"

    def counts(camera=TINY, overwrite=False):
        """(labels written, labels kept) of preparing the test split."""
        stats = prepare_scene(tiny_scene.dataset, out, camera, splits=["test"],
                              overwrite=overwrite, progress=False)
        return stats["test"][:2]

    assert counts() == (12, 0)
    label = out / "test" / "labels" / "seq-03" / "frame-000004.label.bin"
    reference = tiny_scene.test / "labels" / "seq-03" / "frame-000004.label.bin"
    assert label.read_bytes() == reference.read_bytes()
    text = (tiny_scene.test / "transform.txt").read_text()
    assert (out / "test" / "transform.txt").read_text() == text
    assert not (out / "train").exists()
    stamp = label.stat().st_mtime_ns
    label.with_name("frame-000005.label.bin").write_bytes(b"short")  # a broken label is redone
    assert counts() == (1, 11)
    assert label.stat().st_mtime_ns == stamp
    assert counts(overwrite=True) == (12, 0)
    # Other intrinsics make other labels: nothing is kept.
    assert counts(Camera(focal=60.0, focal_y=60.0, cx=40.0, cy=32.0, depth_focal=60.0)) == (12, 0)
    assert label.read_bytes() != reference.read_bytes()


@pytest.fixture
def broken_scene(tiny_scene, tmp_path):
    """A copy of the tiny dataset to break."""
    return Path(shutil.copytree(tiny_scene.dataset, tmp_path / "scene"))


@pytest.mark.parametrize("damage, named", [
    (lambda d: shutil.rmtree(d), "scene"),
    (lambda d: (d / "TestSplit.txt").unlink(), "TestSplit.txt"),
    (lambda d: (d / "TestSplit.txt").write_text("sequence3\nsequence4\n"), "seq-04"),
    (lambda d: (d / "seq-02" / "frame-000003.depth.png").unlink(), "frame-000003.depth.png"),
    (lambda d: (d / "seq-03" / "frame-000009.pose.txt").unlink(), "frame-000009.pose.txt"),
    (lambda d: cv2.imwrite(str(d / "seq-01" / "frame-000002.color.png"),
                           np.zeros((64, 84, 3), np.uint8)), "frame-000002.color.png"),
])
def test_bad_input_names_the_file_and_writes_nothing(broken_scene, tmp_path, damage, named):
    damage(broken_scene)
    with pytest.raises(InputError, match=named) as err:
        prepare_scene(broken_scene, tmp_path / "out", TINY, progress=False)
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "out").rglob("*_list.txt"))


def test_cli_end_to_end_and_bad_input(tiny_scene, tmp_path):
    out = tmp_path / "prep"
    script = str(ROOT / "scripts" / "prepare_7scenes.py")
    run = subprocess.run([sys.executable, script, "--dataset_folder", str(tiny_scene.dataset),
                          "--output_folder", str(out), "--no_progress"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "intrinsics.txt" in run.stdout  # the synthetic scene's own intrinsics
    for split in ("train", "test"):
        mine = (out / split / "label_list.txt").read_text().split()
        assert mine == (getattr(tiny_scene, split) / "label_list.txt").read_text().split()
        for rel in mine[::7]:
            reference = getattr(tiny_scene, split) / rel
            assert (out / split / rel).read_bytes() == reference.read_bytes()
    missing = tmp_path / "nowhere"
    bad = subprocess.run([sys.executable, "-m", "scripts.prepare_7scenes", "--dataset_folder",
                          str(missing), "--output_folder", str(out), "--scene", "tiny", "--no_progress"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2
    lines = [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]
    assert lines == [f"error: dataset folder not found: {missing}"]


@pytest.mark.parametrize("given, expected", [
    ({"scene": "chess"}, Camera(525.0, 525.0, 320.0, 240.0, 585.0)),
    ({"scene": "chess", "focal": 500.0}, Camera(500.0, 500.0, 320.0, 240.0, 585.0)),
    # configs/defaults.yaml has registered depth, which --focal keeps so.
    ({"focal": 100.0, "cx": 50.0}, Camera(100.0, 100.0, 50.0, 240.0, 100.0)),
    ({"scene": "synthetic", "focal_y": 130.0}, Camera(131.25, 130.0, 80.0, 60.0, 131.25)),
    ({}, Camera(65.625, 65.625, 40.0, 32.0, 65.625)),  # the tiny scene's intrinsics.txt
])
def test_cli_intrinsics_precedence(tiny_scene, given, expected):
    from scripts.prepare_7scenes import INTRINSIC_FLAGS, camera_from_args

    args = SimpleNamespace(dataset_folder=str(tiny_scene.dataset), scene=None, config=None,
                           **{k: None for k in INTRINSIC_FLAGS})
    vars(args).update(given)
    assert camera_from_args(args)[0] == expected
