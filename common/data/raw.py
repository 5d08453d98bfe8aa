"""Readers of raw RGB-D downloads into `SourceFrame`s: TUM RGB-D, a generic layout, 12-Scenes,
and 7-Scenes with calibrated depth→RGB registration or SfM pseudo ground truth.

All poses come out camera-to-world in metres; errors name the file (and line) at fault.
"""

import math
import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from common.data.prepare import Camera, list_frames, read_split
from common.data.rgbd import SEVEN_SCENES_DEPTH_TO_RGB, SourceFrame, interpolate_pose
from common.errors import InputError
from common.formats import read_matrix_file, read_tum
from common.poses import invert_rigid, quaternion_to_rotation

# ---- TUM RGB-D ---------------------------------------------------------------------------------

# Colour intrinsics (fx, fy, cx, cy) of the three Kinects, from the dataset's file-format page;
# depth is registered to colour and stored at 5000 units per metre. fr1/fr2 images carry lens
# distortion that is not undone here.
TUM_INTRINSICS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}
TUM_DEPTH_SCALE = 5000.0


def read_stamped_list(path):
    """[(timestamp, path)] of a TUM rgb.txt / depth.txt (`timestamp filename`, '#' comments),
    paths resolved against the file's folder, sorted by time."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError:
        raise InputError(f"cannot read {path}") from None
    out = []
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            if len(parts) != 2:
                raise ValueError
            out.append((float(parts[0]), path.parent / parts[1]))
        except ValueError:
            raise InputError(f"{path} line {n}: expected 'timestamp filename'") from None
    if not out:
        raise InputError(f"{path} lists no frames")
    return sorted(out, key=lambda e: e[0])


def tum_camera_name(folder):
    """'freiburg1'… from a TUM sequence folder name (rgbd_dataset_freiburg1_xyz), or None."""
    match = re.search(r"(freiburg[123]|fr[123])(?![0-9])", Path(folder).resolve().name)
    return None if match is None else "freiburg" + match.group(1)[-1]


def tum_sequence(folder, tolerance=0.02, max_gap=0.1):
    """(frames, {'no depth': n, 'no pose': n}) of one TUM sequence folder.

    Each colour image takes the depth image nearest in time (within `tolerance` seconds) and
    the ground-truth pose interpolated at its own time (samples at most `max_gap` apart).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"TUM sequence folder not found: {folder}")
    rgb = read_stamped_list(folder / "rgb.txt")
    depth = read_stamped_list(folder / "depth.txt")
    gt_file = folder / "groundtruth.txt"
    if not gt_file.is_file():
        raise InputError(f"TUM sequence {folder} has no groundtruth.txt")
    stamps, poses = read_tum(gt_file)
    if len(stamps) < 2:
        raise InputError(f"{gt_file} holds fewer than two poses")
    order = np.argsort(stamps, kind="stable")
    stamps, poses = stamps[order], poses[order]
    depth_t = np.array([t for t, _ in depth])
    frames, skipped = [], {"no depth": 0, "no pose": 0}
    for t, image in rgb:
        k = int(np.argmin(np.abs(depth_t - t)))
        if abs(depth_t[k] - t) > tolerance:
            skipped["no depth"] += 1
            continue
        pose = interpolate_pose(stamps, poses, t, max_gap)
        if pose is None:
            skipped["no pose"] += 1
            continue
        for needed in (image, depth[k][1]):
            if not needed.is_file():
                raise InputError(f"{needed} (listed in {needed.parent.parent}) not found")
        frames.append(SourceFrame(image, depth[k][1], pose, folder.name, image.stem, t))
    return frames, skipped


# ---- Generic layout ----------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_intrinsics(path):
    """(fx, fy, cx, cy) of a file holding those four numbers."""
    try:
        values = [float(v) for v in Path(path).read_text().split()]
    except (OSError, ValueError):
        raise InputError(f"cannot read intrinsics file {path} (four numbers: fx fy cx cy)") from None
    if len(values) != 4:
        raise InputError(f"intrinsics file {path} holds {len(values)} numbers, expected 4: "
                         f"fx fy cx cy")
    return tuple(values)


def generic_sequence(folder):
    """Frames of one sequence folder with rgb/, depth/ and poses/ (matched by file stem)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"sequence folder not found: {folder}")
    for sub in ("rgb", "depth", "poses"):
        if not (folder / sub).is_dir():
            raise InputError(f"sequence folder {folder} has no {sub}/ folder")
    images = sorted(p for p in (folder / "rgb").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise InputError(f"no .png/.jpg images in {folder / 'rgb'}")
    frames = []
    for image in images:
        depth, pose = folder / "depth" / f"{image.stem}.png", folder / "poses" / f"{image.stem}.txt"
        for needed in (depth, pose):
            if not needed.is_file():
                raise InputError(f"image {image} has no {needed.parent.name}/{needed.name}: "
                                 f"{needed} not found")
        frames.append(SourceFrame(image, depth, read_matrix_file(pose), folder.name, image.stem))
    return frames


# ---- 12-Scenes ---------------------------------------------------------------------------------

def read_info(path):
    """{key: [values]} of a 12-Scenes info.txt (`m_key = v1 v2 …`)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        raise InputError(f"cannot read {path}") from None
    info = {}
    for line in lines:
        if "=" in line:
            key, _, value = line.partition("=")
            info[key.strip()] = value.split()
    return info


def twelve_scenes_camera(info_path, out_wh):
    """(Camera at out_wh = (W, H), depth units per metre, source (W, H)) from info.txt: the
    colour intrinsics scaled to out_wh (pixel centres at integers); depth registered."""
    info = read_info(info_path)
    try:
        w, h = int(info["m_colorWidth"][0]), int(info["m_colorHeight"][0])
        k = [float(v) for v in info["m_calibrationColorIntrinsic"]]
        fx, cx, fy, cy = k[0], k[2], k[5], k[6]
        shift = float(info.get("m_depthShift", ["1000"])[0])
    except (KeyError, IndexError, ValueError):
        raise InputError(f"{info_path} lacks m_colorWidth, m_colorHeight or "
                         f"m_calibrationColorIntrinsic") from None
    sx, sy = out_wh[0] / w, out_wh[1] / h
    fxs = fx * sx
    camera = Camera(focal=fxs, focal_y=fy * sy, cx=(cx + 0.5) * sx - 0.5,
                    cy=(cy + 0.5) * sy - 0.5, depth_focal=fxs)
    return camera, shift, (w, h)


def twelve_scenes_split(path):
    """Number of test frames (the first ones) from split.txt (`sequence0 [frames=N] …`)."""
    try:
        text = Path(path).read_text()
    except OSError:
        raise InputError(f"cannot read split file {path}") from None
    match = re.search(r"frames\s*=\s*(\d+)", text)
    if match is None:
        raise InputError(f"{path} has no 'frames=N' of the test sequence")
    return int(match.group(1))


def twelve_scenes_frames(scene, pose_lookup=None):
    """({'train': [...], 'test': [...]} with colour paths still at full size, skipped count).

    Frames whose pose holds -inf/NaN (or, with pose_lookup, that it lacks) are skipped.
    `pose_lookup(stem)` gives a pseudo-ground-truth camera-to-world pose or None.
    """
    data = Path(scene) / "data"
    if not data.is_dir():
        raise InputError(f"12-Scenes scene folder {scene} has no data/ folder")
    n_test = twelve_scenes_split(Path(scene) / "split.txt")
    images = sorted(data.glob("frame-*.color.jpg")) or sorted(data.glob("frame-*.color.png"))
    if not images:
        raise InputError(f"no frame-*.color.jpg images in {data}")
    sets, skipped = {"train": [], "test": []}, 0
    for k, image in enumerate(images):
        stem = image.name.split(".")[0]
        depth, pose_file = data / f"{stem}.depth.png", data / f"{stem}.pose.txt"
        for needed in (depth, pose_file):
            if not needed.is_file():
                raise InputError(f"frame {image} has no {needed.name}: {needed} not found")
        if pose_lookup is not None:
            pose = pose_lookup(stem)
        else:
            try:
                pose = np.loadtxt(pose_file, ndmin=2)
            except ValueError:
                raise InputError(f"pose file {pose_file} is not a 4x4 matrix of numbers") from None
            if pose.size != 16:
                raise InputError(f"pose file {pose_file} holds {pose.size} numbers, expected 16")
            pose = pose.reshape(4, 4)
        if pose is None or not np.all(np.isfinite(pose)):
            skipped += 1
            continue
        split = "test" if k < n_test else "train"
        sets[split].append(SourceFrame(image, depth, pose, "data", stem))
    return sets, skipped


def resize_images(frames, folder, wh, progress=True):
    """Writes each frame's colour image resized to wh = (W, H) as folder/<stem>.color.png (kept
    when already there at that size) and points the frames at them."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in tqdm(frames, desc="resizing", unit="frame", disable=not progress):
        target = folder / f"{f.stem}.color.png"
        done = False
        if target.is_file():
            try:
                with Image.open(target) as img:
                    done = img.size == tuple(wh)
            except OSError:
                done = False
        if not done:
            image = cv2.imread(str(f.image), cv2.IMREAD_COLOR)
            if image is None:
                raise InputError(f"cannot read image {f.image}")
            small = cv2.resize(image, tuple(wh), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".png", small)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(buf.tobytes())
            tmp.replace(target)
        f.image = target


# ---- 7-Scenes: pseudo ground truth, calibrated registration -----------------------------------

def read_pgt(paths):
    """({'seq-01/frame-000000': camera-to-world pose}, {same key: focal}) from SfM pseudo
    ground-truth files (Brachmann et al., ICCV 2021): lines `rgb_file qw qx qy qz tx ty tz f`,
    world-to-camera; keys drop the file's `.color.png`."""
    poses, focals = {}, {}
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            raise InputError(f"cannot read pseudo ground-truth file {path}") from None
        for n, line in enumerate(lines, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            try:
                if len(parts) not in (8, 9):
                    raise ValueError
                vals = [float(v) for v in parts[1:]]
            except ValueError:
                raise InputError(f"{path} line {n}: expected 'rgb_file qw qx qy qz tx ty tz "
                                 f"[f]'") from None
            pose_wc = np.eye(4)
            pose_wc[:3, :3] = quaternion_to_rotation(vals[:4])
            pose_wc[:3, 3] = vals[4:7]
            key = parts[0].split(".")[0]
            poses[key] = invert_rigid(pose_wc)
            focals[key] = vals[7] if len(vals) == 8 else math.nan
    if not poses:
        raise InputError(f"pseudo ground-truth files {', '.join(map(str, paths))} hold no poses")
    return poses, focals


def seven_scenes_frames(dataset, splits, poses="original", registration="focal", pgt=None):
    """({split: [SourceFrame]}, skipped) of a 7-Scenes scene.

    poses: "original" (the .pose.txt files: the depth camera's poses; with calibrated
    registration mapped to the RGB camera as P · inv(depth_to_rgb), as ACE does) or "pgt"
    (pgt = read_pgt's poses; frames it lacks are skipped).
    """
    d2r_inv = invert_rigid(np.asarray(SEVEN_SCENES_DEPTH_TO_RGB).reshape(4, 4))
    sets, skipped = {}, 0
    for split in splits:
        sets[split] = []
        for frame in list_frames(dataset, read_split(dataset, split)):
            seq, stem = frame.image.parent.name, frame.image.name.split(".")[0]
            if poses == "pgt":
                pose = pgt.get(f"{seq}/{stem}")
                if pose is None:
                    skipped += 1
                    continue
            else:
                pose = read_matrix_file(frame.pose)
                if registration == "calibrated":
                    pose = pose @ d2r_inv
            sets[split].append(SourceFrame(frame.image, frame.depth, pose, seq, stem))
    return sets, skipped
