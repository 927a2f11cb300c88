"""The `ingest` command: a thin layer over ingest.pipeline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ingest.loaders import supported_suffixes
from ingest.pipeline import Ingestor, IngestReport, MissingPathError, discover
from rag.cli_support import fail, quiet_libraries, unexpected
from rag.models import ModelError
from rag.settings import SettingsError, load_settings
from rag.store import StoreError, count_chunks, get_collection


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingest",
        description=(
            "Add documents to the local store so `rag ask` and the UI can answer from them. "
            "Folders are read recursively; files already stored unchanged are skipped, "
            "changed files have their old chunks replaced."
        ),
        epilog=(
            f"Formats: {' '.join(supported_suffixes())}. Exit status: 0 all stored, "
            "1 some files failed (the rest are stored), 2 usage error. "
            "Settings come from RAG_* environment variables (see README)."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to ingest")
    parser.add_argument(
        "--collection", "-c", help="collection to store into (default: RAG_COLLECTION or 'default')"
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument(
        "--if-empty",
        action="store_true",
        help="do nothing when the collection already holds documents (used by `make run`)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        settings = load_settings(collection=args.collection)
        if args.if_empty and count_chunks(get_collection(settings)) > 0:
            if not args.json:
                print(f"collection '{settings.collection}' already holds documents; nothing to do")
            else:
                print(json.dumps(IngestReport(collection=settings.collection).to_json()))
            return 0
        files = discover(args.paths)
        ingestor = Ingestor(settings)
        progress, close = progress_bar(len(files), enabled=not args.json and sys.stderr.isatty())
        try:
            report = ingestor.ingest(
                args.paths, settings.collection, progress=progress, files=files
            )
        finally:
            close()
    except MissingPathError as exc:
        return fail(f"ingest: {exc}; check the path", code=2)
    except (SettingsError, StoreError, ModelError, ValueError) as exc:
        return fail(f"ingest: {exc}", code=2)
    except KeyboardInterrupt:
        return fail("ingest: interrupted; files stored so far are kept", code=130)
    except Exception as exc:
        return unexpected("ingest", exc)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print_report(report)
    return report.exit_code


def progress_bar(total: int, enabled: bool):
    """A tqdm bar on a terminal (files, rate, ETA); a no-op elsewhere."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True)

    def update(path: Path, outcome: str) -> None:
        bar.set_postfix_str(f"{outcome}: {path.name}"[:40], refresh=False)
        bar.update(1)

    return update, bar.close


def print_report(report: IngestReport) -> None:
    print(
        f"collection '{report.collection}': {report.files} file(s) stored, {report.chunks} chunks, "
        f"{report.unchanged} unchanged, {len(report.skipped)} skipped, "
        f"{len(report.failed)} failed in {report.seconds:.1f}s"
    )
    for item in report.skipped:
        print(f"  skipped {item['file']}: {item['reason']}")
    for item in report.warnings:
        print(f"  warning {item['file']}: {item['warning']}")
    for item in report.failed:
        print(f"  FAILED  {item['file']}: {item['error']}", file=sys.stderr)
