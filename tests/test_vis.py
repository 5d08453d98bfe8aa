"""vis/ scripts: each one run with --save on generated files of a synthetic room, plus the math.

Generated inputs: a 4 × 2.4 × 4 m box room seen from inside by 320×240 cameras (40×30 maps),
scene coordinates with known confidences, images textured by wall and checkerboard, a flow
field of a known shift, and pose files whose errors are known.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Pictures and videos need the "vis" extra (pip install -e .[vis]); CI installs it.
pytest.importorskip("matplotlib", reason="the vis/ scripts draw with matplotlib (pip install -e .[vis])")
pytest.importorskip("imageio", reason="the vis/ scripts write pictures with imageio (pip install -e .[vis])")

from common.formats import PoseRecord, write_pose_file, write_tum

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["scene_coordinates", "scene_coordinates_list", "optical_flow", "optical_flow_list",
           "uncertainty", "trajectory"]
needs_open3d = pytest.mark.skipif(importlib.util.find_spec("open3d") is None,
                                  reason="Open3D renderer (pip install -e .[vis])")
W, H, F = 320, 240, 262.5
ROOM_LO, ROOM_HI = np.array([-2.0, -1.2, -2.0]), np.array([2.0, 1.2, 2.0])  # y points down


# ---------------------------------------------------------------- the synthetic room

def camera_pose(k, n=8):
    """Camera-to-world pose of frame k on an arc through the room, looking at +z and 15° down."""
    yaw, pitch = np.radians(-35 + 70 * k / max(n - 1, 1)), np.radians(15)
    forward = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    right = np.array([np.cos(yaw), 0.0, -np.sin(yaw)])
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
    pose[:3, 3] = [0.8 * np.sin(yaw), -0.3, -1.2 + 0.3 * k / max(n - 1, 1)]
    return pose


def cast(pose_cw, xs, ys):
    """World points where the rays through pixels (xs, ys) leave the box room."""
    d_cam = np.stack([(xs - W / 2) / F, (ys - H / 2) / F, np.ones_like(xs, dtype=float)], -1)
    d = d_cam @ pose_cw[:3, :3].T
    o = pose_cw[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d > 0, (ROOM_HI - o) / d, np.where(d < 0, (ROOM_LO - o) / d, np.inf))
    return o + np.min(t, axis=-1, keepdims=True) * d


def coord_map(pose_cw, conf_scale=1.0):
    """[30, 40, 4] float32 map: scene coordinates of the cell pixels (8j, 8i) and a confidence 10..210 (1/m)."""
    jj, ii = np.meshgrid(np.arange(W // 8), np.arange(H // 8))
    xyz = cast(pose_cw, 8.0 * jj, 8.0 * ii)
    r = np.hypot((jj - 19.5) / 20, (ii - 14.5) / 15)
    conf = conf_scale * (10 + 200 * np.clip(1 - r, 0, 1))
    return np.concatenate([xyz, conf[..., None]], -1).astype(np.float32)


def room_image(pose_cw):
    """[240, 320, 3] uint8 picture: each wall its own colour, with a 25 cm checkerboard."""
    xs, ys = np.meshgrid(np.arange(W, dtype=float), np.arange(H, dtype=float))
    p = cast(pose_cw, xs, ys)
    wall = np.argmin(np.minimum(np.abs(p - ROOM_LO), np.abs(p - ROOM_HI)), axis=-1)
    palette = np.array([[200, 80, 60], [90, 170, 90], [70, 110, 200]], dtype=float)
    cells = np.floor(p / 0.25).astype(int)
    # The wall's own axis is left out: on the wall it sits on a 0.25 m boundary.
    in_plane = cells.sum(-1) - np.take_along_axis(cells, wall[..., None], -1)[..., 0]
    checker = (in_plane % 2)[..., None]
    return (palette[wall] * (0.6 + 0.4 * checker)).astype(np.uint8)


def write_png(path, rgb):
    import cv2

    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def flow_map(du=-2.0, dv=-1.0):
    """[30, 40, 3] float32 flow of a constant shift (cells), confidence 50 left half, 150 right."""
    flow = np.zeros((H // 8, W // 8, 3), np.float32)
    flow[..., 0], flow[..., 1] = du, dv
    flow[..., 2] = np.where(np.arange(W // 8) < W // 16, 50.0, 150.0)
    return flow


def camera_flow(pose_prev, pose_k):
    """[30, 40, 3] float32 flow of the room between two cameras (cells, frame k-1 → frame k, as
    flow files hold it) and a confidence 1/σ_q falling from 300 at the image centre to 20 at the
    corners."""
    coord = coord_map(pose_prev)
    rel = (coord[..., :3] - pose_k[:3, 3]) @ pose_k[:3, :3]
    x_k, y_k = F * rel[..., 0] / rel[..., 2] + W / 2, F * rel[..., 1] / rel[..., 2] + H / 2
    jj, ii = np.meshgrid(np.arange(W // 8), np.arange(H // 8))
    u, v = (x_k - 8 * jj) / 8, (y_k - 8 * ii) / 8
    conf = 20 + 280 * (coord[..., 3] - 10) / 200
    return np.stack([u, v, conf], -1).astype(np.float32)


# ---------------------------------------------------------------- running scripts

def run_script(name, *args, timeout=180, env=None):
    env = dict(os.environ, MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return subprocess.run([sys.executable, str(ROOT / "vis" / f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
                          check=False)


def read_image(path):
    """[H, W, 3] uint8 pixels of a saved picture or [N, H, W, 3] frames of a video."""
    import imageio.v3 as iio

    pixels = iio.imread(path, index=None) if Path(path).suffix == ".gif" else iio.imread(path)
    return pixels[..., :3]


def assert_picture(path, size_wh):
    """The file exists, has exactly size_wh pixels and is not blank; returns its pixels."""
    assert Path(path).is_file(), f"{path} was not written"
    pixels = read_image(path)
    assert pixels.shape[-3:-1] == (size_wh[1], size_wh[0])
    assert pixels.std() > 10, f"{path} looks blank (pixel std {pixels.std():.1f})"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    return pixels


def assert_input_error(result, *words):
    """Exit code 2 with one `error: ...` line naming the problem, and no traceback."""
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0]


def cloud_mask(pixels_hw3):
    """Pixels of the point-cloud area (inside the render box) that are not background."""
    from vis.pointcloud import BACKGROUND

    h, w = pixels_hw3.shape[:2]
    area = pixels_hw3[int(0.1 * h):int(0.98 * h), int(0.02 * w):int(0.84 * w)].astype(int)
    return np.abs(area - np.round(255 * np.array(BACKGROUND))).sum(-1) > 30


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Maps, images, flows, a KFNet output folder and pose files of the synthetic room."""
    root = tmp_path_factory.mktemp("vis")
    (root / "maps").mkdir()
    (root / "flows").mkdir()
    n = 4
    poses = [camera_pose(k, n) for k in range(n)]
    for k, pose in enumerate(poses):
        np.save(root / "maps" / f"coord_{k}.npy", coord_map(pose))
        write_png(root / f"img_{k}.png", room_image(pose))
        if k:
            np.save(root / "flows" / f"{k - 1}_{k}_flow.npy", camera_flow(poses[k - 1], pose))
    (root / "image_list.txt").write_text("".join(f"img_{k}.png\n" for k in range(n)))

    image = room_image(poses[1])
    write_png(root / "shift_a.png", image)
    # Frame k's content sits 16 px right and 8 px down of frame k-1's: flow (2, 1) cells.
    write_png(root / "shift_b.png", np.roll(image, (8, 16), axis=(0, 1)))
    np.save(root / "shift_flow.npy", flow_map(2.0, 1.0))

    out = root / "out"
    for sub in ("measurement", "prior"):
        (out / sub).mkdir(parents=True)
    for k, pose in enumerate(poses):
        const = coord_map(pose)
        for folder, conf in ((out / "measurement", 25.0), (out / "prior", 40.0), (out, 50.0)):
            if folder.name == "prior" and k == 0:
                continue  # the first frame of a sequence has no prior
            const[..., 3] = conf
            np.save(folder / f"coord_{k}.npy", const)
        if k:
            flow = camera_flow(poses[k - 1], pose)
            flow[..., 2] = 100.0
            np.save(out / f"{k - 1}_{k}_flow.npy", flow)
    return root


def loop_pose(k, n):
    """Ground-truth camera-to-world pose k of n on a 1.2 m × 0.8 m ellipse, y down."""
    a = 2 * np.pi * k / n
    forward = np.array([np.cos(a), 0.0, np.sin(a)])
    right = np.array([np.sin(a), 0.0, -np.cos(a)])
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
    pose[:3, 3] = [1.2 * np.sin(a), -0.2, 0.8 * np.cos(a)]
    return pose


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    """20 ground-truth poses; estimates 5 cm off along x, turned 2° about z; frames 3, 7 failed."""
    root = tmp_path_factory.mktemp("traj")
    n, turn = 20, np.radians(2.0)
    rot_z = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0], [0, 0, 1]])
    records, gt_records = [], []
    for k in range(n):
        gt = loop_pose(k, n)
        np.savetxt(root / f"frame-{k:06d}.pose.txt", gt)
        gt_records.append(PoseRecord(k, f"img_{k}.png", pose_cw=gt))
        if k in (3, 7):
            records.append(PoseRecord(k, f"img_{k}.png", failure="too few inliers"))
            continue
        est = gt.copy()
        est[:3, :3] = rot_z @ gt[:3, :3]
        est[0, 3] += 0.05
        records.append(PoseRecord(k, f"img_{k}.png", pose_cw=est))
    (root / "pose_list.txt").write_text("".join(f"frame-{k:06d}.pose.txt\n" for k in range(n)))
    write_pose_file(root / "poses.txt", records)
    write_tum(root / "poses_tum.txt", records, timestamps=100 + 0.1 * np.arange(n) + 0.005)
    write_tum(root / "gt_tum.txt", gt_records, timestamps=100 + 0.1 * np.arange(n))
    return root


# ---------------------------------------------------------------- every script

@pytest.mark.parametrize("name", SCRIPTS)
def test_help_as_file_and_module(name):
    for how in ([f"vis/{name}.py"], ["-m", f"vis.{name}"]):
        cmd = [sys.executable, *how, "--help"]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stderr
        assert "usage:" in result.stdout and "--save" in result.stdout


@needs_open3d
def test_scene_coordinates_open3d_filters_by_confidence(scene, tmp_path):
    coord = np.load(scene / "maps" / "coord_1.npy")
    pictures = {}
    for thres in (0, 100):
        out = tmp_path / f"t{thres}.png"
        result = run_script("scene_coordinates", scene / "maps" / "coord_1.npy", "--thres", thres,
                            "--size", "640x480", "--renderer", "open3d", "--save", out)
        assert result.returncode == 0, result.stderr
        assert f"kept {int((coord[..., 3] > thres).sum())} of 1200 points" in result.stdout
        pictures[thres] = assert_picture(out, (640, 480))
    # The confidence filter removes the map's edge cells (confidence 10..110), so fewer points show.
    assert cloud_mask(pictures[100]).sum() < 0.8 * cloud_mask(pictures[0]).sum()


@needs_open3d
def test_scene_coordinates_matplotlib_draws_the_same_view(scene, tmp_path):
    masks = []
    for renderer in ("open3d", "matplotlib"):
        out = tmp_path / f"{renderer}.png"
        result = run_script("scene_coordinates", scene / "maps" / "coord_2.npy", "--color",
                            "position", "--size", "640x480", "--renderer", renderer, "--save", out)
        assert result.returncode == 0, result.stderr
        masks.append(cloud_mask(assert_picture(out, (640, 480))))
    centres = [np.argwhere(m).mean(axis=0) for m in masks]
    assert np.linalg.norm(centres[0] - centres[1]) < 5.0  # pixels
    assert abs(masks[0].sum() / masks[1].sum() - 1) < 0.6


def test_scene_coordinates_falls_back_when_open3d_cannot_start(scene, tmp_path):
    fake = tmp_path / "fake" / "open3d"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no renderer here')\n")
    env = {"PYTHONPATH": str(fake.parent)}
    out = tmp_path / "fallback.png"
    result = run_script("scene_coordinates", scene / "maps" / "coord_0.npy", "--size", "480x360",
                        "--save", out, env=env)
    assert result.returncode == 0, result.stderr
    assert "no renderer here" in result.stdout
    assert "drawing with matplotlib instead" in result.stdout
    assert cloud_mask(assert_picture(out, (480, 360))).sum() > 1000
    result = run_script("scene_coordinates", scene / "maps" / "coord_0.npy", "--renderer", "open3d",
                        "--save", tmp_path / "none.png", env=env)
    assert_input_error(result, "Open3D offscreen rendering failed")
    assert not (tmp_path / "none.png").exists()


def test_scene_coordinates_bad_input(scene, tmp_path):
    coord, png = scene / "maps" / "coord_0.npy", tmp_path / "a.png"
    assert_input_error(run_script("scene_coordinates", tmp_path / "missing.npy", "--save", png),
                       "missing.npy")
    assert_input_error(run_script("scene_coordinates", coord, "--thres", 1000, "--save", png),
                       "--thres")
    assert_input_error(run_script("scene_coordinates", coord), "--save")  # no display here
    assert not list(tmp_path.iterdir())


def test_scene_coordinates_list_accumulates(scene, tmp_path):
    out = tmp_path / "seq.gif"
    result = run_script("scene_coordinates_list", scene / "maps", "--size", "480x360",
                        "--save", out)
    assert result.returncode == 0, result.stderr
    frames = assert_picture(out, (480, 360))
    assert frames.shape[0] == 4
    counts = [cloud_mask(f).sum() for f in frames]
    assert counts[-1] > 1.5 * counts[0]

    listing = tmp_path / "maps.txt"
    listing.write_text(f"{scene / 'maps' / 'coord_3.npy'}\n{scene / 'maps' / 'coord_0.npy'}\n")
    result = run_script("scene_coordinates_list", listing, "--renderer", "matplotlib", "--size",
                        "480x360", "--save", tmp_path / "all.png")
    assert result.returncode == 0, result.stderr
    assert "2 maps" in result.stdout
    assert_picture(tmp_path / "all.png", (480, 360))


def test_scene_coordinates_list_bad_input(tmp_path):
    assert_input_error(run_script("scene_coordinates_list", tmp_path / "nothing",
                                  "--save", tmp_path / "a.gif"), "nothing")
    assert_input_error(run_script("scene_coordinates_list", tmp_path, "--save", tmp_path / "a.gif"),
                       "coord_")


def test_optical_flow_of_a_known_shift(scene, tmp_path):
    out = tmp_path / "flow.png"
    result = run_script("optical_flow", scene / "shift_a.png", scene / "shift_b.png",
                        scene / "shift_flow.npy", "--size", "1000x440", "--thres", 100, "--save", out)
    assert result.returncode == 0, result.stderr
    assert "600 of 1200 cells with confidence > 100" in result.stdout  # right half: 150
    pixels = assert_picture(out, (1000, 440))
    # The colour panel (right half) shows confident cells in the colour of the flow (16, 8) px.
    from vis.helpers import flow_colors

    want = np.round(255 * flow_colors(16.0, 8.0, np.hypot(16, 8)))
    right = pixels[:, 500:].reshape(-1, 3).astype(int)
    assert (np.abs(right - want).sum(-1) <= 3).sum() > 0.1 * len(right)


def test_optical_flow_bad_input(scene, tmp_path):
    assert_input_error(run_script("optical_flow", scene / "img_0.png", scene / "img_1.png",
                                  tmp_path / "missing_flow.npy", "--save", tmp_path / "a.png"),
                       "missing_flow.npy")
    small = tmp_path / "small.png"
    write_png(small, np.zeros((64, 80, 3), np.uint8))
    assert_input_error(run_script("optical_flow", scene / "img_0.png", small,
                                  scene / "shift_flow.npy", "--save", tmp_path / "a.png"),
                       "differ in size")


def test_optical_flow_list(scene, tmp_path):
    out = tmp_path / "flows.gif"
    result = run_script("optical_flow_list", scene / "flows", "--images", scene,
                        "--size", "800x350", "--save", out)
    assert result.returncode == 0, result.stderr
    assert assert_picture(out, (800, 350)).shape[0] == 3
    assert_input_error(run_script("optical_flow_list", scene / "flows", "--images",
                                  tmp_path / "image_list.txt", "--save", out), "image_list.txt")


def test_video_mp4_or_clear_error(scene, tmp_path):
    from vis.helpers import mp4_available

    out = tmp_path / "flows.mp4"
    result = run_script("optical_flow_list", scene / "flows", "--images", scene / "image_list.txt",
                        "--size", "800x350", "--save", out)
    if not mp4_available():
        assert_input_error(result, "imageio-ffmpeg", ".gif")
        return
    assert result.returncode == 0, result.stderr
    import imageio.v3 as iio

    frames = iio.imread(out, index=None, plugin="FFMPEG")
    assert frames.shape == (3, 350, 800, 3) and frames.std() > 10


def test_uncertainty_panels_and_missing_prior(scene, tmp_path):
    out = tmp_path / "unc.png"
    result = run_script("uncertainty", scene / "out", "--index", 2, "--flow_folder", scene / "out",
                        "--image", scene / "img_2.png", "--size", "1200x300", "--save", out)
    assert result.returncode == 0, result.stderr
    for line in ("measurement: median σ 4.00 cm", "prior: median σ 2.50 cm",
                 "posterior: median σ 2.00 cm", "process: median σ 1.00 cm"):
        assert line in result.stdout
    assert_picture(out, (1200, 300))

    result = run_script("uncertainty", scene / "out", "--index", 0, "--units", "confidence",
                        "--save", tmp_path / "first.png")
    assert result.returncode == 0, result.stderr
    assert "note: no prior map" in result.stdout and "prior: median" not in result.stdout
    assert read_image(tmp_path / "first.png").shape[1] == 1600


def test_uncertainty_bad_input(scene, tmp_path):
    png = tmp_path / "a.png"
    assert_input_error(run_script("uncertainty", tmp_path / "absent", "--index", 1, "--save", png),
                       "absent")
    assert_input_error(run_script("uncertainty", scene / "out", "--index", 99, "--save", png),
                       "frame 99")


def test_trajectory_errors_and_picture(trajectories, tmp_path):
    out = tmp_path / "traj.png"
    result = run_script("trajectory", trajectories / "poses.txt", "--gt",
                        trajectories / "pose_list.txt", "--size", "900x700", "--save", out)
    assert result.returncode == 0, result.stderr
    assert "18 of 20 frames with an estimate; median error 5.00 cm, 2.00 deg" in result.stdout
    pixels = assert_picture(out, (900, 700))
    # The seed's colours: ground truth blue, estimate red (matplotlib's tab:blue, tab:red).
    for colour in ((31, 119, 180), (214, 39, 40)):
        assert (np.abs(pixels.astype(int) - colour).sum(-1) < 20).sum() > 100


def test_trajectory_tum_files_and_video(trajectories, tmp_path):
    out = tmp_path / "traj.gif"
    result = run_script("trajectory", trajectories / "poses_tum.txt", "--gt",
                        trajectories / "gt_tum.txt", "--max_frames", 5, "--size", "600x450",
                        "--save", out)
    assert result.returncode == 0, result.stderr
    assert "18 of 20 frames with an estimate; median error 5.00 cm, 2.00 deg" in result.stdout
    assert assert_picture(out, (600, 450)).shape[0] == 5


def test_trajectory_bad_input(trajectories, tmp_path):
    png = tmp_path / "a.png"
    assert_input_error(run_script("trajectory", tmp_path / "none.txt", "--save", png), "none.txt")
    short = tmp_path / "short_list.txt"
    short.write_text("".join(f"{trajectories}/frame-{k:06d}.pose.txt\n" for k in range(5)))
    assert_input_error(run_script("trajectory", trajectories / "poses.txt", "--gt", short,
                                  "--save", tmp_path / "a.png"), "frame 5")


# ---------------------------------------------------------------- the math

def test_flow_colour_wheel_exact():
    from vis.helpers import flow_colors

    np.testing.assert_allclose(flow_colors(1.0, 0.0, 1.0), [1, 0, 0], atol=1e-12)  # right: red
    np.testing.assert_allclose(flow_colors(-1.0, 0.0, 1.0), [0, 1, 1], atol=1e-12)  # left: cyan
    np.testing.assert_allclose(flow_colors(0.0, 1.0, 1.0), [0.5, 1, 0], atol=1e-12)  # down
    np.testing.assert_allclose(flow_colors(0.0, 0.0, 1.0), [1, 1, 1], atol=1e-12)  # none: white
    np.testing.assert_allclose(flow_colors(0.5, 0.0, 1.0), [1, 0.5, 0.5], atol=1e-12)  # half: pale


def test_confidence_colours_are_log_scaled():
    import matplotlib

    from vis.helpers import confidence_colors

    cmap = matplotlib.colormaps["viridis"]
    got = confidence_colors(np.array([10.0, 100.0, 1000.0, 5.0]), 10.0, 1000.0)
    want = cmap(np.array([0.0, 0.5, 1.0, 0.0]))[:, :3]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_map_axes_of_a_plane_and_of_the_room():
    from vis.pointcloud import map_axes

    jj, ii = np.meshgrid(np.arange(5), np.arange(4))
    plane = np.stack([0.1 * jj, 0.1 * ii, np.full(jj.shape, 2.0)], -1)
    forward, down = map_axes(plane, np.ones((4, 5), bool))
    np.testing.assert_allclose(forward, [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(down, [0, 1, 0], atol=1e-12)

    pose = camera_pose(3)
    forward, down = map_axes(coord_map(pose)[..., :3], np.ones((30, 40), bool))
    assert forward @ pose[:3, 2] > 0.95 and down @ pose[:3, 1] > 0.9


def test_projection_puts_the_view_centre_mid_picture():
    from vis.pointcloud import View, project

    view = View(eye=np.array([0.0, 0, -2]), centre=np.zeros(3), up=np.array([0.0, -1, 0]), fov=90.0)
    pixels, depth = project(view, np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]]), (200, 100))
    # f = 50 px for a 90° vertical field of view over 100 rows; x right, y down.
    np.testing.assert_allclose(pixels, [[100, 50], [125, 50], [100, 75]], atol=1e-9)
    np.testing.assert_allclose(depth, [2, 2, 2])


def test_frame_index_and_numeric_order(tmp_path):
    from vis.helpers import frame_index, list_maps

    assert frame_index("coord_12.npy") == 12 and frame_index("3_4_flow.npy") == 4
    for k in (10, 2, 1):
        np.save(tmp_path / f"coord_{k}.npy", np.zeros((2, 2, 4), np.float32))
    assert [Path(p).name for p in list_maps(tmp_path, "coord_*.npy")] == \
        ["coord_1.npy", "coord_2.npy", "coord_10.npy"]


def test_top_view_frame_is_horizontal():
    from vis.trajectory import top_view_frame

    poses = np.stack([loop_pose(k, 12) for k in range(12)])
    axes, origin = top_view_frame(poses)
    np.testing.assert_allclose(axes[2], [0, -1, 0], atol=1e-12)  # up = −y of cameras with y down
    np.testing.assert_allclose(axes @ axes.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(axes) > 0
    np.testing.assert_allclose(origin, [0, -0.2, 0], atol=1e-12)
