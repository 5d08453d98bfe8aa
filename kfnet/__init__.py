"""KFNet: the Kalman filter network over SCoordNet and OFlowNet, and its streaming relocalizer.

    from kfnet import Relocalizer
"""

__version__ = "0.1.0"
__all__ = ["Relocalizer"]


def __getattr__(name):
    # Loaded on first use, so that `python -m kfnet.test --help` does not wait for TensorFlow.
    if name == "Relocalizer":
        from kfnet.relocalizer import Relocalizer

        return Relocalizer
    raise AttributeError(f"module 'kfnet' has no attribute {name!r}")
