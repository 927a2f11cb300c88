"""Helpers shared by the command-line tools: one-line errors and quiet libraries."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def fail(message: str, code: int = 1) -> int:
    """Print one error line to stderr and return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def quiet_libraries() -> None:
    """Keep library chatter (progress bars, warnings) off the terminal; our output is the report."""
    warnings.filterwarnings("ignore")
    for name in ("chromadb", "llama_index", "sentence_transformers", "transformers", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def unexpected(command: str, exc: BaseException) -> int:
    """A bug, not a user mistake: still one line, with how to see the details."""
    if os.environ.get("RAG_LOG_LEVEL", "").upper() == "DEBUG":
        raise exc
    return fail(
        f"{command}: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
        "(set RAG_LOG_LEVEL=DEBUG to see the traceback)"
    )
