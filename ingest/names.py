"""File names as the product finds, keeps and prints them.

A name on disk is bytes. Python hands over bytes that are not UTF-8 as lone surrogates, which
SQLite, Chroma and a UTF-8 terminal all refuse; such names are shown with those bytes as \\xNN.
"""

from __future__ import annotations

import os
from pathlib import Path

from ingest.errors import FileProblem

# Characters that would split one record over several lines or move the cursor on a terminal.
LINE_BREAKING = {"\u2028", "\u2029"}
SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_utf8(text: str) -> bool:
    """False when the name held bytes that are not UTF-8 (decoded as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escape_bytes(text: str) -> str:
    """The name with every byte that is not UTF-8 written as \\xNN; other text unchanged."""
    if is_utf8(text):
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from a byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def printable(text: str) -> str:
    """One line of text for a terminal: undecodable bytes and control characters escaped."""
    text = escape_bytes(text)
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char in SHORT_ESCAPES:
            out.append(SHORT_ESCAPES[char])
        elif char.isprintable() or not (is_control(char) or char in LINE_BREAKING):
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


class SkippedPath(type(Path())):  # type: ignore[misc]
    """A path that discover() found but that must not be ingested; `problem` says why.

    check_readable() raises the problem, so the pipeline reports it like any unreadable file.
    """

    problem: FileProblem


def skipped(path: str | os.PathLike, problem: FileProblem) -> SkippedPath:
    found = SkippedPath(path)
    found.problem = problem
    return found
