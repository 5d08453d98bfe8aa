"""Minimal absolute-pose solver (P3P) for many samples at once, in numpy.

Grunert's formulation as reviewed by Haralick et al. (IJCV 1994): with depths s1, s2 = u·s1,
s3 = v·s1 along the three rays, the law of cosines gives a quartic in v. Its roots come from
the eigenvalues of the companion matrices of all samples in one batched call; each root is
polished by Newton steps, turned into three camera-frame points and then into a rigid
transform. Poses are world-to-camera: X_cam = R · X_world + t.
"""

import numpy as np


def _quartic_coefficients(a2, c2, cos_a, cos_b, cos_g):
    """[M, 5] coefficients (v⁴ … v⁰) of Grunert's quartic; a2, c2 are a²/b², c²/b²."""
    amc, apc = a2 - c2, a2 + c2
    cos_a2, cos_b2, cos_g2 = cos_a * cos_a, cos_b * cos_b, cos_g * cos_g
    return np.stack([
        (amc - 1) ** 2 - 4 * c2 * cos_a2,
        4 * (amc * (1 - amc) * cos_b - (1 - apc) * cos_a * cos_g + 2 * c2 * cos_a2 * cos_b),
        2 * (amc ** 2 - 1 + 2 * amc ** 2 * cos_b2 + 2 * (1 - c2) * cos_a2
             - 4 * apc * cos_a * cos_b * cos_g + 2 * (1 - a2) * cos_g2),
        4 * (-amc * (1 + amc) * cos_b + 2 * a2 * cos_g2 * cos_b - (1 - apc) * cos_a * cos_g),
        (1 + amc) ** 2 - 4 * a2 * cos_g2,
    ], axis=-1)


def _real_roots(coeffs_m5):
    """([M, 4] real parts of the quartic's roots, [M, 4] mask of the real ones)."""
    lead = coeffs_m5[:, 0]
    ok = np.all(np.isfinite(coeffs_m5), axis=1)
    ok &= np.abs(lead) > 1e-12 * np.abs(np.where(ok[:, None], coeffs_m5, 0)).max(axis=1)
    monic = np.where(ok[:, None], coeffs_m5[:, 1:] / np.where(ok, lead, 1.0)[:, None], 0.0)
    companion = np.zeros((len(coeffs_m5), 4, 4))
    companion[:, 0, :] = -monic
    companion[:, [1, 2, 3], [0, 1, 2]] = 1.0
    roots = np.linalg.eigvals(companion)
    # A double root splits into a pair with small imaginary parts; Newton polishes the real part.
    real = np.abs(roots.imag) <= 1e-4 * (1.0 + np.abs(roots.real))
    v = roots.real
    for _ in range(2):
        p = (((coeffs_m5[:, :1] * v + coeffs_m5[:, 1:2]) * v + coeffs_m5[:, 2:3]) * v
             + coeffs_m5[:, 3:4]) * v + coeffs_m5[:, 4:5]
        dp = ((4 * coeffs_m5[:, :1] * v + 3 * coeffs_m5[:, 1:2]) * v + 2 * coeffs_m5[:, 2:3]) * v \
            + coeffs_m5[:, 3:4]
        step = np.where(np.abs(dp) > 1e-14, p / np.where(dp == 0, 1.0, dp), 0.0)
        v = v - step
    return v, real & ok[:, None]


def _frame(p0, p1, p2):
    """[K, 3, 3] orthonormal frames (columns) of triangles, and [K] mask of non-degenerate ones."""
    e1 = p1 - p0
    n = np.cross(e1, p2 - p0)
    len1 = np.linalg.norm(e1, axis=-1)
    lenn = np.linalg.norm(n, axis=-1)
    ok = (len1 > 1e-12) & (lenn > 1e-12 * np.maximum(len1, 1e-12) ** 2)
    e1 = e1 / np.where(ok, len1, 1.0)[:, None]
    e3 = n / np.where(ok, lenn, 1.0)[:, None]
    e2 = np.cross(e3, e1)
    return np.stack([e1, e2, e3], axis=-1), ok


def p3p(bearings_m33, points_m33):
    """World-to-camera poses from minimal samples.

    Args:
      bearings_m33: [M, 3, 3] unit ray directions in the camera frame (sample, point, xyz).
      points_m33: [M, 3, 3] the matching world points, metres.
    Returns:
      (R [P, 3, 3], t [P, 3], sample [P]): every real solution (up to 4 per sample) and the
      index of the sample it came from.
    """
    f = np.asarray(bearings_m33, dtype=np.float64)
    x = np.asarray(points_m33, dtype=np.float64)
    a = np.linalg.norm(x[:, 1] - x[:, 2], axis=-1)
    b = np.linalg.norm(x[:, 0] - x[:, 2], axis=-1)
    c = np.linalg.norm(x[:, 0] - x[:, 1], axis=-1)
    cos_a = np.einsum("mi,mi->m", f[:, 1], f[:, 2])
    cos_b = np.einsum("mi,mi->m", f[:, 0], f[:, 2])
    cos_g = np.einsum("mi,mi->m", f[:, 0], f[:, 1])
    b_safe = np.where(b > 1e-12, b, 1.0)
    a2, c2 = (a / b_safe) ** 2, (c / b_safe) ** 2

    v, real = _real_roots(_quartic_coefficients(a2, c2, cos_a, cos_b, cos_g))
    amc = (a2 - c2)[:, None]
    denom = 2 * (cos_g[:, None] - v * cos_a[:, None])
    numer = (amc - 1) * v * v - 2 * amc * cos_b[:, None] * v + 1 + amc
    u = numer / np.where(denom == 0, 1.0, denom)
    s1_sq = b[:, None] ** 2 / (1 + v * v - 2 * v * cos_b[:, None])
    keep = real & (v > 0) & (u > 0) & (np.abs(denom) > 1e-12) & (s1_sq > 0) & (b > 1e-12)[:, None]

    sample, root = np.nonzero(keep)
    s1 = np.sqrt(s1_sq[sample, root])
    depths = np.stack([s1, u[sample, root] * s1, v[sample, root] * s1], axis=-1)
    cam = f[sample] * depths[:, :, None]
    world = x[sample]
    frame_c, ok_c = _frame(cam[:, 0], cam[:, 1], cam[:, 2])
    frame_w, ok_w = _frame(world[:, 0], world[:, 1], world[:, 2])
    rot = frame_c @ np.swapaxes(frame_w, 1, 2)
    trans = cam.mean(axis=1) - np.einsum("kij,kj->ki", rot, world.mean(axis=1))
    good = ok_c & ok_w & np.all(np.isfinite(trans), axis=-1)
    return rot[good], trans[good], sample[good]
