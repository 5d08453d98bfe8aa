"""Scene-coordinate errors against labels (docs/reference.md §6): per frame and over a whole run."""

import numpy as np

ACCURACY_CM = 5.0


class CoordErrors:
    """Collects per-cell errors (cm) of valid cells, frame by frame."""

    def __init__(self, name):
        self.name = name
        self.errors_cm = []
        self.frames = {}

    def add(self, k, pred_hw3, gt_hw3, mask_hw1):
        """Adds one frame; returns (median cm, share within 5 cm) of its valid cells (nan if none)."""
        valid = np.asarray(mask_hw1)[..., 0] > 0.5
        err = 100.0 * np.linalg.norm(np.asarray(pred_hw3, np.float64) - gt_hw3, axis=-1)[valid]
        self.errors_cm.append(err)
        stats = (float(np.median(err)), float(np.mean(err <= ACCURACY_CM))) if err.size else (np.nan, np.nan)
        self.frames[int(k)] = stats
        return stats

    def summary(self):
        """{'median_cm', 'within_5cm', 'cells', 'frames'} over all valid cells of all frames."""
        err = np.concatenate(self.errors_cm) if self.errors_cm else np.zeros(0)
        if not err.size:
            return {"median_cm": float("nan"), "within_5cm": float("nan"), "cells": 0,
                    "frames": len(self.frames)}
        return {"median_cm": float(np.median(err)), "within_5cm": float(np.mean(err <= ACCURACY_CM)),
                "cells": int(err.size), "frames": len(self.frames)}

    def summary_line(self):
        s = self.summary()
        return (f"{self.name}: median coordinate error {s['median_cm']:.2f} cm, "
                f"{100 * s['within_5cm']:.1f} % of cells within 5 cm ({s['frames']} frames, "
                f"{s['cells']} cells)")


def label_errors_cm(pred_nhw3, gt_nhw3, mask_nhw1, to_frame_44=None):
    """[n] distances (cm) of predicted maps to their labels over the valid cells; the labels are
    first mapped by `to_frame_44` (e.g. a validation folder's normalized frame → the training one)."""
    from common.geometry import transform_points

    gt = np.asarray(gt_nhw3, np.float64)
    if to_frame_44 is not None:
        gt = transform_points(to_frame_44, gt)
    valid = np.asarray(mask_nhw1)[..., 0] > 0.5
    return 100.0 * np.linalg.norm(np.asarray(pred_nhw3, np.float64) - gt, axis=-1)[valid]
