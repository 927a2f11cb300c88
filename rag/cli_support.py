"""Helpers shared by the command-line tools: one-line errors and quiet libraries."""

from __future__ import annotations

import logging
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
