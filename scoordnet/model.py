"""SCoordNet, the measurement system (docs/reference.md §3): image → scene coordinates and their uncertainty."""

import keras
import tensorflow as tf

# (name, filters, kernel, stride) of the original `ScoreNet/<name>` layers, in order.
LAYERS = (
    ("conv1a", 64, 3, 1), ("conv1b", 64, 3, 1),
    ("conv2a", 256, 3, 2), ("conv2b", 256, 3, 1),
    ("conv3a", 512, 3, 2), ("conv3b", 512, 3, 1),
    ("conv4a", 1024, 3, 2), ("conv4b", 1024, 3, 1),
    ("conv5", 512, 3, 1), ("conv6", 256, 3, 1),
    ("conv7", 128, 1, 1),
)
SCOPE = "ScoreNet"


def scaled(filters, width):
    """Channels of a hidden layer under a width multiplier (at least 4)."""
    return max(4, int(round(filters * width)))


def normalize_image(images):
    """Network input normalization of docs/reference.md §3: (I − 128) · 0.00625 for I in [0, 255]."""
    return (tf.cast(images, tf.float32) - 128.0) * 0.00625


class SCoordNet(keras.Model):
    """Fully convolutional regressor: [B, H, W, 3] image → ([B, h, w, 3] coords, [B, h, w, 1] σ).

    Coordinates are in the scene's normalized frame (metres), h×w = H/8 × W/8, σ = exp(·).
    `width` scales the hidden channels; 1.0 is the paper's network (≈ 24.4 M parameters).
    """

    def __init__(self, width=1.0, name="scoordnet", **kwargs):
        super().__init__(name=name, **kwargs)
        self.width = float(width)
        self.convs = [
            keras.layers.Conv2D(scaled(f, self.width), k, strides=s, padding="same",
                                activation="relu", name=n)
            for n, f, k, s in LAYERS
        ]
        for layer in self.convs:
            setattr(self, layer.name, layer)  # tf.train.Checkpoint does not follow Keras 3 lists
        self.prediction = keras.layers.Conv2D(4, 1, padding="same", name="prediction")

    def call(self, images):
        x = normalize_image(images)
        for conv in self.convs:
            x = conv(x)
        out = tf.cast(self.prediction(x), tf.float32)
        return out[..., :3], tf.exp(out[..., 3:])

    def build_for(self, image_hw=(64, 64)):
        """Creates the variables with a dummy forward pass."""
        self(tf.zeros([1, *image_hw, 3]))
        return self

    def tf1_variables(self):
        """Original TF1 checkpoint names (`ScoreNet/<layer>/{kernel,bias}`) → variables."""
        out = {}
        for layer in [*self.convs, self.prediction]:
            out[f"{SCOPE}/{layer.name}/kernel"] = layer.kernel
            out[f"{SCOPE}/{layer.name}/bias"] = layer.bias
        return out
