"""Logging for the product's own modules (`rag`, `ingest`, `ui`), set by RAG_LOG_LEVEL.

One line per record on stderr. Every front-end calls `configure_logging` once it knows its
settings; before that (or when the settings themselves are bad) the RAG_LOG_LEVEL variable is
read directly, so that even a settings error can show its traceback at DEBUG.
"""

from __future__ import annotations

import logging
import os
import sys

from rag.settings import Settings

PRODUCT_LOGGERS = ("rag", "ingest", "ui")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_LEVEL = "WARNING"
FORMAT = "%(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (tests and the page swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; the live sys.stderr wins
        pass


_HANDLER_NAME = "rag-stderr"


def level_name(settings: Settings | None = None) -> str:
    """The configured level: the setting, else the RAG_LOG_LEVEL variable (ignored when bad)."""
    if settings is not None:
        return settings.log_level
    value = os.environ.get("RAG_LOG_LEVEL", "").strip().upper()
    return value if value in LEVELS else DEFAULT_LEVEL


def configure_logging(settings: Settings | None = None) -> None:
    """Send the product's log records at the configured level, one line each, to stderr.
    Calling it again (a second command in one process, the page's reruns) adds nothing twice."""
    level = getattr(logging, level_name(settings))
    for name in PRODUCT_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
            handler = _StderrHandler()
            handler.set_name(_HANDLER_NAME)
            logger.addHandler(handler)


def debugging() -> bool:
    """True when RAG_LOG_LEVEL (or the setting) asks for DEBUG: errors then show tracebacks."""
    return logging.getLogger("rag").isEnabledFor(logging.DEBUG)
