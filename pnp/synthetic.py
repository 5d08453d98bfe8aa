"""Generated scene-coordinate maps with a known pose, for tests and the PnP benchmark.

Each cell's pixel (8j, 8i) (common.geometry.cell_pixels) is back-projected with K at a random depth and mapped
to world coordinates with the true camera-to-world pose, so the geometry is exact before
noise. Inliers get Gaussian noise with a per-cell σ and a confidence 1/σ that is right up to
a random factor; outliers sit in blobs (networks fail on regions, not on single cells), are
moved by 0.3–2 m, and mostly say so with a low confidence — but a share of them claims the
confidence of a good cell.
"""

from dataclasses import dataclass

import numpy as np

from common.geometry import cell_pixels


@dataclass
class Frame:
    """One generated frame: coords [h, w, 3] world metres, confidence [h, w] 1/σ, truth."""

    coords: np.ndarray
    confidence: np.ndarray
    pose_cw: np.ndarray
    outliers: np.ndarray  # [h, w] bool


def random_rotation(rng):
    """Uniformly distributed 3×3 rotation matrix."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _blob_mask(rng, h, w, share):
    """[h, w] mask of about `share` of the cells, in smooth blobs with ragged edges."""
    if share <= 0:
        return np.zeros((h, w), bool)
    field = rng.normal(size=(h, w))
    box = np.ones(7) / 7
    for _ in range(3):
        field = np.apply_along_axis(np.convolve, 0, field, box, mode="same")
        field = np.apply_along_axis(np.convolve, 1, field, box, mode="same")
    field = field / field.std() + 0.5 * rng.normal(size=(h, w))
    k = int(round(share * h * w))
    mask = np.zeros(h * w, bool)
    mask[np.argsort(-field.ravel())[:k]] = True
    return mask.reshape(h, w)


def make_frame(rng, K, h=60, w=80, cell=8, depth=(1.0, 4.0), noise=0.02, outlier_share=0.0,
               confident_outliers=0.15, calibration=0.3, blobs=True):
    """A generated frame seen from a random pose.

    noise: median per-cell σ of inliers, metres (0: exact coordinates, confidence 100 everywhere).
    outlier_share: share of cells moved far away; confident_outliers: share of those whose
    confidence looks like an inlier's. calibration: log-spread of predicted vs true σ.
    """
    pose_cw = np.eye(4)
    pose_cw[:3, :3] = random_rotation(rng)
    pose_cw[:3, 3] = rng.uniform(-2, 2, 3)
    pixels = cell_pixels(h, w, cell).reshape(-1, 2)
    rays = np.linalg.solve(K, np.concatenate([pixels, np.ones((len(pixels), 1))], axis=1).T).T
    cam = rays * rng.uniform(*depth, len(pixels))[:, None]
    world = cam @ pose_cw[:3, :3].T + pose_cw[:3, 3]

    n = h * w
    if noise > 0:
        sigma = noise * np.exp(0.5 * rng.normal(size=n))
        world = world + rng.normal(size=(n, 3)) * sigma[:, None]
        confidence = 1.0 / (sigma * np.exp(calibration * rng.normal(size=n)))
    else:
        confidence = np.full(n, 100.0)

    out = (_blob_mask(rng, h, w, outlier_share) if blobs
           else rng.random((h, w)) < outlier_share).ravel()
    m = int(out.sum())
    direction = rng.normal(size=(m, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    world[out] += direction * rng.uniform(0.3, 2.0, m)[:, None]
    low = 1.0 / rng.uniform(0.2, 1.0, m)
    looks_good = rng.random(m) < confident_outliers
    typical = np.median(confidence[~out]) if m < n else 1.0
    confidence[out] = np.where(looks_good, typical * np.exp(0.5 * rng.normal(size=m)), low)
    return Frame(world.reshape(h, w, 3).astype(np.float32),
                 confidence.reshape(h, w).astype(np.float32), pose_cw, out.reshape(h, w))
