"""OFlowNet's per-cell U-Net: an 8×8 cost volume → 64 offset logits and a process-noise σ (docs/reference.md §3).

Layers and kernel sizes follow the original (cnn_wrapper/OFlowNet.py): every conv and
transposed conv is 3×3, biased and ReLU except `prediction`; the noise head reads conv3b's
1×1 output through dense 64 → 32 → 1.

The layers whose input is 2×2 or 1×1 (conv2b … conv4, upconv1) run as one matrix product each:
the layer's linear map at that size, read off by passing it the unit basis. Same numbers (to
float rounding), less than half the time at the paper's size, where the U-Net sees 4800 cells
per frame and a 3×3 kernel on a 2×2 map is mostly padding (scripts/benchmark.py --full).
"""

import keras
import tensorflow as tf
from keras import ops

from oflownet.features import scaled


def _conv(name, channels, stride, in_channels, relu=True):
    layer = keras.layers.Conv2D(channels, 3, strides=stride, padding="same",
                                activation="relu" if relu else None, name=name)
    layer.build((None, None, None, in_channels))
    return layer


def _upconv(name, channels, in_channels):
    layer = keras.layers.Conv2DTranspose(channels, 3, strides=2, padding="same", activation="relu", name=name)
    layer.build((None, None, None, in_channels))
    return layer


def _dense(name, units, in_units, relu=True):
    layer = keras.layers.Dense(units, activation="relu" if relu else None, name=name)
    layer.build((None, in_units))
    return layer


def _as_matmul(layer, x_nhwc, transpose=False, relu=True):
    """layer(x) for a small spatial size, as x (flattened) times the layer's linear map there."""
    _, h, w, c = x_nhwc.shape
    n = h * w * c
    basis = tf.reshape(tf.eye(n, dtype=x_nhwc.dtype), [n, h, w, c])
    kernel = ops.cast(layer.kernel, x_nhwc.dtype)
    conv = ops.conv_transpose if transpose else ops.conv
    columns = conv(basis, kernel, strides=layer.strides, padding=layer.padding)
    out_hwc = columns.shape[1:]
    y = tf.matmul(tf.reshape(x_nhwc, [-1, n]), tf.reshape(columns, [n, -1]))
    y = tf.reshape(y, [-1, *out_hwc]) + ops.cast(layer.bias, x_nhwc.dtype)
    return tf.nn.relu(y) if relu else y


class FlowNet(keras.layers.Layer):
    """Cost volumes [N, 8, 8, C] → (offset logits [N, 64], σ_q [N, 1])."""

    def __init__(self, in_channels=32, width=1.0, **kwargs):
        super().__init__(**kwargs)
        c16, c32, c64, c128 = (scaled(c, width) for c in (16, 32, 64, 128))
        self.conv0 = _conv("conv0", c32, 1, in_channels)              # 8×8
        self.conv1a = _conv("conv1a", c32, 2, c32)                    # 4×4
        self.conv1b = _conv("conv1b", c32, 1, c32)
        self.conv2a = _conv("conv2a", c64, 2, c32)                    # 2×2
        self.conv2b = _conv("conv2b", c64, 1, c64)
        self.conv3a = _conv("conv3a", c128, 2, c64)                   # 1×1
        self.conv3b = _conv("conv3b", c128, 1, c128)
        self.upconv2 = _upconv("upconv2", c64, c128)                  # 2×2
        self.conv4 = _conv("conv4", c64, 1, c64 + c64)
        self.upconv1 = _upconv("upconv1", c32, c64)                   # 4×4
        self.conv5 = _conv("conv5", c32, 1, c32 + c32)
        self.upconv0 = _upconv("upconv0", c16, c32)                   # 8×8
        self.conv6 = _conv("conv6", c16, 1, c16 + c32)
        self.prediction = _conv("prediction", 1, 1, c16, relu=False)
        self.fc1 = _dense("fc1", c64, c128)
        self.fc2 = _dense("fc2", c32, c64)
        self.uncertainty = _dense("uncertainty", 1, c32, relu=False)
        self.built = True

    def call(self, volume_n88c):
        x0 = self.conv0(volume_n88c)
        x1 = self.conv1b(self.conv1a(x0))
        x2 = _as_matmul(self.conv2b, self.conv2a(x1))
        x3 = _as_matmul(self.conv3b, _as_matmul(self.conv3a, x2))
        # Skip connections concatenate the upsampled map first, as the original does.
        y = _as_matmul(self.conv4, tf.concat([_as_matmul(self.upconv2, x3, transpose=True), x2], axis=-1))
        y = self.conv5(tf.concat([_as_matmul(self.upconv1, y, transpose=True), x1], axis=-1))
        y = self.conv6(tf.concat([self.upconv0(y), x0], axis=-1))
        # Outputs in float32 (also under mixed precision): softmax and exp need its range and bits.
        logits = tf.cast(tf.reshape(self.prediction(y), [-1, 64]), tf.float32)  # row-major (dy, dx)
        noise = tf.cast(self.uncertainty(self.fc2(self.fc1(tf.reshape(x3, [-1, x3.shape[-1]])))),
                        tf.float32)
        return logits, 0.01 * tf.exp(noise)

    def layers_by_name(self):
        """Layer name → Keras layer, in the original's order."""
        names = ["conv0", "conv1a", "conv1b", "conv2a", "conv2b", "conv3a", "conv3b", "upconv2", "conv4",
                 "upconv1", "conv5", "upconv0", "conv6", "prediction", "fc1", "fc2", "uncertainty"]
        return {name: getattr(self, name) for name in names}
