"""Offline, private question answering over your own documents."""

from rag.offline import enforce_offline

enforce_offline()

__version__ = "0.1.0"
