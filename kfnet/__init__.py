"""KFNet: the Kalman filter network over SCoordNet and OFlowNet, and its streaming relocalizer."""

__version__ = "0.1.0"
