"""Input folders (docs/reference.md §2) from a scene in the 7-Scenes layout: labels, list files, transform.txt.

Labels are world-frame scene coordinates (metres) at the pixel of each map cell, (8j, 8i) as in
the original (common.geometry.cell_pixels),
back-projected from depth (uint16 mm, 0 and 65535 invalid) with the RGB intrinsics and the
camera-to-world pose. Unregistered depth (another focal length, same camera centre and
orientation, as on 7-Scenes' Kinect) is first re-projected into the RGB camera.
"""

import json
import os
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from common.data.labels import write_label
from common.errors import InputError
from common.formats import read_matrix_file
from common.geometry import CELL, cell_pixels

SPLIT_FILES = {"train": "TrainSplit.txt", "test": "TestSplit.txt"}
INVALID_DEPTH = (0, 65535)
FILL_RADIUS = 2  # pixels searched around a cell's pixel that got no re-projected depth
TRANSFORM_EVERY = 10  # training frames used for transform.txt: every 10th


@dataclass(frozen=True)
class Camera:
    """RGB intrinsics (pixels) and the depth camera's focal length; same principal point."""

    focal: float
    focal_y: float
    cx: float
    cy: float
    depth_focal: float
    # Calibrated depth→RGB extrinsics (16 numbers, row-major 4×4 mapping depth-camera points
    # to RGB-camera points); None: same centre and orientation (focal-only registration).
    depth_to_rgb: tuple | None = None

    @property
    def registered(self):
        """Depth already aligned with the colour pixels."""
        return self.depth_focal == self.focal and self.depth_to_rgb is None


@dataclass(frozen=True)
class Frame:
    """One frame's files; label is relative to the split's output folder."""

    image: Path
    depth: Path
    pose: Path
    label: str
    depth_scale: float = 1000.0  # depth PNG units per metre (TUM RGB-D: 5000)


def read_split(dataset, split):
    """Sequence folder names (seq-XX) listed by TrainSplit.txt / TestSplit.txt."""
    path = Path(dataset) / SPLIT_FILES[split]
    if not path.is_file():
        raise InputError(f"split file not found: {path}")
    names = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        match = re.fullmatch(r"(?:sequence|seq-?)(\d+)", entry, re.IGNORECASE)
        if not match:
            raise InputError(f"{path} line {n}: expected 'sequenceN', got '{entry}'")
        names.append(f"seq-{int(match.group(1)):02d}")
    if not names:
        raise InputError(f"split file {path} lists no sequences")
    return names


def list_frames(dataset, sequences):
    """Frames of the sequences in order; errors name the missing folder or file."""
    frames = []
    for seq in sequences:
        folder = Path(dataset) / seq
        if not folder.is_dir():
            raise InputError(f"sequence folder not found: {folder}")
        images = sorted(folder.glob("frame-*.color.png"))
        images = images or sorted(folder.glob("frame-*.color.jpg"))
        if not images:
            raise InputError(f"no frame-*.color.png images in {folder}")
        for image in images:
            stem = image.name.split(".")[0]
            depth, pose = folder / f"{stem}.depth.png", folder / f"{stem}.pose.txt"
            for needed in (depth, pose):
                if not needed.is_file():
                    raise InputError(f"frame {image} has no {needed.name}: {needed} not found")
            frames.append(Frame(image.resolve(), depth.resolve(), pose.resolve(),
                                f"labels/{seq}/{stem}.label.bin"))
    return frames


def image_size(frames):
    """(W, H) shared by all colour images; each must be a multiple of 8."""
    first = None
    for frame in frames:
        try:
            with Image.open(frame.image) as img:
                size = img.size
        except OSError:
            raise InputError(f"cannot read image {frame.image}") from None
        if size[0] % CELL or size[1] % CELL:
            raise InputError(f"image {frame.image} is {size[0]}x{size[1]}; sizes must be "
                             f"multiples of {CELL}")
        if first is None:
            first = (size, frame.image)
        elif size != first[0]:
            raise InputError(f"image {frame.image} is {size[0]}x{size[1]} but {first[1]} is "
                             f"{first[0][0]}x{first[0][1]}")
    return first[0]


def read_depth(path, scale=1000.0):
    """[H, W] depth in metres (PNG value / scale), 0 where invalid."""
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None or depth.ndim != 2 or depth.dtype != np.uint16:
        raise InputError(f"depth image {path} is not a single-channel 16-bit PNG")
    valid = (depth != INVALID_DEPTH[0]) & (depth != INVALID_DEPTH[1])
    return np.where(valid, depth.astype(np.float64) / scale, 0.0)


def register_depth_calibrated(depth_m, camera, rgb_hw):
    """[H, W] depth (metres along the RGB camera's z, 0 = none) seen by the RGB camera, from a
    depth camera with its own focal length and the extrinsics `camera.depth_to_rgb`.

    Depth pixels are back-projected with the depth focal length (principal point: (cx, cy)
    scaled to the depth image), moved into the RGB camera and projected to the nearest pixel;
    the nearest point wins where several land on one pixel.
    """
    height, width = rgb_hw
    dh, dw = depth_m.shape
    ys, xs = np.nonzero(depth_m > 0)
    z = depth_m[ys, xs]
    fdx, fdy = camera.depth_focal, camera.depth_focal * camera.focal_y / camera.focal
    pts = np.stack([(xs - camera.cx * dw / width) / fdx * z,
                    (ys - camera.cy * dh / height) / fdy * z, z], -1)
    d2r = np.asarray(camera.depth_to_rgb, dtype=np.float64).reshape(4, 4)
    pts = pts @ d2r[:3, :3].T + d2r[:3, 3]
    ahead = pts[:, 2] > 1e-6
    pts = pts[ahead]
    u = np.round(camera.focal * pts[:, 0] / pts[:, 2] + camera.cx).astype(np.int64)
    v = np.round(camera.focal_y * pts[:, 1] / pts[:, 2] + camera.cy).astype(np.int64)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    zbuf = np.full(height * width, np.inf)
    np.minimum.at(zbuf, v[inside] * width + u[inside], pts[inside, 2])
    return np.where(np.isfinite(zbuf), zbuf, 0.0).reshape(height, width)


def register_depth(depth_m, camera, rgb_hw):
    """[H, W] depth (metres, 0 = none) seen by the RGB camera: each depth pixel re-projected into
    the colour image, the nearest depth winning where several land on one pixel.

    The depth camera shares the RGB camera's centre and orientation; its principal point is
    (cx, cy) scaled by the depth image's size relative to the colour image.
    """
    if camera.depth_to_rgb is not None:
        return register_depth_calibrated(depth_m, camera, rgb_hw)
    height, width = rgb_hw
    dh, dw = depth_m.shape
    ys, xs = np.nonzero(depth_m > 0)
    z = depth_m[ys, xs]
    fdx, fdy = camera.depth_focal, camera.depth_focal * camera.focal_y / camera.focal
    u = np.round((xs - camera.cx * dw / width) / fdx * camera.focal + camera.cx).astype(np.int64)
    v = np.round((ys - camera.cy * dh / height) / fdy * camera.focal_y + camera.cy).astype(np.int64)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    zbuf = np.full(height * width, np.inf)
    np.minimum.at(zbuf, v[inside] * width + u[inside], z[inside])
    return np.where(np.isfinite(zbuf), zbuf, 0.0).reshape(height, width)


def sample_cells(depth_m, radius):
    """[h, w] depth at the pixel of each cell (cell_pixels); a pixel without depth takes the
    nearest pixel with depth within `radius` pixels (0 stays invalid)."""
    height, width = depth_m.shape
    xs, ys = np.moveaxis(cell_pixels(height // CELL, width // CELL).astype(np.int64), -1, 0)
    out = np.zeros(ys.shape)
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
               if dy * dy + dx * dx <= radius * radius]
    for dy, dx in sorted(offsets, key=lambda o: (o[0] ** 2 + o[1] ** 2, o)):
        vals = depth_m[np.clip(ys + dy, 0, height - 1), np.clip(xs + dx, 0, width - 1)]
        out = np.where(out > 0, out, vals)
    return out


def scene_label(depth_m, pose_cw, camera, rgb_hw):
    """[h, w, 4] float32 label: world x, y, z (metres) and valid 1/0; invalid cells are all 0."""
    height, width = rgb_hw
    label = np.zeros((height // CELL, width // CELL, 4), dtype=np.float32)
    if not np.all(np.isfinite(pose_cw)):  # a frame the tracker lost: no labels
        return label
    if camera.registered:
        if depth_m.shape != (height, width):
            raise ValueError(f"registered depth must be {width}x{height}, got "
                             f"{depth_m.shape[1]}x{depth_m.shape[0]}")
        z = sample_cells(depth_m, 0)
    else:
        z = sample_cells(register_depth(depth_m, camera, rgb_hw), FILL_RADIUS)
    xs, ys = np.moveaxis(cell_pixels(height // CELL, width // CELL), -1, 0)
    x_over_z, y_over_z = (xs - camera.cx) / camera.focal, (ys - camera.cy) / camera.focal_y
    cam = np.stack([x_over_z * z, y_over_z * z, z], -1)
    world = cam @ pose_cw[:3, :3].T + pose_cw[:3, 3]
    valid = z > 0
    label[valid, :3] = world[valid]
    label[valid, 3] = 1.0
    return label


def frame_label(frame, camera, rgb_hw):
    """(label, pose is finite) of one frame from its depth and pose files."""
    depth = read_depth(frame.depth, frame.depth_scale)
    if camera.registered and depth.shape != tuple(rgb_hw):
        raise InputError(f"depth image {frame.depth} is {depth.shape[1]}x{depth.shape[0]}, "
                         f"colour is {rgb_hw[1]}x{rgb_hw[0]}; registered depth "
                         f"(depth focal = focal) must match")
    pose = read_matrix_file(frame.pose)
    return scene_label(depth, pose, camera, rgb_hw), bool(np.all(np.isfinite(pose)))


def normalizing_transform(points_n3):
    """4×4 rigid T mapping world points to zero mean and principal axes (largest spread first).

    Axis signs: the largest-magnitude component of the first two axes is positive; the third
    completes a right-handed frame.
    """
    points = np.asarray(points_n3, dtype=np.float64)
    mean = points.mean(axis=0)
    evals, evecs = np.linalg.eigh(np.cov((points - mean).T))
    axes = evecs[:, np.argsort(evals)[::-1]].T
    for k in range(2):
        if axes[k, np.argmax(np.abs(axes[k]))] < 0:
            axes[k] = -axes[k]
    axes[2] = np.cross(axes[0], axes[1])
    transform = np.eye(4)
    transform[:3, :3] = axes
    transform[:3, 3] = -axes @ mean
    return transform


def scene_transform(frames, camera, rgb_hw, every=TRANSFORM_EVERY):
    """transform.txt's T from every `every`-th training frame's valid cells."""
    points = []
    for frame in frames[::every]:
        label, _ = frame_label(frame, camera, rgb_hw)
        points.append(label[label[..., 3] > 0, :3])
    points = np.concatenate(points)
    if len(points) < 3:
        raise InputError(f"training frames of {frames[0].image.parents[1]} have no valid depth "
                         f"to compute transform.txt from")
    return normalizing_transform(points)


def write_text(path, text):
    """Writes a text file atomically (temp name, then rename)."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def format_matrix(matrix_44):
    """Whitespace-separated rows at full double precision."""
    return "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in matrix_44)


def prepare_split(frames, out, camera, rgb_hw, transform, overwrite=False, progress=True,
                  desc=None, source=None):
    """Writes labels, image/label/pose lists and transform.txt of one split into `out`.

    Existing labels of the right size are kept unless `overwrite` or they were made from another
    dataset folder (`source`, default the first image's grandparent folder), other intrinsics or
    another depth scale (recorded in labels/source.json); lists are written last.
    Returns (labels written, labels kept, share of valid cells among written labels).
    """
    height, width = rgb_hw
    stamp = out / "labels" / "source.json"
    record = {"dataset": str(source or frames[0].image.parents[1]), **asdict(camera)}
    if record["depth_to_rgb"] is None:
        del record["depth_to_rgb"]  # stamps written before the field existed stay valid
    if frames[0].depth_scale != 1000.0:
        record["depth_scale"] = frames[0].depth_scale
    source = json.dumps(record)
    if stamp.is_file() and stamp.read_text() != source:
        overwrite = True
    stamp.parent.mkdir(parents=True, exist_ok=True)
    write_text(stamp, source)
    expected = (height // CELL) * (width // CELL) * 4 * 4
    written = kept = 0
    valid = []
    bad_poses = []
    for frame in tqdm(frames, desc=desc, unit="frame", disable=not progress):
        path = out / frame.label
        if not overwrite and path.is_file() and path.stat().st_size == expected:
            kept += 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        label, pose_ok = frame_label(frame, camera, rgb_hw)
        if not pose_ok:
            bad_poses.append(frame.pose)
        write_label(path, label)
        valid.append(float(label[..., 3].mean()))
        written += 1
    if bad_poses:
        warnings.warn(f"{len(bad_poses)} frames have non-finite poses (e.g. {bad_poses[0]}); "
                      f"their labels are all invalid", stacklevel=2)
    write_text(out / "image_list.txt", "".join(f"{f.image}\n" for f in frames))
    write_text(out / "label_list.txt", "".join(f"{f.label}\n" for f in frames))
    write_text(out / "pose_list.txt", "".join(f"{f.pose}\n" for f in frames))
    write_text(out / "transform.txt", format_matrix(transform))
    return written, kept, (float(np.mean(valid)) if valid else None)


def prepare_scene(dataset, out, camera, splits=("train", "test"), overwrite=False, progress=True):
    """Prepares the splits of a 7-Scenes-layout scene into out/<split>/ (docs/reference.md §2 input folders).

    transform.txt always comes from the training split.
    Returns {split: (labels written, labels kept, valid share)}.
    """
    dataset, out = Path(dataset), Path(out)
    if not dataset.is_dir():
        raise InputError(f"dataset folder not found: {dataset}")
    frames = {split: list_frames(dataset, read_split(dataset, split))
              for split in dict.fromkeys(["train", *splits])}
    width, height = image_size([f for split_frames in frames.values() for f in split_frames])
    if not (0 <= camera.cx < width and 0 <= camera.cy < height):
        raise InputError(f"principal point ({camera.cx:g}, {camera.cy:g}) lies outside the "
                         f"{width}x{height} images of {dataset}; give the scene's intrinsics "
                         f"(--scene/--config/--focal --cx --cy)")
    transform = scene_transform(frames["train"], camera, (height, width))
    stats = {}
    for split in splits:
        (out / split).mkdir(parents=True, exist_ok=True)
        stats[split] = prepare_split(frames[split], out / split, camera, (height, width), transform,
                                     overwrite=overwrite, progress=progress, desc=split)
    return stats
