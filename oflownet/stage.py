"""Stage 2: OFlowNet trained on consecutive frame pairs through the filter's prediction.

Each step trains every pair of its batch in both directions at once (k → k+1 and k+1 → k as
one batch of 2B, each loss term normalized over the cells of both directions together), as the
original's batch of two frames did (docs/reference.md §5).
"""

import numpy as np
import tensorflow as tf

from common import losses
from common.distribute import global_mean, global_sum, num_replicas
from common.filter import predict
from oflownet.cost_volume import WINDOW
from oflownet.losses import photometric_terms
from oflownet.model import OFlowNet

NLL_CAP = -1.0  # per-cell ℓ above this is a hopeless cell: no gradient
PHOTOMETRIC_WEIGHT = 2.0
SMOOTHNESS_WEIGHT = 50.0
NOISE_SIGMA = (0.005, 0.01)  # metres: range of the Gaussian noise on the previous state (--noise)


def neighbourhood_mask(mask_prev_bhw1, mask_cur_bhw1, window=WINDOW):
    """[B, h, w, 1] float: current cell valid and every previous cell p + d, d ∈ {−4…3}², valid.

    Those are all the cells a flow in the window can sample from, so the prior of a cell
    counted here mixes only valid previous labels. Cells off the map count as invalid (zero
    padding), hence a min-pool over the padded previous mask.
    """
    half = window // 2
    mask_prev = tf.cast(mask_prev_bhw1, tf.float32)
    pad = [[0, 0], [half, window - 1 - half], [half, window - 1 - half], [0, 0]]
    padded = tf.pad(mask_prev, pad)
    all_valid = -tf.nn.max_pool2d(-padded, window, 1, "VALID")
    return all_valid * tf.cast(mask_cur_bhw1, tf.float32)


def both_directions(batch):
    """The pairs (k, k+1) of a batch as 2B pairs: k → k+1 first, then k+1 → k."""
    out = dict(batch)
    for name in ("image", "coords", "mask"):
        prev, cur = batch[f"{name}_prev"], batch[f"{name}_cur"]
        out[f"{name}_prev"], out[f"{name}_cur"] = tf.concat([prev, cur], 0), tf.concat([cur, prev], 0)
    return out


class OFlowNetStage:
    """Owns the network; loss = capped temporal NLL + 2 × photometric + 50 × smoothness.

    With `noise`, the previous state is its ground truth plus Gaussian noise of σ_n ~ U(0.005,
    0.01) m per pair, and σ_n² its variance; the draws depend only on (seed, step, replica)
    when `step` (the optimizer's iteration variable) is set, so a resumed run draws the same.
    """

    name = "oflownet"

    def __init__(self, width=1.0, noise=False, seed=0, nll_cap=NLL_CAP):
        self.nll_cap = float(nll_cap)
        self.net = OFlowNet(width=width)
        self.nets = {"oflownet": self.net}
        self.noise = bool(noise)
        self.seed = int(seed)
        self.step = None

    def trainable_variables(self):
        return self.net.trainable_variables

    def _previous_state(self, coords_bhw3):
        """(previous coords, previous variance [B, 1, 1, 1]) in the normalized frame.

        coords_bhw3 holds both directions' previous frames, [frames k; frames k+1]: one noise
        level per pair, shared by its two frames (the original drew one per step of two frames).
        """
        batch = tf.shape(coords_bhw3)[0]
        if not self.noise:
            return coords_bhw3, tf.zeros([batch, 1, 1, 1], coords_bhw3.dtype)
        step = tf.cast(self.step if self.step is not None else 0, tf.int64)
        ctx = tf.distribute.get_replica_context()
        replica = tf.cast(0 if ctx is None else ctx.replica_id_in_sync_group, tf.int64)
        draw = 2 * (step * 1024 + replica)  # two independent streams per (step, replica)
        seed = tf.constant(self.seed, tf.int64)
        sigma = tf.random.stateless_uniform([batch // 2, 1, 1, 1], tf.stack([seed, draw]), *NOISE_SIGMA)
        sigma = tf.concat([sigma, sigma], 0)
        unit = tf.random.stateless_normal(tf.shape(coords_bhw3), tf.stack([seed, draw + 1]))
        return coords_bhw3 + sigma * unit, tf.square(sigma)

    def loss(self, batch):
        batch = both_directions(batch)
        image_prev, image_cur = batch["image_prev"], batch["image_cur"]
        prev_coords, prev_var = self._previous_state(batch["coords_prev"])
        flow, sigma_q = self.net((image_prev, image_cur), training=True)
        flow, sigma_q = tf.cast(flow, tf.float32), tf.cast(sigma_q, tf.float32)
        prior, prior_var = predict(prev_coords, prev_var, flow, tf.square(sigma_q))
        mask = neighbourhood_mask(batch["mask_prev"], batch["mask_cur"])
        small_prev, small_cur = losses.map_size_image(image_prev), losses.map_size_image(image_cur)

        nll, count = losses.coord_nll_terms(prior, tf.sqrt(prior_var), batch["coords_cur"], mask,
                                            cap=self.nll_cap)
        # As in the original, the photometric term covers every valid current cell (the
        # neighbourhood mask would leave the map's border cells without any training signal).
        photo, photo_count = photometric_terms(small_prev, small_cur, flow, batch["mask_cur"])
        smooth, smooth_count = losses.smoothness_terms(prior, small_cur, mask)
        hits, _ = losses.accuracy_terms(prior, batch["coords_cur"], mask)
        magnitude = tf.norm(flow, axis=-1)
        # The order check of oflownet/test.py on the batch's two directions: about 0 when swapping
        # the frames reverses the flow, above 1 when the network outputs one motion for every pair.
        forward, backward = tf.split(flow, 2, axis=0)
        order = tf.sqrt(global_sum(tf.reduce_sum(tf.square(forward + backward)))
                        / tf.maximum(global_sum(tf.reduce_sum(tf.square(forward - backward))), 1e-12))

        nll = global_mean(nll, count)
        photo = global_mean(photo, photo_count)
        smooth = global_mean(smooth, smooth_count)
        loss = nll + PHOTOMETRIC_WEIGHT * photo + SMOOTHNESS_WEIGHT * smooth
        return loss, {"nll": nll, "photometric": photo, "smoothness": smooth,
                      "accuracy": global_mean(hits, count, plus_one=False),
                      "flow_magnitude": global_mean(tf.reduce_sum(magnitude),
                                                    tf.cast(tf.size(magnitude), tf.float32), plus_one=False),
                      "order_symmetry": order / num_replicas()}

    def validation_errors(self, data, to_train_44=None, frames=None, batch_size=4):
        """{'warped_label_error', 'zero_flow_error': [n] cm} over the consecutive pairs of the first
        `frames` frames of a labelled folder: frame k−1's labels warped by the flow onto frame k
        (cells whose sample mixes only valid labels, in view), and unmoved, against frame k's.
        Both are labels of one folder, so its normalized frame needs no mapping."""
        from common.data.pipelines import test_dataset
        from common.evaluation import label_errors_cm
        from common.filter import warped_labels

        if getattr(self, "_val_fns", None) is None:
            self._val_fns = (tf.function(self.net.features),
                             tf.function(lambda prev, cur: self.net.flow_from_features(prev, cur)[0]))
        features, flow_of = self._val_fns
        warped, still, last = [], [], None  # last: (features, coords, mask) of the previous frame
        for b in test_dataset(data, batch_size, stop=frames):
            feats = features(b["image"])
            chain = ([] if last is None else [last]) + [
                (feats[i:i + 1], b["coords"][i:i + 1], b["mask"][i:i + 1]) for i in range(len(feats))]
            new = [True] * (len(chain) - len(feats)) + [bool(x) for x in b["new_sequence"].numpy()]
            pairs = [(a, c) for a, c, start in zip(chain[:-1], chain[1:], new[1:]) if not start]
            if pairs:
                prev = [tf.concat([p[0][n] for p in pairs], 0) for n in range(3)]
                cur = [tf.concat([p[1][n] for p in pairs], 0) for n in range(3)]
                prior, usable = warped_labels(flow_of(prev[0], cur[0]), prev[1], prev[2])
                mask = cur[2] * tf.cast(usable[..., None], cur[2].dtype)
                warped.append(label_errors_cm(prior, cur[1], mask))
                still.append(label_errors_cm(prev[1], cur[1], cur[2] * prev[2]))
            last = chain[-1]
        empty = np.zeros(0)
        return {"warped_label_error": np.concatenate(warped) if warped else empty,
                "zero_flow_error": np.concatenate(still) if still else empty}

    def summary_images(self, batch, count=2):
        """Pictures of the first pairs: current image, flow, σ_q, error of the prior from the labels."""
        from common import summaries

        prev, cur = batch["image_prev"][:count], batch["image_cur"][:count]
        coords_prev = batch["coords_prev"][:count]
        flow, sigma_q = self.net((prev, cur), training=False)
        flow, sigma_q = tf.cast(flow, tf.float32), tf.cast(sigma_q, tf.float32)
        prior, _ = predict(coords_prev, tf.zeros_like(coords_prev[..., :1]), flow, tf.square(sigma_q))
        mask = neighbourhood_mask(batch["mask_prev"][:count], batch["mask_cur"][:count])
        return {"image": summaries.input_pictures(cur),
                "flow": summaries.flow_pictures(flow),
                "sigma_q": summaries.sigma_pictures(sigma_q),
                "coord_error_prior": summaries.coordinate_pictures(prior, batch["coords_cur"][:count], mask)}
