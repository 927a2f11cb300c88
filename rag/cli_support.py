"""What the `rag` and `ingest` commands share: one error policy, exit statuses, quiet libraries.

Every command body runs inside `run_command`: a `UserError` becomes one line and exit status 2
(or the status the error names), Ctrl+C exits 130, anything else is a bug (one line, exit 70).
At RAG_LOG_LEVEL=DEBUG every error also prints its traceback with its causes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sqlite3
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rag.app import App, build_app
from rag.errors import ExitStatus, UserError
from rag.logs import configure_logging, debugging
from rag.manifest import manifest_path, manifest_problem
from rag.settings import Settings, load_settings, validate_collection_name

EXIT_STATUSES = {
    ExitStatus.OK: "done",
    ExitStatus.PARTIAL: "some files failed (the others are stored), or `ingest check` found "
    "problems",
    ExitStatus.USER_ERROR: "a mistake you can fix, named in one line: usage, a setting, a "
    "missing path or collection, an empty collection, the store, the model, a questions file",
    ExitStatus.BUG: "an unexpected error (a bug); RAG_LOG_LEVEL=DEBUG shows its traceback",
    ExitStatus.BUSY: "another command is changing the collection and --no-wait was given",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl+C)",
}
EXIT_STATUS_HELP = "Exit status, the same for `rag` and `ingest`:\n\n" + "\n".join(
    textwrap.fill(meaning, 72, initial_indent=f"  {int(status):<4} ", subsequent_indent=" " * 7)
    for status, meaning in EXIT_STATUSES.items()
)
DEBUG_HINT = "set RAG_LOG_LEVEL=DEBUG to see the traceback"


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description or epilog; keeps indented blocks (tables) as
    written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in text.split("\n\n"):
            if block.startswith(" "):
                blocks.append("\n".join(indent + line for line in block.splitlines()))
            else:
                blocks.append(super()._fill_text(block, width, indent))
        return "\n\n".join(blocks)


def quiet_libraries() -> None:
    """Keep library chatter (progress bars, warnings) off the terminal; our output is the report."""
    warnings.filterwarnings("ignore")
    for name in ("chromadb", "llama_index", "sentence_transformers", "transformers", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)


def collection_name(value: str) -> str:
    """argparse type for --collection: a name Chroma accepts, or a usage error (exit 2)."""
    try:
        return validate_collection_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def fail(command: str, message: str, code: int, exc: BaseException | None = None) -> int:
    """Print `error: COMMAND: MESSAGE` on stderr (after the traceback at DEBUG); return `code`."""
    if exc is not None and debugging():
        traceback.print_exception(exc, file=sys.stderr)
    print(f"error: {command}: {message}", file=sys.stderr, flush=True)
    return int(code)


@contextmanager
def manifest_errors(settings: Settings, collection: str | None) -> Iterator[None]:
    """A SQLite failure while a command works on a collection becomes the one line that names
    its manifest and the fix (full disk, busy, unreadable, damaged)."""
    try:
        yield
    except sqlite3.Error as exc:
        path = manifest_path(settings.home, collection or settings.collection)
        raise manifest_problem(path, exc) from exc


def on_app(app: App | None, work: Callable[[App], int]) -> int:
    """Run `work` on `app`, or on an App built from the RAG_* settings (and closed after);
    logging follows the App's settings either way."""
    if app is not None:
        configure_logging(app.settings)
        return work(app)
    settings = load_settings()
    configure_logging(settings)
    built = build_app(settings)
    try:
        return work(built)
    finally:
        built.close()


def add_collection_option(parser: argparse.ArgumentParser, help: str) -> None:
    """--collection/-c NAME, checked against Chroma's naming rule when parsed."""
    parser.add_argument("--collection", "-c", type=collection_name, help=help)


def run_command(command: str, body: Callable[[], int], interrupted: str = "interrupted") -> int:
    """Run one command's body under the error policy; return its exit status."""
    quiet_libraries()
    configure_logging()  # from RAG_LOG_LEVEL until the body has its settings
    try:
        return int(body())
    except UserError as exc:
        return fail(command, one_line(str(exc)) or type(exc).__name__, exc.exit_status, exc)
    except KeyboardInterrupt as exc:
        return fail(command, interrupted, ExitStatus.INTERRUPTED, exc)
    except BrokenPipeError:
        # The reader went away (`rag ask --json | head`): stop quietly, as other tools do.
        try:  # Python would otherwise report the failed flush of stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return ExitStatus.OK
    except Exception as exc:
        detail = one_line(str(exc)).strip()
        message = f"unexpected {type(exc).__name__}" + (f": {detail}" if detail else "")
        if not debugging():
            message += f" ({DEBUG_HINT})"
        return fail(command, message, ExitStatus.BUG, exc)
