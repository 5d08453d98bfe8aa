"""Confidence-guided RANSAC over P3P samples, with local optimisation of the best hypotheses.

One call estimates one frame's world-to-camera pose from 2D–3D correspondences:
1. draw minimal samples in batches, each cell with probability ∝ its confidence (capped at the
   99th percentile so a few overconfident cells cannot take over every sample);
2. solve all samples of a batch at once (`pnp.p3p`) and score every hypothesis on a fixed
   random subset of cells with a truncated quadratic (MSAC) — one matrix product per batch;
3. stop once enough samples were drawn to have hit an all-inlier one with probability
   `success_prob`, judging the inlier share by the best hypothesis (confidence-weighted);
4. refine the few best hypotheses on their inliers (LO-RANSAC), keep the best on all cells,
   and finish with the confidence-weighted robust refinement on all cells within twice the
   threshold (measured: on 5 cm noise this cuts the median error by a fifth; no change at 2 cm).
"""

import math

import numpy as np

from pnp.p3p import p3p
from pnp.refine import refine_pose, reprojection_errors, reprojection_errors_many


def sampling_weights(confidence_n, mode="confidence"):
    """[N] probabilities of drawing each cell into a minimal sample."""
    if mode == "uniform":
        w = np.ones(len(confidence_n))
    elif mode == "confidence":
        w = np.minimum(confidence_n, np.quantile(confidence_n, 0.99))
    else:
        raise ValueError(f"unknown sampling mode '{mode}' (confidence or uniform)")
    return w / w.sum()


def draw_samples(rng, prob_n, pixels_n2, count, min_area):
    """[≤count, 3] indices of minimal samples: three distinct cells spanning ≥ min_area px²."""
    idx = rng.choice(len(prob_n), size=(count, 3), p=prob_n)
    d1 = pixels_n2[idx[:, 1]] - pixels_n2[idx[:, 0]]
    d2 = pixels_n2[idx[:, 2]] - pixels_n2[idx[:, 0]]
    area = 0.5 * np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])
    return idx[area >= min_area]


def _needed_samples(inlier_share, success_prob):
    """Samples needed to draw one all-inlier triple with probability success_prob."""
    p_good = inlier_share ** 3
    if p_good >= 1.0:
        return 1
    if p_good <= 0.0:
        return math.inf
    return math.log(1.0 - success_prob) / math.log1p(-p_good)


def _msac(err2, thr2):
    return np.sum(np.maximum(0.0, 1.0 - err2 / thr2), axis=-1)


def _local_optimisation(rot, t, points, pixels, sigma, K, thr, rng, rounds, max_points, iterations):
    """Alternates inlier selection and refinement; returns (R, t, [N] inlier mask, MSAC score)."""
    err, z = reprojection_errors(rot, t, points, pixels, K)
    for _ in range(rounds):
        inl = np.flatnonzero((err < thr) & (z > 0))
        if len(inl) < 6:
            break
        if len(inl) > max_points:
            inl = rng.choice(inl, max_points, replace=False)
        rot, t = refine_pose(rot, t, points[inl], pixels[inl], K,
                             None if sigma is None else sigma[inl], iterations=iterations)
        err, z = reprojection_errors(rot, t, points, pixels, K)
    err2 = np.where(z > 0, err * err, np.inf)
    return rot, t, err2 < thr * thr, float(_msac(err2, thr * thr))


def ransac_pnp(pixels_n2, points_n3, confidence_n, K, rng, threshold=10.0, hypotheses=256,
               sampling="confidence", weighting="confidence", score_points=256, batch=64,
               success_prob=0.999, lo_candidates=2, lo_rounds=2, lo_points=400,
               refine_iterations=10, refine_gate=2.0, min_inliers=8, min_area=0.0):
    """World-to-camera pose of one frame.

    Args:
      pixels_n2: [N, 2] image points, pixels. points_n3: [N, 3] world points, metres.
      confidence_n: [N] positive confidences 1/σ (1/metres). K: 3×3 camera matrix.
      rng: numpy Generator. threshold: inlier reprojection error, pixels.
      hypotheses: most minimal samples to draw. sampling / weighting: "confidence" or
      "uniform" (which cells are drawn; how much each counts in the refinement).
      min_area: smallest image triangle (px²) of a minimal sample; thinner ones are skipped.
      refine_gate: the final refinement uses cells within refine_gate × threshold.
    Returns:
      dict with rot [3, 3], t [3] (None on failure), inliers [N] bool, samples (drawn),
      hypotheses (P3P solutions scored), failure (None or the reason).
    """
    n = len(points_n3)
    thr2 = float(threshold) ** 2
    prob = sampling_weights(confidence_n, sampling)
    if weighting not in ("confidence", "uniform"):
        raise ValueError(f"unknown weighting '{weighting}' (confidence or uniform)")
    sigma = 1.0 / confidence_n if weighting == "confidence" else None
    rays = np.linalg.solve(K, np.concatenate([pixels_n2, np.ones((n, 1))], axis=1).T).T
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    subset = rng.choice(n, min(n, score_points), replace=False)
    sub_prob = prob[subset] / prob[subset].sum()

    rots, ts, scores = [], [], []
    drawn, best_score, needed = 0, -1.0, math.inf
    while drawn < hypotheses and drawn < needed:
        count = min(batch, hypotheses - drawn)
        samples = draw_samples(rng, prob, pixels_n2, count, min_area)
        drawn += count
        if len(samples) == 0:
            continue
        rot, t, _ = p3p(rays[samples], points_n3[samples])
        if len(rot) == 0:
            continue
        err2 = reprojection_errors_many(rot, t, points_n3[subset], pixels_n2[subset], K)
        score = _msac(err2, thr2)
        rots.append(rot), ts.append(t), scores.append(score)
        top = int(np.argmax(score))
        if score[top] > best_score:
            best_score = float(score[top])
            share = float(np.sum(sub_prob[err2[top] < thr2]))
            needed = _needed_samples(share, success_prob)

    result = {"rot": None, "t": None, "inliers": np.zeros(n, bool), "samples": drawn,
              "hypotheses": int(sum(len(s) for s in scores)), "failure": None}
    if not scores:
        result["failure"] = "no minimal sample gave a pose"
        return result
    rots, ts, scores = np.concatenate(rots), np.concatenate(ts), np.concatenate(scores)
    best = None
    for k in np.argsort(-scores)[:lo_candidates]:
        cand = _local_optimisation(rots[k], ts[k], points_n3, pixels_n2, sigma, K, threshold, rng,
                                   lo_rounds, lo_points, 3)
        if best is None or cand[3] > best[3]:
            best = cand
    rot, t, inl, _ = best
    if inl.sum() < min_inliers:
        result["failure"] = f"best hypothesis has {inl.sum()} inliers, fewer than {min_inliers}"
        return result
    # Final refinement on every cell within refine_gate × threshold (the robust kernel weighs
    # the noisier ones down), a second round if that set still moved.
    gate = refine_gate * threshold
    err, z = reprojection_errors(rot, t, points_n3, pixels_n2, K)
    used = (err < gate) & (z > 0)
    for _ in range(2):
        rot, t = refine_pose(rot, t, points_n3[used], pixels_n2[used], K,
                             None if sigma is None else sigma[used], iterations=refine_iterations)
        err, z = reprojection_errors(rot, t, points_n3, pixels_n2, K)
        new = (err < gate) & (z > 0)
        settled = np.count_nonzero(new != used) <= 0.002 * len(used)
        used = new
        if settled or used.sum() < min_inliers:
            break
    inl = (err < threshold) & (z > 0)
    if inl.sum() < min_inliers:
        result["failure"] = f"refined pose keeps {int(inl.sum())} inliers, fewer than {min_inliers}"
        return result
    result.update(rot=rot, t=t, inliers=inl)
    return result
