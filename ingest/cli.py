"""The `ingest` command: a thin layer over ingest.pipeline.

ingest PATH... [--sync] [--ocr]      add or update files and folders
ingest remove PATH...                forget files or folders
ingest list [--json]                 what is stored, per file
ingest collections [--json]          collections and their sizes
ingest check [--repair] [--json]     compare manifest, store and keyword index; mend them
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

from ingest.loaders import supported_suffixes
from ingest.names import printable
from ingest.pipeline import IngestReport, MissingPathError, discover
from rag import store
from rag.app import build_app
from rag.cli_support import fail, quiet_libraries, unexpected
from rag.locks import CollectionBusyError
from rag.manifest import (
    UnknownCollectionError,
    list_collections,
    manifest_path,
    manifest_problem,
)
from rag.models import ModelError
from rag.settings import Settings, SettingsError, load_settings
from rag.store import StoreError

EXIT_BUSY = 75  # EX_TEMPFAIL: try again later
SUBCOMMANDS = ("remove", "list", "collections", "check")
EXIT_HELP = (
    "Exit status: 0 all good, 1 some files failed (the rest are stored) or `check` found "
    "problems, 2 a usage, settings or store error, 75 the collection is busy (--no-wait)."
)
WAIT_HELP = (
    "fail at once (exit 75) when another command is changing the collection, instead of "
    "waiting for it to finish"
)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--collection", "-c", help="collection (default: RAG_COLLECTION or 'default')"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingest",
        description=(
            "Add documents to the local store so `rag ask` and the UI can answer from them. "
            "Folders are read recursively. Unchanged files are skipped without being read, changed "
            "files have their old chunks replaced, and moved or renamed files are updated without "
            "embedding them again."
        ),
        epilog=(
            "Other commands: `ingest remove PATH...` forgets files or folders, "
            "`ingest list [--json]` shows what is stored, `ingest collections` lists collections, "
            "`ingest check [--repair]` verifies (and mends) the store. Another command changing "
            "the same collection is waited for (or refused with --no-wait). "
            f"Formats: {' '.join(supported_suffixes())}. {EXIT_HELP} "
            "Settings come from RAG_* environment variables (see README)."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to ingest")
    add_common(parser)
    parser.add_argument(
        "--sync",
        action="store_true",
        help="also remove from the index every file under the given folders that no longer exists",
    )
    parser.add_argument(
        "--ocr",
        action="store_true",
        help="read PDF pages that have no text layer with Tesseract OCR (needs tesseract-ocr)",
    )
    parser.add_argument("--no-wait", action="store_true", help=WAIT_HELP)
    parser.add_argument(
        "--if-empty",
        action="store_true",
        help="do nothing when the collection already holds documents (used by `make run`)",
    )
    return parser


def build_sub_parser(command: str) -> argparse.ArgumentParser:
    if command == "remove":
        parser = argparse.ArgumentParser(
            prog="ingest remove",
            description="Forget files, or every file under folders, whether or not they still exist. "
            "Their chunks are deleted unless another path holds the same content.",
        )
        parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to forget")
        parser.add_argument("--no-wait", action="store_true", help=WAIT_HELP)
    elif command == "list":
        parser = argparse.ArgumentParser(
            prog="ingest list",
            description="Show every file the collection knows: status (stored, skipped, failed), "
            "chunks, SHA-256 and the reason for failures.",
        )
    elif command == "check":
        parser = argparse.ArgumentParser(
            prog="ingest check",
            description="Compare the manifest, the store's chunk ids and the keyword index, and "
            "report unfinished writes, orphan chunks, files whose chunks are missing, stale "
            "manifest entries and a damaged manifest or keyword index. --repair mends them: "
            "orphans are deleted, files with missing chunks are embedded again (or forgotten when "
            "they are gone), the keyword index is rebuilt, and a damaged manifest is rebuilt from "
            "the store. Exit status 0 clean, 1 problems remain.",
        )
        parser.add_argument("--repair", action="store_true", help="mend what is found")
        parser.add_argument("--no-wait", action="store_true", help=WAIT_HELP)
    else:
        parser = argparse.ArgumentParser(
            prog="ingest collections", description="List collections with file and chunk counts."
        )
    add_common(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else "add"
    if command == "add":
        args = build_parser().parse_args(argv)
    else:
        args = build_sub_parser(command).parse_args(argv[1:])
    quiet_libraries()
    try:
        settings = load_settings(collection=args.collection)
    except SettingsError as exc:
        return fail(f"ingest: {exc}", code=2)
    try:
        return COMMANDS[command](args, settings)
    except MissingPathError as exc:
        return fail(f"ingest: {exc}; check the path", code=2)
    except CollectionBusyError as exc:
        return fail(f"ingest: {exc}", code=EXIT_BUSY)
    except (SettingsError, StoreError, ModelError, ValueError) as exc:
        return fail(f"ingest: {exc}", code=2)
    except sqlite3.Error as exc:
        path = manifest_path(settings.home, settings.collection)
        return fail(f"ingest: {manifest_problem(path, exc)}", code=2)
    except KeyboardInterrupt:
        return fail("ingest: interrupted; files stored so far are kept", code=130)
    except Exception as exc:
        return unexpected("ingest", exc)


def run_add(args: argparse.Namespace, settings: Settings) -> int:
    if args.if_empty and store.count_chunks(build_app(settings).store.collection()) > 0:
        if args.json:
            print(json.dumps(IngestReport(collection=settings.collection).to_json()))
        else:
            print(f"collection '{settings.collection}' already holds documents; nothing to do")
        return 0
    files = discover(args.paths)
    ingestor = build_app(settings).ingestor(ocr=args.ocr)
    progress, close = progress_bar(len(files), enabled=not args.json and sys.stderr.isatty())
    try:
        report = ingestor.ingest(
            args.paths,
            progress=progress,
            files=files,
            sync=args.sync,
            wait=not args.no_wait,
            on_wait=notice,
        )
    finally:
        close()
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print_report(report)
    return report.exit_code


def run_remove(args: argparse.Namespace, settings: Settings) -> int:
    removed, paths = build_app(settings).ingestor().remove(args.paths, wait=not args.no_wait, on_wait=notice)
    if args.json:
        print(json.dumps({"removed": removed, "files": paths, "collection": settings.collection}))
    else:
        print(f"collection '{settings.collection}': removed {removed} file(s)")
        for path in paths:
            print(f"  removed {path}")
    if not removed and not args.json:
        print("  (nothing stored matched; `ingest list` shows what is stored)", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    try:
        records = build_app(settings).ingestor().records()
    except UnknownCollectionError:
        if args.collection:  # a name given by hand that matches nothing: say so
            raise
        records = []  # nothing ingested yet into the default collection
    if args.json:
        print(json.dumps([r.public() for r in records], ensure_ascii=False))
        return 0
    if not records:
        print(f"collection '{settings.collection}' holds no files; add some with `ingest PATH`")
    for record in records:
        detail = f"{record.chunks:>6} chunks" if record.status == "stored" else record.error or ""
        print(f"{record.status:8} {printable(detail):>13}  {printable(record.path)}")
    return 0


def run_collections(args: argparse.Namespace, settings: Settings) -> int:
    names = sorted(set(list_collections(settings.home)) | set(build_app(settings).store.names()))
    rows = []
    for name in names:
        try:
            records = build_app(settings).ingestor().records(name)
        except UnknownCollectionError:  # in the store but never written by `ingest`
            records = []
        stored = [r for r in records if r.status == "stored"]
        chunks = store.count_chunks(build_app(settings).store.collection(name, create=False))
        rows.append({"collection": name, "files": len(stored), "chunks": chunks})
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no collections yet; add documents with `ingest PATH`")
    for row in rows:
        print(f"{row['collection']}: {row['files']} files, {row['chunks']} chunks")
    return 0


def run_check(args: argparse.Namespace, settings: Settings) -> int:
    report = build_app(settings).ingestor().check(repair=args.repair, wait=not args.no_wait, on_wait=notice)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
        return 0 if report.clean else 1
    print(
        f"collection '{report.collection}': {report.files} file(s), {report.chunks} chunks in the "
        f"manifest, {report.store_chunks} in the store"
    )
    for line in report.repaired:
        print(f"  repaired: {line}")
    for problem in report.problems:
        where = problem.get("file") or problem.get("content") or ""
        print(f"  {problem['kind']:8} {problem['detail']}" + (f": {where}" if where else ""))
    for path in report.gone:
        print(
            f"  gone     {path} (no longer on disk; `ingest --sync` or `ingest remove` forgets it)"
        )
    if report.clean:
        print("  clean: manifest, store and keyword index agree")
    else:
        print("  problems found; `ingest check --repair` mends them", file=sys.stderr)
    return 0 if report.clean else 1


def notice(message: str) -> None:
    """Tell the person at the terminal why the command is waiting."""
    print(f"ingest: {message}", file=sys.stderr, flush=True)


COMMANDS = {
    "add": run_add,
    "remove": run_remove,
    "list": run_list,
    "collections": run_collections,
    "check": run_check,
}


def progress_bar(total: int, enabled: bool):
    """A tqdm bar on a terminal (files, chunks/s, ETA); a no-op elsewhere."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True)
    started = time.monotonic()
    chunks = 0

    def update(path: Path, outcome: str, new_chunks: int) -> None:
        nonlocal chunks
        chunks += new_chunks
        rate = chunks / max(time.monotonic() - started, 1e-6)
        bar.set_postfix_str(
            f"{chunks} chunks, {rate:.1f} chunks/s, {outcome}: {path.name}"[:70], refresh=False
        )
        bar.update(1)

    return update, bar.close


def print_report(report: IngestReport) -> None:
    print(
        f"collection '{report.collection}': {report.files} file(s) stored, {report.chunks} chunks, "
        f"{report.unchanged} unchanged, {report.moved} moved, {report.removed} removed, "
        f"{len(report.skipped)} skipped, {len(report.failed)} failed in {report.seconds:.1f}s"
    )
    # One line per file: names and reasons may hold newlines or other control characters.
    for item in report.skipped:
        print(f"  skipped {printable(item['file'])}: {printable(item['reason'])}")
    for item in report.warnings:
        print(f"  warning {printable(item['file'])}: {printable(item['warning'])}")
    for item in report.failed:
        print(f"  FAILED  {printable(item['file'])}: {printable(item['error'])}", file=sys.stderr)
