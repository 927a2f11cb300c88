"""One error policy for every front-end: what a user can fix, and the exit status it ends with.

A `UserError` is a mistake the person can put right (a setting, a path, the store, the model, an
empty collection, a bad question file); its message is one line naming the thing and the fix, and
front-ends show only that line. Any other exception is a bug: one line too, with the traceback
(and its causes) at RAG_LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

from enum import IntEnum


class UserError(Exception):
    """A mistake the user can fix; the message says what and how, in one line."""

    exit_status: int = 2


class ExitStatus(IntEnum):
    """Exit statuses shared by `rag` and `ingest` (README, "Exit status")."""

    OK = 0
    PARTIAL = 1  # the command ran, but some files failed or `ingest check` found problems
    USER_ERROR = 2  # usage, settings, store, model, missing path, empty collection...
    BUG = 70  # an unexpected error (EX_SOFTWARE); RAG_LOG_LEVEL=DEBUG shows the traceback
    BUSY = 75  # another command is changing the collection and --no-wait was given (EX_TEMPFAIL)
    INTERRUPTED = 130  # Ctrl+C
