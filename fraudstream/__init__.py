"""fraudstream: real-time fraud detection for payment transactions."""

__version__ = "0.1.0"
