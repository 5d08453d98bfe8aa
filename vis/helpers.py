"""Shared plumbing of the vis/ scripts: map files, colour codes, figures of an exact size, videos.

Maps (docs/reference.md §2) are float32 `h×w×C` .npy files at 1/8 image resolution; map cell
(i, j) stands for image pixel (8j, 8i) (common.geometry.cell_pixels). Confidences are 1/σ with σ
in metres.
"""

import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from common import formats
from common.errors import InputError
from common.formats import read_list
from common.geometry import CELL, CELL_OFFSET


def map_extent(h, w):
    """imshow extent (left, right, bottom, top) in image pixels of an h×w map laid over its
    image: each cell's block is centred on the pixel it stands for."""
    lo = CELL_OFFSET - CELL / 2
    return (lo, lo + CELL * w, lo + CELL * h, lo)


IMAGE_EXTS = (".png", ".jpg", ".jpeg")
VIDEO_EXTS = (".gif", ".mp4")


# ---------------------------------------------------------------- files

def load_map(path, channels, what="map"):
    """[h, w, channels] float32 array of an .npy map file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        raise InputError(f"{what} file {path} is not a numeric .npy array") from None
    if arr.ndim != 3 or arr.shape[2] != channels or not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{what} file {path} has shape {arr.shape} and dtype {arr.dtype}, "
                         f"expected float h x w x {channels}")
    return arr.astype(np.float32)


def frame_index(path):
    """k of `coord_<k>.npy`, or of `<k-1>_<k>_flow.npy` (the later frame), or None."""
    pair = formats.flow_pair(path)
    if pair is not None:
        return pair[1]
    k = formats.coord_index(path)
    if k is not None:
        return k
    m = re.search(r"(\d+)\D*$", Path(path).name)  # any other map name: its last number
    return int(m.group(1)) if m else None


def list_maps(list_or_folder, pattern):
    """Map paths of a folder (files matching the glob `pattern`, by frame index) or a list file."""
    src = Path(list_or_folder)
    if src.is_dir():
        paths = [p for p in src.glob(pattern) if frame_index(p) is not None]
        paths.sort(key=lambda p: (frame_index(p), p.name))
        if not paths:
            raise InputError(f"folder {src} holds no {pattern} files")
        return [str(p) for p in paths]
    if not src.exists():
        raise InputError(f"list file or folder not found: {src}")
    paths = read_list(src)
    if not paths:
        raise InputError(f"list file {src} names no files")
    return paths


def read_rgb(path):
    """[H, W, 3] uint8 RGB image."""
    import cv2

    if not Path(path).is_file():
        raise InputError(f"image not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_save(path, exts, flag="--save"):
    """The output path if its extension is one of `exts` and its folder exists."""
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() not in exts:
        raise InputError(f"{flag} {path}: the file name must end in one of {', '.join(exts)}")
    if not p.parent.resolve().is_dir():
        raise InputError(f"{flag} {path}: folder {p.parent} does not exist")
    if p.suffix.lower() == ".mp4" and not mp4_available():
        raise InputError(f"{flag} {path}: writing .mp4 needs the imageio-ffmpeg package "
                         "(pip install imageio-ffmpeg); or save a .gif")
    return p


def mp4_available():
    """True when imageio can write H.264 video (through the imageio-ffmpeg package)."""
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def partial_path(path):
    """Yields a temporary name beside `path` (same extension); renamed to `path` on success."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def require_display():
    """Raises unless an interactive window can open (X11 or Wayland, or a non-Linux desktop)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        raise InputError("no display to open a window on: pass --save FILE to write the picture")


# ---------------------------------------------------------------- colours

def confidence_range(conf):
    """(lo, hi) of a log colour scale for confidences: their 2nd and 98th percentiles."""
    conf = np.asarray(conf, dtype=np.float64)
    conf = conf[np.isfinite(conf) & (conf > 0)]
    if conf.size == 0:
        return 1.0, 10.0
    lo, hi = np.percentile(conf, [2, 98])
    return float(lo), float(max(hi, lo * 1.01))


def confidence_colors(conf, lo, hi, cmap="viridis"):
    """[..., 3] RGB in [0, 1]: a colormap over log(confidence) from lo to hi (brighter = surer)."""
    import matplotlib

    t = (np.log(np.clip(conf, lo, hi)) - np.log(lo)) / max(np.log(hi) - np.log(lo), 1e-12)
    return matplotlib.colormaps[cmap](t)[..., :3]


def position_range(points_n3):
    """(lo [3], hi [3]): per-axis 1st and 99th percentiles of the points, metres."""
    lo, hi = np.percentile(points_n3, [1, 99], axis=0)
    return lo, np.maximum(hi, lo + 1e-6)


def position_colors(points_n3, lo, hi):
    """[N, 3] RGB in [0, 1]: x, y, z scaled from [lo, hi] to [0, 1] per axis."""
    return np.clip((points_n3 - lo) / (hi - lo), 0.0, 1.0)


def flow_colors(u, v, max_magnitude):
    """[..., 3] RGB of the flow colour wheel: hue = direction, saturation = |flow| / max_magnitude.

    Directions are in image axes (x right, y down): +x is red, +y (down) yellow-green, −x cyan,
    −y violet; zero flow is white.
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    hue = (np.arctan2(v, u) / (2 * np.pi)) % 1.0
    sat = np.clip(np.hypot(u, v) / max(max_magnitude, 1e-12), 0.0, 1.0)
    from matplotlib.colors import hsv_to_rgb

    return hsv_to_rgb(np.stack([hue, sat, np.ones_like(hue)], axis=-1))


def colour_wheel(size=101):
    """[size, size, 4] RGBA picture of the flow colour code, transparent outside the disc."""
    r = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size] - r
    rgba = np.ones((size, size, 4))
    rgba[..., :3] = flow_colors(xx, yy, r)
    rgba[..., 3] = np.hypot(xx, yy) <= r
    return rgba


# ---------------------------------------------------------------- figures

def use_backend(save):
    """Picks matplotlib's backend: Agg when saving, else an interactive one (needs a display)."""
    import matplotlib

    if save is not None:
        matplotlib.use("Agg")
    else:
        require_display()


def new_figure(size_wh, dpi=100):
    """A pyplot figure of exactly size_wh = (width, height) pixels when saved at `dpi`."""
    import matplotlib.pyplot as plt

    w, h = size_wh
    return plt.figure(figsize=(w / dpi, h / dpi), dpi=dpi)


def figure_rgb(fig):
    """[H, W, 3] uint8 pixels of a drawn figure."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def axes_pixels(fig, ax):
    """(width, height) in pixels of an axes box."""
    box = ax.get_position()
    w, h = fig.get_size_inches() * fig.dpi
    return max(round(box.width * w), 8), max(round(box.height * h), 8)


def show_or_save(fig, save):
    """Writes the figure to `save` (exact figure size) or shows it in a window."""
    import matplotlib.pyplot as plt

    if save is None:
        plt.show()
        return
    with partial_path(save) as tmp:
        fig.savefig(tmp, dpi=fig.dpi)
    plt.close(fig)
    print(f"wrote {save}")


class VideoWriter:
    """Appends RGB frames to a .gif (Pillow) or .mp4 (ffmpeg through imageio-ffmpeg)."""

    def __init__(self, path, fps):
        import imageio.v2 as imageio

        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        if self.path.suffix.lower() == ".mp4":
            check_save(path, (".mp4",))
            self.writer = imageio.get_writer(self.tmp, format="FFMPEG", mode="I", fps=fps,
                                             codec="libx264", macro_block_size=1)
        else:
            self.writer = imageio.get_writer(self.tmp, mode="I", duration=1000.0 / fps, loop=0)
        self.frames = 0

    def append(self, rgb):
        """Adds one [H, W, 3] uint8 frame (odd sizes are padded to even ones for H.264)."""
        h, w = rgb.shape[:2]
        if self.path.suffix.lower() == ".mp4" and (h % 2 or w % 2):
            rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self.writer.append_data(rgb)
        self.frames += 1

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.writer.close()
        if exc_type is None and self.frames:
            os.replace(self.tmp, self.path)
            print(f"wrote {self.path} ({self.frames} frames)")
        elif self.tmp.exists():
            self.tmp.unlink()
        return False
