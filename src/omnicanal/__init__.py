"""omnicanal: one shared, real-time customer record for every channel."""

__version__ = "0.1.0"
