"""Reprojection errors and confidence-weighted robust Gauss-Newton refinement of one pose.

Poses are world-to-camera (X_cam = R · X_world + t); pixels follow OpenCV (centre of pixel
(x, y) at integer (x, y)); K is the 3×3 camera matrix.
"""

import numpy as np

# Median of |r|/σ for a 2D isotropic Gaussian residual r: sqrt(2 ln 2).
_MEDIAN_2D_GAUSSIAN = float(np.sqrt(2 * np.log(2)))


def so3_exp(w_3):
    """Rotation matrix of an axis-angle vector (radians)."""
    theta = float(np.linalg.norm(w_3))
    k = np.array([[0, -w_3[2], w_3[1]], [w_3[2], 0, -w_3[0]], [-w_3[1], w_3[0], 0]])
    if theta < 1e-8:
        return np.eye(3) + k + 0.5 * k @ k
    return np.eye(3) + np.sin(theta) / theta * k + (1 - np.cos(theta)) / theta ** 2 * k @ k


def reprojection_errors(rot_33, t_3, points_n3, pixels_n2, K):
    """([N] pixel distance between projected points and pixels, [N] camera-frame depth, metres)."""
    cam = points_n3 @ rot_33.T + t_3
    z = cam[:, 2]
    zs = np.where(np.abs(z) > 1e-12, z, 1e-12)
    du = K[0, 0] * cam[:, 0] / zs + K[0, 1] * cam[:, 1] / zs + K[0, 2] - pixels_n2[:, 0]
    dv = K[1, 1] * cam[:, 1] / zs + K[1, 2] - pixels_n2[:, 1]
    return np.sqrt(du * du + dv * dv), z


def reprojection_errors_many(rot_m33, t_m3, points_n3, pixels_n2, K):
    """[M, N] squared pixel errors of M poses (non-positive depth → inf), float32.

    All poses go through one matrix product of their projection matrices K·[R | t] with the
    homogeneous points; single precision is plenty to compare errors with a threshold.
    """
    m, n = len(rot_m33), len(points_n3)
    proj = np.einsum("ij,mjk->mik", K, np.concatenate([rot_m33, t_m3[:, :, None]], axis=2))
    homog = np.concatenate([points_n3, np.ones((n, 1))], axis=1).T.astype(np.float32)
    q = (proj.reshape(3 * m, 4).astype(np.float32) @ homog).reshape(m, 3, n)
    w = q[:, 2]
    behind = w <= 1e-9
    w[behind] = 1.0
    du = q[:, 0] - pixels_n2[:, 0].astype(np.float32) * w
    dv = q[:, 1] - pixels_n2[:, 1].astype(np.float32) * w
    err2 = (du * du + dv * dv) / (w * w)
    err2[behind] = np.inf
    return err2


def refine_pose(rot_33, t_3, points_n3, pixels_n2, K, sigma_n=None, iterations=10, kernel=2.5,
                tolerance=1e-5):
    """Iteratively reweighted Gauss-Newton on pixel reprojection errors; returns (R, t).

    sigma_n: each point's 3D uncertainty (metres, e.g. 1/confidence) or None for equal weights.
    A point's pixel noise is taken as f·σ/depth, scaled per frame so that the median
    normalized residual matches a Gaussian's (only relative confidences matter); residuals
    go through a Cauchy kernel of width `kernel` (in those normalized units), so a cell that
    claims high confidence but disagrees is down-weighted like any other outlier. Stops when
    a step moves less than `tolerance` (radians + metres).
    """
    rot, t = rot_33.copy(), t_3.copy()
    fx, fy, skew, cx, cy = K[0, 0], K[1, 1], K[0, 1], K[0, 2], K[1, 2]
    focal = 0.5 * (fx + fy)
    n = len(points_n3)
    jac = np.empty((6, 2 * n))  # rows: δω, δt; columns: u residuals, then v residuals
    base = None
    for _ in range(iterations):
        cam = points_n3 @ rot.T + t
        z = cam[:, 2]
        if np.count_nonzero(z > 1e-9) < 4:
            break
        inv_z = np.where(z > 1e-9, 1.0 / np.maximum(z, 1e-9), 0.0)  # points behind count 0
        xn, yn = cam[:, 0] * inv_z, cam[:, 1] * inv_z
        res = np.concatenate([fx * xn + skew * yn + cx - pixels_n2[:, 0],
                              fy * yn + cy - pixels_n2[:, 1]])
        err = np.hypot(res[:n], res[n:])
        if base is None:
            # Fixed after the first step: depths barely move while refining.
            base = np.ones(n) if sigma_n is None else focal * sigma_n * inv_z
            # One overconfident cell must not outweigh a hundred typical ones.
            base = np.maximum(base, 0.1 * np.median(base))
        noise = np.maximum(base * (np.median(err / base) / _MEDIAN_2D_GAUSSIAN), 1e-6)
        sqrt_w = 1.0 / (noise * np.sqrt(1.0 + (err / (kernel * noise)) ** 2))

        # Normalized-coordinate derivatives for X' = X + δω × X + δt, then to pixels.
        xy = xn * yn
        ju, jv = jac[:, :n], jac[:, n:]
        ju[0], ju[1], ju[2] = -xy, 1.0 + xn * xn, -yn
        ju[3], ju[4], ju[5] = inv_z, 0.0, -xn * inv_z
        jv[0], jv[1], jv[2] = -1.0 - yn * yn, xy, xn
        jv[3], jv[4], jv[5] = 0.0, inv_z, -yn * inv_z
        if skew:
            ju *= fx
            ju += skew * jv
        else:
            ju *= fx
        jv *= fy
        jac *= np.concatenate([sqrt_w, sqrt_w])
        h = jac @ jac.T
        g = jac @ (res * np.concatenate([sqrt_w, sqrt_w]))
        h[np.diag_indices(6)] *= 1.0 + 1e-6
        try:
            step = -np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        d_rot = so3_exp(step[:3])
        rot, t = d_rot @ rot, d_rot @ t + step[3:]
        if np.linalg.norm(step) < tolerance:
            break
    return rot, t
