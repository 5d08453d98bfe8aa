"""Stage 3: SCoordNet and OFlowNet fine-tuned together through the filter (docs/reference.md §5)."""

import tensorflow as tf

from common import losses
from common.distribute import global_mean
from kfnet.model import KFNet

CAP = -2.0  # per-cell NLL cap of stage 3
WEIGHTS = {"measurement": 0.2, "prior": 0.2, "posterior": 0.6}
SMOOTHNESS = 50.0


class KFNetStage:
    """Loss = 0.2·L_measurement + 0.2·L_prior + 0.6·L_posterior, each NLL (ℓ ≤ −2) + 50·smoothness.

    Each term covers all frames of the window, frame 1's prior and posterior being its
    measurement (map and σ), each normalized over its own valid cells, as in the original.
    """

    name = "kfnet"

    def __init__(self, scoordnet, oflownet, nll_cap=CAP):
        self.model = KFNet(scoordnet, oflownet)
        self.nll_cap = float(nll_cap)
        self.nets = self.model.nets

    def trainable_variables(self):
        return self.model.scoordnet.trainable_variables + self.model.oflownet.trainable_variables

    def loss(self, batch):
        images, gt, mask = batch["images"], batch["coords"], batch["mask"]
        out = self.model.window(images, training=True)
        small = _per_frame(losses.map_size_image, images)
        total, metrics = 0.0, {}
        g, m, im = _flatten(gt), _flatten(mask), _flatten(small)
        for key in WEIGHTS:
            coords = _flatten(out[key]["coords"])
            sigma = tf.sqrt(_flatten(out[key]["var"]))
            nll_sum, count = losses.coord_nll_terms(coords, sigma, g, m, cap=self.nll_cap)
            smooth_sum, smooth_count = losses.smoothness_terms(coords, im, m)
            hits, _ = losses.accuracy_terms(coords, g, m)
            nll = global_mean(nll_sum, count)
            smooth = global_mean(smooth_sum, smooth_count)
            total += WEIGHTS[key] * (nll + SMOOTHNESS * smooth)
            metrics[f"{key}_nll"] = nll
            metrics[f"{key}_accuracy"] = global_mean(hits, count, plus_one=False)
        return total, metrics

    def summary_images(self, batch, count=2):
        """Pictures of the first windows' last frame: coordinate error and σ of the measurement,
        prior and posterior; the flow into that frame and its σ_q."""
        from common import summaries

        images = batch["images"][:count]
        out = self.model.window(images, training=False)
        flow, sigma_q = self.model.oflownet((images[:, -2], images[:, -1]), training=False)
        pictures = {"image": summaries.input_pictures(images[:, -1]),
                    "flow": summaries.flow_pictures(tf.cast(flow, tf.float32)),
                    "sigma_q": summaries.sigma_pictures(tf.cast(sigma_q, tf.float32))}
        gt, mask = batch["coords"][:count, -1], batch["mask"][:count, -1]
        for key in ("measurement", "prior", "posterior"):
            coords, var = out[key]["coords"][:, -1], out[key]["var"][:, -1]
            pictures[f"coord_error_{key}"] = summaries.coordinate_pictures(coords, gt, mask)
            pictures[f"sigma_{key}"] = summaries.sigma_pictures(tf.sqrt(var))
        return pictures


def _flatten(x_bt):
    """[B, T, …] → [B·T, …]."""
    return tf.reshape(x_bt, tf.concat([[-1], tf.shape(x_bt)[2:]], 0))


def _per_frame(fn, x_bt):
    y = fn(_flatten(x_bt))
    return tf.reshape(y, tf.concat([tf.shape(x_bt)[:2], tf.shape(y)[1:]], 0))

