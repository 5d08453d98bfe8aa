"""The base package below the three networks: data, geometry, poses, losses, the Kalman filter
math, file formats, training and command-line helpers. It imports no network package."""
