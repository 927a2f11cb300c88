"""Decide, file by file, what a run must do: nothing (unchanged), link content already stored
(a moved, renamed or copied file), or parse and embed it.

A file is judged by size and modification time first, and hashed only when they changed; its
content key joins the SHA-256 of its bytes with everything that shapes its chunks (the
signature), so a change of model, chunking or parser embeds it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.discover import check_readable
from ingest.errors import FileProblem
from ingest.report import FileOutcome, IngestReport, Progress, outcome_of
from ingest.sync import link_content, record_failure
from rag import store
from rag.hashing import file_sha256
from rag.manifest import FileRecord, Manifest
from rag.settings import Settings

# Bump when loaders or chunking change in a way that should re-embed stored files.
PARSER_VERSION = "2"


def chunk_signature(settings: Settings, ocr: bool) -> str:
    """What shapes a file's chunks besides its bytes: model, chunking, parser version, OCR."""
    parts = [
        settings.embed_model,
        str(settings.chunk_size),
        str(settings.chunk_overlap),
        f"headings={settings.embed_headings}",
        PARSER_VERSION,
        f"ocr={ocr}",
    ]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def content_key(sha256: str, signature: str) -> str:
    """The key of a file's stored content; its chunks' ids are `key-00000`, `key-00001`…"""
    return hashlib.sha1(f"{sha256}|{signature}".encode()).hexdigest()[:24]


@dataclass
class Run:
    """One writer's pass over a collection (the caller holds its writer lock)."""

    manifest: Manifest
    collection: store.Collection
    report: IngestReport
    progress: Progress | None = None
    damaged: set[str] = field(default_factory=set)  # contents to embed again: chunks went missing
    force: bool = False  # parse and embed every file again, even unchanged ones
    should_stop: Callable[[], bool] | None = None  # asked after each file: True ends the run

    def stopping(self) -> bool:
        """True (and the report says cancelled) once the caller asked the run to stop."""
        if not self.report.cancelled and self.should_stop is not None and self.should_stop():
            self.report.cancelled = True
        return self.report.cancelled

    def tell(self, path: Path, outcome: FileOutcome, chunks: int = 0) -> None:
        if self.progress is not None:
            self.progress(path, outcome, chunks)

    def turn_down(self, record: FileRecord, outcome: FileOutcome, reason: str) -> None:
        """A file that could not be stored: remembered in the manifest and the report."""
        record_failure(self.manifest, record, outcome, reason)
        self.report.record_problem(record.path, outcome, reason)


def plan_file(path: Path, run: Run, signature: str, max_file_mb: float) -> FileOutcome | FileRecord:
    """The file's outcome when it is decided now, or the record to store once it is parsed.

    A file whose stored chunks are partly or wholly missing from the store (a damaged content),
    or any file of a forced run, is parsed and embedded again even when its bytes are unchanged."""
    key = str(path)
    manifest, report = run.manifest, run.report
    old = manifest.get(key)
    if old is not None and (run.force or old.content_key in run.damaged):
        old = None
    try:
        stat = check_readable(path, max_file_mb)
    except FileProblem as problem:
        outcome = outcome_of(problem)
        report.record_problem(key, outcome, problem.reason)
        return outcome
    if old is not None and (old.size, old.mtime_ns, old.signature) == (
        stat.st_size,
        stat.st_mtime_ns,
        signature,
    ):
        return unchanged(old, report)
    try:
        sha256 = file_sha256(path)
    except OSError as exc:
        report.record_problem(key, FileOutcome.FAILED, f"cannot read file ({exc.strerror})")
        return FileOutcome.FAILED
    if old is not None and old.sha256 == sha256 and old.signature == signature:
        manifest.touch(key, stat.st_size, stat.st_mtime_ns)
        return unchanged(old, report)
    record = FileRecord(
        path=key,
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        sha256=sha256,
        content_key=content_key(sha256, signature),
        signature=signature,
    )
    if (
        not run.force
        and record.content_key not in run.damaged
        and manifest.content(record.content_key) is not None
    ):
        link_content(manifest, run.collection, record, old)
        report.moved += 1
        return FileOutcome.MOVED
    return record


def unchanged(old: FileRecord, report: IngestReport) -> FileOutcome:
    """A file as it was last time: counted as unchanged, or turned down again for its reason."""
    if old.status == FileOutcome.STORED:
        report.unchanged += 1
        return FileOutcome.UNCHANGED
    outcome = FileOutcome(old.status)
    report.record_problem(old.path, outcome, old.error or "")
    return outcome


def split_copies(items: list[tuple[Path, FileRecord]]):
    """Files of one run with identical content: parse the first, link the others to it."""
    seen: set[str] = set()
    first, copies = [], []
    for path, record in items:
        (copies if record.content_key in seen else first).append((path, record))
        seen.add(record.content_key)
    return first, copies


def settle_copies(
    first: list[tuple[Path, FileRecord]], copies: list[tuple[Path, FileRecord]], run: Run
) -> None:
    """Once the first of each set of twins was parsed: link its copies to the stored content,
    or turn them down for the first one's reason."""
    for path, record in copies:
        if run.manifest.content(record.content_key) is not None:
            link_content(run.manifest, run.collection, record, run.manifest.get(record.path))
            run.report.moved += 1
            outcome = FileOutcome.MOVED
        else:
            twin = next(f for f, r in first if r.content_key == record.content_key)
            outcome, reason = run.report.problem_of(str(twin)) or (FileOutcome.SKIPPED, "")
            run.turn_down(record, outcome, reason or "not stored")
        run.tell(path, outcome)
