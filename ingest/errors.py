"""Typed outcomes for files that cannot be stored; the pipeline records them and goes on."""

from __future__ import annotations


class FileProblem(Exception):
    """Base: a file that is not stored, with a one-line reason a person can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LoadError(FileProblem):
    """The file could not be read (corrupt, encrypted, wrong encoding, unreadable)."""


class SkipFile(FileProblem):
    """The file holds nothing to store (empty, unsupported type, no text)."""
