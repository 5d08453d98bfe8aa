"""How much temporal filtering can gain on a test sequence, whatever OFlowNet learns.

Runs KFNet's filter loop (kfnet.relocalizer.KalmanStream) over a KFNet test's saved measurement maps with the true
flow (from the labels and the ground-truth poses) and a constant process noise, and measures
the two things that bound its gain: how alike consecutive measurement errors are (a filter
averages errors away only where they differ from frame to frame) and how much the warp itself
loses (ground-truth coordinates of the previous frame warped by the true flow, against the
current frame's). Everything here works in the world frame: the filter is isotropic, so a
rigid change of frame changes none of the errors.
"""

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from common import filter as kf
from kfnet.relocalizer import KalmanStream


@dataclass
class Frame:
    """One test frame: world labels [h,w,3], valid [h,w] bool, measurement [h,w,4] (x, y, z, 1/σ),
    flow [h,w,2] from this frame to the previous one (ignored at a sequence start)."""

    label: np.ndarray
    valid: np.ndarray
    measurement: np.ndarray
    flow: np.ndarray
    new_sequence: bool


def _warp(map_hwc, flow_hw2):
    return kf.warp(tf.constant(map_hwc[None], tf.float32), tf.constant(flow_hw2[None], tf.float32)).numpy()[0]


def _errors(frame, coords_hw3):
    return np.linalg.norm(coords_hw3 - frame.label, axis=-1)[frame.valid]


def warp_loss_maps(frames):
    """[h,w] per frame: ‖previous ground truth warped by the flow − this frame's‖ (metres), the
    process noise a filter would need to know; inf where there is nothing to compare (no label
    here or at a source, or a sequence start)."""
    maps = [np.full(frames[0].valid.shape, np.inf)]
    for prev, cur in zip(frames[:-1], frames[1:]):
        warped, sources = kf.warped_labels(tf.constant(cur.flow[None], tf.float32),
                                           tf.constant(prev.label[None], tf.float32),
                                           tf.constant(prev.valid[None, ..., None], tf.float32))
        loss = np.linalg.norm(warped.numpy()[0] - cur.label, axis=-1)
        ok = cur.valid & sources.numpy()[0] & (not cur.new_sequence)
        maps.append(np.where(ok, loss, np.inf))
    return maps


def filter_with_flow(frames, process_sigma, extra_sigmas=None):
    """Posterior coordinates [h,w,3] per frame: the Kalman filter (docs/reference.md §4, no NIS test) fed
    each frame's measurement and its `flow`, with process noise σ_q = process_sigma (metres),
    or per cell max(process_sigma, extra_sigmas[k]) when [h,w] maps are given."""
    posteriors, stream = [], KalmanStream()
    for k, frame in enumerate(frames):
        z = tf.constant(frame.measurement[None, ..., :3], tf.float32)
        r = tf.constant(1.0 / np.square(frame.measurement[None, ..., 3:]), tf.float32)
        sigma = np.full(frame.valid.shape, float(process_sigma))
        if extra_sigmas is not None:
            sigma = np.minimum(np.maximum(sigma, extra_sigmas[k]), 1e3)
        q = tf.constant(np.square(sigma)[None, ..., None], tf.float32)
        step = stream.filter(z, r, tf.constant(frame.flow[None], tf.float32), q, frame.new_sequence)
        posteriors.append(step.x.numpy()[0])
    return posteriors


def two_frame_gain(correlation):
    """Fraction of the error's standard deviation that averaging two equally accurate measurements
    removes when their errors correlate `correlation`: 1 − √((1 + ρ)/2) (0 for ρ = 1, 29 % for
    independent errors). A filter fusing consecutive frames gains about this much per step."""
    return 1.0 - float(np.sqrt((1.0 + correlation) / 2.0))


def analyse(frames, process_sigmas=(0.005, 0.01, 0.02, 0.05, 0.1)):
    """Dict of the bounds: true-flow size, error correlation, warp loss, filtered medians (cm)."""
    losses = warp_loss_maps(frames)
    flow_cells, pairs_prev, pairs_cur, warp_loss = [], [], [], []
    for prev, cur, loss in zip(frames[:-1], frames[1:], losses[1:]):
        both = np.isfinite(loss)
        flow_cells.append(np.linalg.norm(cur.flow, axis=-1)[both])
        pairs_prev.append(_warp(prev.measurement[..., :3] - prev.label, cur.flow)[both].ravel())
        pairs_cur.append((cur.measurement[..., :3] - cur.label)[both].ravel())
        warp_loss.append(loss[both])
    if not np.concatenate(flow_cells).size:
        raise ValueError("no pair of consecutive frames shares a labelled cell")
    flow_cells, warp_loss = np.concatenate(flow_cells), np.concatenate(warp_loss)
    correlation = np.corrcoef(np.concatenate(pairs_prev), np.concatenate(pairs_cur))[0, 1]
    measurement = np.concatenate([_errors(f, f.measurement[..., :3]) for f in frames])

    def median_cm(posts):
        return 100 * float(np.median(np.concatenate([_errors(f, p) for f, p in zip(frames, posts)])))

    filtered = {float(s): median_cm(filter_with_flow(frames, s)) for s in process_sigmas}
    known_loss = median_cm(filter_with_flow(frames, min(process_sigmas), losses))
    return {
        "true_flow_median_cells": float(np.median(flow_cells)),
        "error_correlation": float(correlation),
        "two_frame_gain": two_frame_gain(correlation),
        "warp_loss_median_cm": 100 * float(np.median(warp_loss)),
        "warp_loss_mean_cm": 100 * float(np.mean(warp_loss)),
        "measurement_median_cm": 100 * float(np.median(measurement)),
        "true_flow_posterior_median_cm": filtered,
        "true_flow_known_loss_posterior_median_cm": known_loss,
    }
