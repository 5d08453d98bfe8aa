"""Photographic textures for the synthetic rooms: the photographs scikit-image ships, as
mip-map pyramids sampled with mirrored tiling (so tiles meet without seams).

Texture coordinates are in level-0 texels (pixels of the photograph, x right, y down).
"""

import functools

import cv2
import numpy as np

from common.errors import InputError

# Photographs inside the scikit-image wheel (skimage/data/*), so they load without a network.
COLOUR_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
                 "immunohistochemistry", "retina", "motorcycle")
GREY_PHOTOS = ("brick", "grass", "gravel", "moon", "coins", "camera", "text", "page")
# Photographs of fine grain, shown larger than the others so that their grain is not averaged
# away at the mip level a camera sees them at (the factor multiplies a material's scale).
COARSEN = {"brick": 3.0, "gravel": 3.0}
MAX_SIDE = 512  # larger photographs are shrunk to this (a texel is never seen up closer anyway)
MIN_SIDE = 4  # the pyramid stops before a level gets smaller than this


def _read(name):
    try:
        from skimage import data
    except ImportError:
        raise InputError("this room's photographic textures need scikit-image "
                         "(pip install scikit-image)") from None
    image = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        # Grey photographs are tinted later: spread their grey levels over the whole range.
        return np.repeat(cv2.equalizeHist(image)[:, :, None], 3, axis=2)
    image = image[:, :, :3].astype(np.float32)
    low, high = np.percentile(image, (1, 99))
    return np.clip((image - low) * (255 / (high - low)), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def photo_pyramid(name):
    """Mip-map levels of a photograph: [H_l, W_l, 3] float32 RGB in [0, 1], level 0 first."""
    image = _read(name).astype(np.float32) / 255.0
    scale = MAX_SIDE / max(image.shape[:2])
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    levels = [image]
    while min(levels[-1].shape[:2]) >= 2 * MIN_SIDE:
        levels.append(cv2.pyrDown(levels[-1]))
    for level in levels:
        level.setflags(write=False)
    return tuple(levels)


def _mirror(index, size):
    index = np.mod(index, 2 * size)
    return np.where(index >= size, 2 * size - 1 - index, index)


def _bilinear(image, s, t):
    """[N, 3] colours of image at texel coordinates (s, t) (pixel centres at integers + 0.5)."""
    height, width = image.shape[:2]
    s, t = s - 0.5, t - 0.5
    s0, t0 = np.floor(s), np.floor(t)
    fs, ft = (s - s0)[:, None], (t - t0)[:, None]
    s0, t0 = s0.astype(np.int64), t0.astype(np.int64)
    xs = _mirror(s0, width), _mirror(s0 + 1, width)
    ys = _mirror(t0, height), _mirror(t0 + 1, height)
    top = image[ys[0], xs[0]] + fs * (image[ys[0], xs[1]] - image[ys[0], xs[0]])
    bottom = image[ys[1], xs[0]] + fs * (image[ys[1], xs[1]] - image[ys[1], xs[0]])
    return top + ft * (bottom - top)


def sample(pyramid, s, t, texels_per_pixel):
    """[N, 3] trilinear samples at level-0 texel coordinates (s, t), with a pixel covering
    texels_per_pixel level-0 texels (picks the mip level, so far surfaces do not flicker)."""
    # Half a level sharper than a pixel's footprint: at 160×120 the exact level averages the
    # photographs into flat patches (1.6× the untextured 8×8 cells); consecutive frames still
    # differ no more than the table room's (1.63 vs 1.58 grey levels, median, depth-warped).
    level = np.clip(np.log2(np.maximum(texels_per_pixel, 1e-6)) - 0.5, 0, len(pyramid) - 1)
    low = np.floor(level).astype(np.int64)
    frac = (level - low).astype(np.float32)
    high = np.minimum(low + 1, len(pyramid) - 1)
    out = np.zeros((len(s), 3), dtype=np.float32)
    for k in np.unique(np.concatenate([low, high])):
        weight = np.where(low == k, 1 - frac, 0) + np.where(high == k, frac, 0)
        sel = weight > 0
        factor = 2.0**-k
        colour = _bilinear(pyramid[k], s[sel] * factor, t[sel] * factor)
        out[sel] += weight[sel, None] * colour
    return out
