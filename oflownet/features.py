"""OFlowNet's feature tower: one 1/8-resolution, unit-length descriptor per map cell (docs/reference.md §3)."""

import keras
import tensorflow as tf

# (name, channels at width 1.0, stride); feat7 is linear.
TOWER = [("feat1", 16, 1), ("feat2", 32, 2), ("feat3", 32, 1), ("feat4", 64, 2),
         ("feat5", 64, 1), ("feat6", 128, 2), ("feat7", 32, 1)]


def scaled(channels, width):
    """Channels of a hidden layer at a width multiplier (exact at 1.0, never below 4)."""
    return max(4, int(round(channels * width)))


class FeatureTower(keras.layers.Layer):
    """Images [B, H, W, 3] in 0..255 → L2-normalized features [B, H/8, W/8, C], C = 32 at width 1."""

    def __init__(self, width=1.0, **kwargs):
        super().__init__(**kwargs)
        in_channels = 3
        for name, channels, stride in TOWER:
            conv = keras.layers.Conv2D(scaled(channels, width), 3, strides=stride, padding="same",
                                       activation=None if name == "feat7" else "relu", name=name)
            conv.build((None, None, None, in_channels))
            # One attribute per layer: tf.train.Checkpoint does not follow Keras 3's tracked lists.
            setattr(self, name, conv)
            in_channels = conv.filters
        self.channels = in_channels
        self.built = True

    def convs(self):
        """The convolutions feat1 … feat7 in order."""
        return [getattr(self, name) for name, _, _ in TOWER]

    def call(self, images_bhw3):
        x = (tf.cast(images_bhw3, tf.float32) - 128.0) * 0.00625
        for conv in self.convs():
            x = conv(x)
        # Normalized in float32: under mixed precision the squared sum would keep only 8 bits.
        return tf.nn.l2_normalize(tf.cast(x, tf.float32), axis=-1)
