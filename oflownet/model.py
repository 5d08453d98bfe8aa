"""OFlowNet (docs/reference.md §3): feature tower + cost volume + per-cell U-Net → flow and process noise.

Flow is in map cells, from a current-frame cell to its position in the previous frame,
(x, y) = (column, row) order; σ_q is a standard deviation in metres.
"""

import keras
import tensorflow as tf

from oflownet.cost_volume import (  # noqa: F401 (public API)
    WINDOW,
    cost_volume,
    expected_flow,
    offsets,
)
from oflownet.features import FeatureTower
from oflownet.flownet import FlowNet


class OFlowNet(keras.Model):
    """The process system of KFNet; width 1.0 is the paper's network, smaller widths shrink every hidden layer."""

    def __init__(self, width=1.0, name="oflownet", **kwargs):
        super().__init__(name=name, **kwargs)
        self.width = float(width)
        self.tower = FeatureTower(width, name="tower")
        self.flownet = FlowNet(self.tower.channels, width, name="flownet")
        self.built = True  # both blocks build their variables up front

    def build_for(self, image_hw=None):
        """Returns self: the variables already exist (kept for symmetry with SCoordNet)."""
        return self

    def features(self, images_bhw3):
        """Images [B, H, W, 3] in 0..255 → L2-normalized features [B, H/8, W/8, C]."""
        return self.tower(images_bhw3)

    def flow_from_features(self, feat_prev, feat_cur):
        """(flow [B, h, w, 2] in map cells, σ_q [B, h, w, 1]) from the two frames' features."""
        volume = cost_volume(feat_prev, feat_cur, WINDOW)
        shape = tf.shape(feat_cur)
        channels = feat_cur.shape[-1]
        # Every cell's volume is one batch item of the U-Net: [B·h·w, 8, 8, C].
        logits, sigma_n1 = self.flownet(tf.reshape(volume, [-1, WINDOW, WINDOW, channels]))
        flow = tf.reshape(expected_flow(logits), tf.concat([shape[:3], [2]], axis=0))
        sigma_q = tf.reshape(sigma_n1, tf.concat([shape[:3], [1]], axis=0))
        return flow, sigma_q

    def call(self, inputs):
        image_prev, image_cur = inputs
        return self.flow_from_features(self.features(image_prev), self.features(image_cur))

    def tf1_variables(self):
        """Original TF1 variable name ("Temporal/feat1/kernel", …) → this model's variable."""
        layers = {conv.name: conv for conv in self.tower.convs()}
        layers.update(self.flownet.layers_by_name())
        names = {}
        for name, layer in layers.items():
            names[f"Temporal/{name}/kernel"] = layer.kernel
            names[f"Temporal/{name}/bias"] = layer.bias
        return names
