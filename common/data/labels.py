"""Label files (docs/reference.md §2): float32 x, y, z, valid per cell, raw `tofile` bytes or `.npy`.

A raw label is either at map resolution (h×w×4) or at full image resolution (H×W×4, of which
the pixel of each cell, (8j, 8i) as in the original (common.geometry.cell_pixels), is used); the
byte size tells which. The `LabelLayout`
found for a file lets the tf.data pipeline decode it in graph code.
"""

import os
import tokenize
from dataclasses import dataclass

import numpy as np

from common.errors import InputError
from common.geometry import CELL, CELL_OFFSET

NPY_MAGIC = b"\x93NUMPY"
# What numpy's .npy header parser raises on garbage (it tokenizes the header as Python).
HEADER_ERRORS = (ValueError, TypeError, SyntaxError, EOFError, MemoryError, RecursionError,
                 tokenize.TokenError)


@dataclass(frozen=True)
class LabelLayout:
    """Where the float32 data starts in the file and the stored grid (rows, cols, stride)."""

    offset: int
    rows: int
    cols: int
    stride: int  # 1 at map resolution, CELL at full resolution


def _npy_header(path):
    """(data offset, shape, dtype descr, fortran order) of an .npy file, read without pickles."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            if f.read(6) != NPY_MAGIC:
                raise InputError(f"label {path} is not an .npy file")
            f.seek(0)
            version = fmt.read_magic(f)
            if version not in ((1, 0), (2, 0), (3, 0)):
                raise ValueError(f"version {version}")
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except OSError as e:
        raise InputError(f"cannot read label {path}: {e.strerror}") from None
    except HEADER_ERRORS:
        raise InputError(f"label {path} has an unreadable .npy header") from None
    return offset, tuple(shape), dtype.str, bool(fortran)


def label_layout(path, image_hw):
    """Layout of a label file for images of size image_hw = (H, W); errors name the file."""
    height, width = image_hw
    h, w = height // CELL, width // CELL
    if not os.path.isfile(path):
        raise InputError(f"label file not found: {path}")
    if str(path).endswith(".npy"):
        offset, shape, descr, fortran = _npy_header(path)
        if descr != "<f4" or fortran:
            raise InputError(f"label {path} must be C-ordered little-endian float32, got {descr}")
        layout = {(h, w, 4): LabelLayout(offset, h, w, 1),
                  (height, width, 4): LabelLayout(offset, height, width, CELL)}.get(shape)
        if layout is not None:
            if os.path.getsize(path) < offset + layout.rows * layout.cols * 16:
                raise InputError(f"label {path} is truncated: shorter than its {shape} float32 data")
            return layout
        raise InputError(f"label {path} has shape {shape}, expected ({h}, {w}, 4) or "
                         f"({height}, {width}, 4) for {width}x{height} images")
    size = os.path.getsize(path)
    if size == h * w * 4 * 4:
        return LabelLayout(0, h, w, 1)
    if size == height * width * 4 * 4:
        return LabelLayout(0, height, width, CELL)
    raise InputError(f"label {path} has {size} bytes, expected {h * w * 16} ({h}x{w}x4 float32) "
                     f"or {height * width * 16} ({height}x{width}x4) for {width}x{height} images")


def read_label(path, image_hw, layout=None):
    """[h, w, 4] float32 label at map resolution (world frame, as stored)."""
    layout = layout or label_layout(path, image_hw)
    try:
        data = np.fromfile(path, dtype="<f4", count=layout.rows * layout.cols * 4, offset=layout.offset)
        grid = data.reshape(layout.rows, layout.cols, 4)
    except (OSError, ValueError):
        raise InputError(f"label {path} cannot be read as {layout.rows}x{layout.cols}x4 float32") from None
    if layout.stride > 1:
        grid = grid[CELL_OFFSET::CELL, CELL_OFFSET::CELL]
    return np.ascontiguousarray(grid, dtype=np.float32)


def write_label(path, label_hw4):
    """Writes a label as raw little-endian float32 (`.npy` when the path ends so)."""
    label = np.ascontiguousarray(label_hw4, dtype="<f4")
    if label.ndim != 3 or label.shape[2] != 4:
        raise ValueError(f"label must be [h, w, 4], got {label.shape}")
    tmp = f"{path}.tmp"
    if str(path).endswith(".npy"):
        with open(tmp, "wb") as f:
            np.save(f, label)
    else:
        label.tofile(tmp)
    os.replace(tmp, path)
