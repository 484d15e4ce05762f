"""nonstop: a high-availability manager for Linux service clusters."""

__version__ = "0.1.0"
