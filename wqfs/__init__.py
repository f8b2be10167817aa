"""wqfs: Linux's general notification queue (watch_queue) and key notifications, in user space."""
__version__ = "0.1.0"
