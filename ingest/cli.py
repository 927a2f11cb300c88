"""The `ingest` command: a thin layer over the App's ingestor.

ingest [add] PATH... [--sync] [--ocr]  add or update files and folders (`add` may be left out)
ingest PATH... --ray [ADDRESS]        the same, parsing and embedding on a Ray cluster
ingest remove PATH...                 forget files or folders
ingest list [--json]                  what is stored, per file
ingest collections [--json]           collections and their sizes
ingest check [--repair] [--json]      compare manifest, store and keyword index; mend them
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from ingest.loaders import supported_suffixes
from ingest.names import printable
from ingest.pipeline import Ingestor, IngestReport, discover
from rag import store
from rag.app import App
from rag.cli_support import (
    EXIT_STATUS_HELP,
    HelpFormatter,
    add_collection_option,
    manifest_errors,
    on_app,
    run_command,
)
from rag.errors import ExitStatus
from rag.manifest import UnknownCollectionError, list_collections

SUBCOMMANDS = ("add", "remove", "list", "collections", "check", "reembed")
HELP_FLAGS = ("-h", "--help")
WAIT_HELP = (
    "fail at once (exit 75) when another command is changing the collection, instead of "
    "waiting for it to finish"
)


def add_common(parser: argparse.ArgumentParser) -> None:
    add_collection_option(parser, "collection (default: RAG_COLLECTION or 'default')")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-wait", action="store_true", help=WAIT_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingest",
        formatter_class=HelpFormatter,
        usage="ingest [add] PATH... [options]  |  ingest {remove,list,collections,check} ...",
        description=(
            "Add documents to the local store so `rag ask` and the page can answer from them. "
            "`ingest PATH...` is short for `ingest add PATH...` (write `ingest add list` for a "
            "file named like a command)."
        ),
        epilog=(
            "Run `ingest COMMAND --help` for a command's options. Another command changing the "
            "same collection is waited for (or refused with --no-wait). "
            f"Formats: {' '.join(supported_suffixes())}. Settings come from RAG_* environment "
            f"variables (see README).\n\n{EXIT_STATUS_HELP}"
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, prog="ingest")

    add = sub.add_parser(
        "add",
        formatter_class=HelpFormatter,
        help="store new and changed files and folders (the default command)",
        description=(
            "Store files and folders (read recursively). Unchanged files are skipped without "
            "being read, changed files have their old chunks replaced, and moved or renamed "
            "files are updated without embedding them again."
        ),
        epilog=EXIT_STATUS_HELP,
    )
    add.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to ingest")
    add_common(add)
    add.add_argument(
        "--sync",
        action="store_true",
        help="also remove from the index every file under the given folders that no longer exists",
    )
    add.add_argument(
        "--ocr",
        action="store_true",
        help="read PDF pages that have no text layer with Tesseract OCR (needs tesseract-ocr)",
    )
    add_wait(add)
    add.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="parse, split and embed on a Ray cluster (needs `pip install .[cluster]`): with no "
        "ADDRESS it uses RAG_RAY_ADDRESS, or starts a local one; 'auto' joins the one started "
        "here with `ray start`; HOST:PORT or ray://HOST:PORT joins another. The files must be "
        "at the same path on every node (shared storage). Write it after the paths",
    )
    add.add_argument(
        "--ray-actors",
        type=positive_int,
        metavar="N",
        help="with --ray: embedding actors on the cluster, each loading the model once "
        "(default: one per CPU of the cluster)",
    )
    add.add_argument(
        "--if-empty",
        action="store_true",
        help="do nothing when the collection already holds documents (used by `make run`)",
    )
    add.set_defaults(handler=run_add)

    remove = sub.add_parser(
        "remove",
        help="forget files or folders",
        description="Forget files, or every file under folders, whether or not they still exist. "
        "Their chunks are deleted unless another path holds the same content.",
    )
    remove.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to forget")
    add_common(remove)
    add_wait(remove)
    remove.set_defaults(handler=run_remove)

    listing = sub.add_parser(
        "list",
        help="show every file stored, skipped or failed",
        description="Show every file the collection knows: status (stored, skipped, failed), "
        "chunks, SHA-256 and the reason for failures.",
    )
    add_common(listing)
    listing.set_defaults(handler=run_list)

    collections = sub.add_parser(
        "collections",
        help="list collections with their document and chunk counts",
        description="List collections with their documents (files stored, as `rag status` "
        "counts them) and chunks.",
    )
    collections.add_argument(
        "--json", action="store_true", help="print one JSON object instead of text"
    )
    collections.set_defaults(handler=run_collections, collection=None)

    check = sub.add_parser(
        "check",
        formatter_class=HelpFormatter,
        help="compare manifest, store and keyword index; --repair mends them",
        description="Compare the manifest, the store's chunk ids and the keyword index, and "
        "report unfinished writes, orphan chunks, files whose chunks are missing, stale "
        "manifest entries and a damaged manifest or keyword index. --repair mends them: "
        "orphans are deleted, files with missing chunks are embedded again (or forgotten when "
        "they are gone), the keyword index is rebuilt, and a damaged manifest is rebuilt from "
        "the store. Exit status 0 clean, 1 problems remain.",
    )
    check.add_argument("--repair", action="store_true", help="mend what is found")
    add_common(check)
    add_wait(check)
    check.set_defaults(handler=run_check)

    reembed = sub.add_parser(
        "reembed",
        help="embed every file of a collection again with the configured RAG_EMBED_BACKEND",
        description="Embed every file of a collection again, read from disk, with the embedding "
        "backend RAG_EMBED_BACKEND gives (a collection holds one backend's vectors; questions "
        "with another are refused). Until it ends, questions and other writers are refused "
        "with a line saying so; a stopped run is finished by running it again. Files no longer "
        "on disk are forgotten.",
    )
    add_common(reembed)
    add_wait(reembed)
    reembed.set_defaults(handler=run_reembed)
    return parser


def run_reembed(args: argparse.Namespace, app: App) -> int:
    name = args.collection or app.settings.collection
    ingestor = app.ingestor()
    total = len(ingestor.records(name))
    progress, close = progress_bar(total, enabled=not args.json and sys.stderr.isatty())
    try:
        report = ingestor.reembed(name, progress, wait=not args.no_wait, on_wait=notice)
    finally:
        close()
    return reported(args, report)


def reported(args: argparse.Namespace, report: IngestReport) -> int:
    """Print an ingest report (text or --json); its exit status."""
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print_report(report)
    return ExitStatus.PARTIAL if report.failed else ExitStatus.OK


def main(argv: list[str] | None = None, app: App | None = None) -> int:
    """Run one `ingest` command on `app` (built from the RAG_* settings when None)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in HELP_FLAGS:
        argv.insert(0, "add")  # `ingest PATH...` is `ingest add PATH...`
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "ray_actors", None) and args.ray is None:
        parser.error("--ray-actors needs --ray")
    command = "ingest" if args.command == "add" else f"ingest {args.command}"
    return run_command(
        command,
        lambda: on_app(app, lambda built: on_manifest_errors(args, built)),
        "interrupted; files stored so far are kept",
    )


def on_manifest_errors(args: argparse.Namespace, app: App) -> int:
    with manifest_errors(app.settings, args.collection):
        return args.handler(args, app)


def run_add(args: argparse.Namespace, app: App) -> int:
    name = args.collection or app.settings.collection
    if args.if_empty and store.count_chunks(app.store.collection(name)) > 0:
        if args.json:
            print(json.dumps(IngestReport(collection=name).to_json()))
        else:
            print(f"collection '{name}' already holds documents; nothing to do")
        return ExitStatus.OK
    files = discover(args.paths)
    ingestor = app.ingestor(ocr=args.ocr)
    if args.ray is not None:
        ingestor = on_ray(ingestor, args.ray or app.settings.ray_address, args.ray_actors)
    progress, close = progress_bar(len(files), enabled=not args.json and sys.stderr.isatty())
    try:
        report = ingestor.ingest(
            args.paths,
            name,
            progress=progress,
            files=files,
            sync=args.sync,
            wait=not args.no_wait,
            on_wait=notice,
        )
    finally:
        close()
    return reported(args, report)


def on_ray(ingestor: Ingestor, address: str | None, actors: int | None) -> Ingestor:
    """The same ingestor, parsing and embedding on a Ray cluster: ClusterError (one line) at
    once when Ray is not installed or nothing listens at the address."""
    from ingest.cluster import ClusterOptions, check_reachable, prepare_ray

    if address:
        check_reachable(address)
    prepare_ray(local=not address)
    options = ClusterOptions(address or None, actors, notice_above_bar)
    return dataclasses.replace(ingestor, parse_pool=options.pool)


def positive_int(value: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


def run_remove(args: argparse.Namespace, app: App) -> int:
    name = args.collection or app.settings.collection
    removed, paths = app.ingestor().remove(args.paths, name, wait=not args.no_wait, on_wait=notice)
    if args.json:
        print(json.dumps({"removed": removed, "files": paths, "collection": name}))
    else:
        print(f"collection '{name}': removed {removed} file(s)")
        for path in paths:
            print(f"  removed {path}")
    if not removed and not args.json:
        print("  (nothing stored matched; `ingest list` shows what is stored)", file=sys.stderr)
    return ExitStatus.OK


def run_list(args: argparse.Namespace, app: App) -> int:
    name = args.collection or app.settings.collection
    try:
        records = app.ingestor().records(name)
    except UnknownCollectionError:
        if args.collection:  # a name given by hand that matches nothing: say so
            raise
        records = []  # nothing ingested yet into the default collection
    if args.json:
        print(json.dumps([r.public() for r in records], ensure_ascii=False))
        return ExitStatus.OK
    if not records:
        print(f"collection '{name}' holds no files; add some with `ingest PATH`")
    for record in records:
        detail = f"{record.chunks:>6} chunks" if record.status == "stored" else record.error or ""
        print(f"{record.status:8} {printable(detail):>13}  {printable(record.path)}")
    return ExitStatus.OK


def run_collections(args: argparse.Namespace, app: App) -> int:
    """Every collection in the manifests or the store, counted as `rag status` counts them."""
    names = sorted(set(list_collections(app.settings.home)) | set(app.store.names()))
    rows = [app.engine.stats(name) for name in names]
    if args.json:
        print(json.dumps(rows))
        return ExitStatus.OK
    if not rows:
        print("no collections yet; add documents with `ingest PATH`")
    for row in rows:
        print(f"{row['collection']}: {row['files']} files, {row['chunks']} chunks")
    return ExitStatus.OK


def run_check(args: argparse.Namespace, app: App) -> int:
    report = app.ingestor().check(
        args.collection, repair=args.repair, wait=not args.no_wait, on_wait=notice
    )
    status = ExitStatus.OK if report.clean else ExitStatus.PARTIAL
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
        return status
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
    return status


def notice(message: str) -> None:
    """Tell the person at the terminal why the command is waiting."""
    print(f"ingest: {message}", file=sys.stderr, flush=True)


def notice_above_bar(message: str) -> None:
    """A notice printed above the progress bar, if one is showing (the bar is drawn again)."""
    from tqdm import tqdm

    tqdm.write(f"ingest: {message}", file=sys.stderr)


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
