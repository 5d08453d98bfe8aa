"""The synthetic scene generator: determinism, 7-Scenes layout, file formats, geometry, paths."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("open3d", reason="Open3D (pip install -e .[vis]) renders the synthetic scene")

from common.data.synthetic import (
    NO_DEPTH,
    SceneSettings,
    intrinsics_for,
    make_scene,
    render,
    sequence_poses,
    write_scene,
)
from common.errors import InputError
from common.formats import read_matrix_file
from common.poses import check_rigid

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_synthetic_scene.py"


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _backproject(depth_mm, pose_cw, width, height):
    """(pixels x, y, world points [N, 3]) of the pixels with depth."""
    f, cx, cy = intrinsics_for(width, height)
    ys, xs = np.nonzero(depth_mm != NO_DEPTH)
    z = depth_mm[ys, xs] / 1000.0
    cam = np.stack([(xs - cx) / f * z, (ys - cy) / f * z, z], -1)
    return xs, ys, cam @ pose_cw[:3, :3].T + pose_cw[:3, 3]


def _rotation_deg(pose, poses):
    cos = (np.einsum("ij,nij->n", pose[:3, :3], poses[:, :3, :3]) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_intrinsics_scale_with_width():
    assert intrinsics_for(640, 480) == (525.0, 320.0, 240.0)
    assert intrinsics_for(160, 120) == (131.25, 80.0, 60.0)
    assert intrinsics_for(80, 64) == (65.625, 40.0, 32.0)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    settings = SceneSettings(width=48, height=32, frames=3, sequences=2, seed=3)
    assert write_scene(tmp_path / "a", settings, progress=False)
    assert write_scene(tmp_path / "b", settings, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 2 * 3 * 3 + 4 and a == b
    other = SceneSettings(width=48, height=32, frames=3, sequences=2, seed=4)
    write_scene(tmp_path / "c", other, progress=False)
    first = Path("seq-01/frame-000000.color.png")
    assert _files(tmp_path / "c")[first] != a[first]


def test_layout_and_formats(tiny_scene):
    root = tiny_scene.dataset
    assert (root / "TrainSplit.txt").read_text() == "sequence1\nsequence2\n"
    assert (root / "TestSplit.txt").read_text() == "sequence3\n"
    intrinsics = [float(v) for v in (root / "intrinsics.txt").read_text().split()]
    assert intrinsics == [65.625, 65.625, 40.0, 32.0]
    assert sorted(p.name for p in root.glob("seq-*")) == ["seq-01", "seq-02", "seq-03"]
    for seq in ("seq-01", "seq-02", "seq-03"):
        names = sorted(p.name for p in (root / seq).iterdir())
        assert names == sorted(f"frame-{k:06d}.{kind}" for k in range(12)
                               for kind in ("color.png", "depth.png", "pose.txt"))
    frame = root / "seq-02" / "frame-000007"
    with Image.open(f"{frame}.color.png") as img:
        assert (img.mode, img.size) == ("RGB", (80, 64))
    depth = cv2.imread(f"{frame}.depth.png", cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.shape == (64, 80)
    assert check_rigid(read_matrix_file(f"{frame}.pose.txt"), tol=1e-8) is None


def test_depth_lies_on_the_boxes_and_dropouts_are_65535(tiny_scene):
    """Back-projected depth pixels land on a box face (registered depth, OpenCV pixel centres)."""
    boxes = make_scene(tiny_scene.settings.seed).boxes_n23.astype(np.float64)
    holes = total = 0
    tol = 1.5e-3  # depth is rounded to millimetres
    for seq in ("seq-01", "seq-03"):
        for k in (0, 11):
            stem = tiny_scene.dataset / seq / f"frame-{k:06d}"
            depth = cv2.imread(f"{stem}.depth.png", cv2.IMREAD_UNCHANGED)
            assert not np.any(depth == 0)
            assert 300 <= depth[depth != NO_DEPTH].min() and depth[depth != NO_DEPTH].max() <= 5000
            _, _, points = _backproject(depth, read_matrix_file(f"{stem}.pose.txt"), 80, 64)
            on_face = np.zeros(len(points), dtype=bool)
            for lo, hi in boxes:
                inside = np.all((points > lo - tol) & (points < hi + tol), axis=1)
                near = (np.abs(points - lo) < tol) | (np.abs(points - hi) < tol)
                on_face |= inside & np.any(near, axis=1)
            assert on_face.all()
            holes += int(np.sum(depth == NO_DEPTH))
            total += depth.size
    assert 0.005 < holes / total < 0.04  # the room is closed: holes are the ~1.5 % dropouts


def test_render_matches_written_frames(tiny_scene):
    settings = tiny_scene.settings
    stem = tiny_scene.dataset / "seq-03" / "frame-000005"
    pose = sequence_poses(settings, 2)[5]
    assert np.allclose(pose, read_matrix_file(f"{stem}.pose.txt"), atol=1e-9)
    noise = np.random.default_rng([settings.seed, 2, 2, 5])
    rgb, depth = render(make_scene(settings.seed), pose, 80, 64, noise)
    assert np.array_equal(cv2.imread(f"{stem}.color.png")[:, :, ::-1], rgb)
    assert np.array_equal(cv2.imread(f"{stem}.depth.png", cv2.IMREAD_UNCHANGED), depth)


@pytest.mark.parametrize("frames", [200, 12])
def test_consecutive_frames_move_little(frames):
    """Re-projected depth moves ~1-2 % of the image width per frame, well inside OFlowNet's
    ±4 cells (5 % of a 640-wide image), over a whole loop at the fastest default speed."""
    width, height = 80, 64
    f, cx, cy = intrinsics_for(width, height)
    scene = make_scene(0)
    poses = sequence_poses(SceneSettings(width=width, height=height, frames=frames), 0)
    medians, tails = [], []
    for k in range(0, frames - 1, 2 if frames > 50 else 1):
        _, depth = render(scene, poses[k], width, height, np.random.default_rng(k))
        xs, ys, world = _backproject(depth, poses[k], width, height)
        cam = (world - poses[k + 1][:3, 3]) @ poses[k + 1][:3, :3]
        u, v = f * cam[:, 0] / cam[:, 2] + cx, f * cam[:, 1] / cam[:, 2] + cy
        shift = np.hypot(u - xs, v - ys) / width
        medians.append(np.median(shift))
        tails.append(np.percentile(shift, 99))
    assert 0.005 < np.mean(medians) < 0.025
    assert max(medians) < 0.03 and max(tails) < 0.04


def test_sequences_walk_the_same_loop_with_different_noise():
    settings = SceneSettings(width=160, height=120, frames=300, sequences=3)
    seqs = [sequence_poses(settings, s) for s in range(3)]
    for i, mine in enumerate(seqs):
        # The whole loop is walked: camera centres cover every 10° sector around the room.
        x, y = mine[:, 0, 3], mine[:, 1, 3]
        sectors = np.floor(np.degrees(np.arctan2(y / 0.8, x / 1.2)) % 360 / 10)
        assert len(np.unique(sectors)) == 36
        for j, other in enumerate(seqs):
            if i == j:
                continue
            dists, angles = [], []
            for pose in mine:
                d = np.linalg.norm(other[:, :3, 3] - pose[:3, 3], axis=1)
                a = _rotation_deg(pose, other)
                k = np.argmin(d / 0.1 + a / 5.0)
                dists.append(d[k])
                angles.append(a[k])
            # Every view has a close view in the other sequence, but the paths are not the same.
            assert max(dists) < 0.2 and max(angles) < 10.0
            assert np.median(dists) > 0.01 or np.median(angles) > 1.0


@pytest.mark.parametrize("room", ["table", "studio"])
def test_more_test_sequences_leave_the_others_as_they_were(room):
    # The demo moved from --sequences 3 --test_sequences 1 to 5 and 3: the training sequences and
    # the first test sequence must be the same paths, so that its models and numbers carry over.
    few = SceneSettings(width=160, height=120, frames=300, sequences=3, test_sequences=1,
                        loop_frames=100, room=room)
    more = SceneSettings(width=160, height=120, frames=300, sequences=5, test_sequences=3,
                         loop_frames=100, room=room)
    for s in range(3):
        np.testing.assert_array_equal(sequence_poses(few, s), sequence_poses(more, s))
    added = [sequence_poses(more, s) for s in (3, 4)]
    for poses in added:  # the added test sequences are other paths
        assert np.abs(poses[:, :3, 3] - sequence_poses(more, 2)[:, :3, 3]).max() > 0.05


def test_bad_settings_are_input_errors(tmp_path):
    for settings, flag in ((SceneSettings(width=84, height=64), "--size"),
                           (SceneSettings(frames=1), "--frames"),
                           (SceneSettings(sequences=2, test_sequences=2), "--test_sequences")):
        with pytest.raises(InputError, match=flag):
            write_scene(tmp_path / "x", settings, progress=False)
    assert not (tmp_path / "x").exists()


def test_changed_settings_replace_an_earlier_output(tmp_path):
    out = tmp_path / "scene"
    write_scene(out, SceneSettings(width=16, height=16, frames=3, sequences=3), progress=False)
    (out / "notes.txt").write_text("mine")
    write_scene(out, SceneSettings(width=16, height=16, frames=2, sequences=2), progress=False)
    assert sorted(p.name for p in out.glob("seq-*")) == ["seq-01", "seq-02"]
    assert len(list((out / "seq-01").iterdir())) == 6
    assert (out / "TestSplit.txt").read_text() == "sequence2\n"
    assert (out / "notes.txt").read_text() == "mine"


def _cli(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_cli_writes_then_does_nothing_and_refuses_foreign_folders(tmp_path):
    out = tmp_path / "scene"
    args = ["--output_folder", str(out), "--size", "16x16", "--frames", "2", "--sequences", "2"]
    first = _cli(*args, "--no_progress")
    assert first.returncode == 0, first.stderr
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = _cli(*args, "--no_progress")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.txt").write_text("x")
    bad = _cli("--output_folder", str(foreign), "--no_progress")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error:") and len(bad.stderr.strip().splitlines()) == 1
    assert str(foreign) in bad.stderr and sorted(p.name for p in foreign.iterdir()) == ["data.txt"]

    odd = _cli("--output_folder", str(tmp_path / "odd"), "--size", "20x16")
    assert odd.returncode == 2 and odd.stderr.startswith("error: --size 20x16")
