"""KFNet in TensorFlow 2: shared data, geometry, losses, training and the Kalman filter network."""

__version__ = "0.1.0"
