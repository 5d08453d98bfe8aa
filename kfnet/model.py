"""KFNet (docs/reference.md §1, §4): SCoordNet measures, OFlowNet predicts, the Kalman filter fuses.

Wiring only: the networks live in scoordnet/ and oflownet/, the filter in common/filter.py.
Coordinates are in the scene's normalized frame; variances σ² throughout.
"""

import tensorflow as tf

from common import filter as kf


class KFNet:
    """The two networks and the filter, for 4-frame training windows and for streaming."""

    def __init__(self, scoordnet, oflownet):
        self.scoordnet = scoordnet
        self.oflownet = oflownet

    @property
    def nets(self):
        return {"scoordnet": self.scoordnet, "oflownet": self.oflownet}

    def networks(self, images_nhw3, training=False):
        """One pass of both networks over N frames: (z [N,h,w,3], R [N,h,w,1], features [N,h,w,C])."""
        z, sigma = self.scoordnet(images_nhw3, training=training)
        return z, tf.square(sigma), self.oflownet.features(images_nhw3)

    def window(self, images_btHW3, training=False):
        """Runs the filter through windows of T frames, starting from the first measurement.

        Returns dicts of [B, T, h, w, ·] maps: measurement, prior and posterior, each with
        'coords' and 'var'. Frame 1's prior and posterior are its measurement, as in the original.
        """
        shape = tf.shape(images_btHW3)
        b, t = shape[0], images_btHW3.shape[1]
        flat = tf.reshape(images_btHW3, tf.concat([[-1], shape[2:]], 0))
        z, r, feats = self.networks(flat, training=training)

        def per_frame(x):
            return tf.reshape(x, tf.concat([[b, t], tf.shape(x)[1:]], 0))

        z, r, feats = per_frame(z), per_frame(r), per_frame(feats)
        post_x, post_p = z[:, 0], r[:, 0]
        priors, posts = [(post_x, post_p)], [(post_x, post_p)]
        for i in range(1, t):
            flow, sigma_q = self.oflownet.flow_from_features(feats[:, i - 1], feats[:, i])
            prior_x, prior_p = kf.predict(post_x, post_p, flow, tf.square(sigma_q))
            post_x, post_p = kf.update(prior_x, prior_p, z[:, i], r[:, i])
            priors.append((prior_x, prior_p))
            posts.append((post_x, post_p))

        def stack(pairs):
            return {"coords": tf.stack([p[0] for p in pairs], 1), "var": tf.stack([p[1] for p in pairs], 1)}

        return {"measurement": {"coords": z, "var": r}, "prior": stack(priors), "posterior": stack(posts)}
