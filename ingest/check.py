"""`ingest check`: compare the manifest, the store's chunk ids and the keyword index; repair.

What can be wrong, and what `--repair` does about it:
- journal   a write left unfinished by a killed run        -> finish or undo it (recover)
- orphans   chunks in the store that no stored file owns    -> delete them
- missing   stored files whose chunks are not in the store  -> parse and embed the file again
                                                               (forget it if the file is gone)
- stale     manifest rows that point at nothing             -> drop them (and their chunks)
- keyword   keyword index missing, damaged or out of step   -> rebuild it
- manifest  the manifest file itself is damaged             -> rebuild it from the store
Files that were deleted from disk but not yet synced are listed as `gone` (not a problem: the
next `ingest FOLDER --sync` or `ingest remove` forgets them).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.plan import Run
from ingest.report import FileOutcome, IngestReport
from ingest.sync import delete_chunks, manifest_change, recover, remove_records
from rag import store
from rag.keyword import KeywordIndexError
from rag.locks import writer_lock
from rag.manifest import (
    FileRecord,
    Manifest,
    ManifestError,
    list_collections,
    manifest_path,
    manifest_problem,
)

if TYPE_CHECKING:
    from ingest.pipeline import Ingestor

SAMPLE = 5  # ids or paths quoted per problem


@dataclass
class CheckReport:
    """What `ingest check` found (and, with --repair, what it mended)."""

    collection: str
    files: int = 0
    chunks: int = 0
    store_chunks: int = 0
    problems: list[dict] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def add(self, kind: str, detail: str, **extra) -> None:
        self.problems.append({"kind": kind, "detail": detail, **extra})

    def to_json(self) -> dict:
        return {"collection": self.collection, "clean": self.clean, **asdict(self)}


def inspect(ingestor: Ingestor, name: str, collection, manifest: Manifest) -> CheckReport:
    """Find every disagreement between manifest, store and keyword index (changes nothing)."""
    report = CheckReport(collection=name)
    records = manifest.records()
    stored = [r for r in records if r.status == FileOutcome.STORED]
    by_content = manifest.chunk_ids_by_content()
    live = {i for ids in by_content.values() for i in ids}
    present = store.all_ids(collection)
    report.files, report.chunks, report.store_chunks = len(stored), len(live), len(present)
    report.gone = [r.path for r in stored if not os.path.lexists(r.path)]

    pending = manifest.pending()
    if pending:
        report.add(
            "journal",
            f"{len(pending)} unfinished write(s) left by a run that was killed",
            count=len(pending),
        )
    orphans = sorted(present - live)
    if orphans:
        report.add(
            "orphans",
            f"{len(orphans)} chunk(s) in the store belong to no stored file",
            count=len(orphans),
            ids=orphans[:SAMPLE],
        )
    referenced = {r.content_key for r in stored}
    for record in stored:
        ids = by_content.get(record.content_key or "")
        if ids is None:
            report.add(
                "stale",
                "stored file has no content record",
                file=record.path,
            )
            continue
        lost = [i for i in ids if i not in present]
        if lost:
            report.add(
                "missing",
                f"{len(lost)} of {len(ids)} chunk(s) are not in the store",
                file=record.path,
                count=len(lost),
            )
    for key in sorted(set(by_content) - referenced):
        report.add(
            "stale",
            f"content {key} ({len(by_content[key])} chunks) is used by no stored file",
            content=key,
        )
    try:
        indexed = set(ingestor.keywords.read(name).ids())
        if indexed != present:
            extra = len(indexed - present)
            lacking = len(present - indexed)
            report.add(
                "keyword",
                f"keyword index out of step with the store ({lacking} chunk(s) not indexed, "
                f"{extra} indexed chunk(s) not stored)",
            )
    except KeywordIndexError as problem:
        if present:
            report.add("keyword", str(problem))
    return report


def repair(ingestor: Ingestor, name: str, collection, manifest: Manifest, found: CheckReport):
    """Mend what `inspect` found; the caller holds the collection's writer lock."""
    kinds = {p["kind"] for p in found.problems}
    if "journal" in kinds:
        deleted = recover(manifest, collection)
        found.repaired.append(f"finished unfinished writes ({deleted} chunk(s) deleted)")
    stale_keys = [p["content"] for p in found.problems if p["kind"] == "stale" and "content" in p]
    if stale_keys:
        with manifest_change(manifest, collection) as change:
            for key in stale_keys:
                found_content = manifest.content(key)
                if found_content is not None:
                    change.delete(found_content[0])
                manifest.drop_content(change.db, key)
        found.repaired.append(f"dropped {len(stale_keys)} unused content record(s)")
    orphans = sorted(store.all_ids(collection) - manifest.all_chunk_ids())
    if orphans:
        delete_chunks(manifest, collection, orphans)
        found.repaired.append(f"deleted {len(orphans)} orphan chunk(s)")
    again = [p["file"] for p in found.problems if p["kind"] in ("missing", "stale") and "file" in p]
    vanished = [p for p in again if not os.path.isfile(p)]
    if vanished:
        remove_records(manifest, collection, vanished)
        found.repaired.append(f"forgot {len(vanished)} file(s) no longer on disk")
    present = [Path(p) for p in again if os.path.isfile(p)]
    if present:
        damaged = {r.content_key for p in present if (r := manifest.get(str(p))) is not None}
        result = IngestReport(collection=name)
        ingestor.store_files(present, Run(manifest, collection, result, damaged=damaged))
        found.repaired.append(
            f"embedded {result.files} file(s) again ({result.chunks} chunks)"
            + (f"; {len(result.failed)} failed" if result.failed else "")
        )
    ingestor.keywords.rebuild(name, collection, manifest)
    found.repaired.append("rebuilt the keyword index")


def rebuild_manifest(ingestor: Ingestor, name: str, collection) -> str:
    """Replace a damaged manifest with one read back from the store's chunk metadata.

    Each chunk carries its file path and the file's SHA-256; chunk ids start with their
    content key. Sizes and times are unknown, so the next `ingest` hashes each file once to
    confirm it is unchanged. The damaged file is kept beside it for inspection."""
    path = manifest_path(ingestor.settings.home, name)
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(Path(f"{aside}{suffix}"))
    contents: dict[str, dict] = {}
    for chunk_id, meta in store.metadata_where(collection):
        key = chunk_id.rsplit("-", 1)[0]
        entry = contents.setdefault(
            key,
            {"sha256": str(meta.get("sha256", "")), "file": str(meta.get("file", "")), "ids": []},
        )
        entry["ids"].append(chunk_id)
        if isinstance(meta.get("page"), int):
            entry["pages"] = max(entry.get("pages") or 0, meta["page"])
    store.drop_framework_fields(collection)  # the new manifest says schema 2: make it true
    manifest = Manifest(ingestor.settings.home, name)
    try:
        with manifest.transaction() as db:
            for key, entry in contents.items():
                ids = sorted(entry["ids"])
                manifest.put_content(db, key, entry["sha256"], ids, entry["file"])
                manifest.put_file(
                    db,
                    FileRecord(
                        path=entry["file"],
                        size=-1,
                        mtime_ns=-1,
                        sha256=entry["sha256"],
                        content_key=key,
                        signature=ingestor.signature,
                        pages=entry.get("pages"),
                    ),
                )
    finally:
        manifest.close()
    return f"rebuilt the manifest from the store ({len(contents)} file(s)); damaged copy kept as {aside}"


def open_checked(home: Path, name: str) -> Manifest:
    """Open a manifest for writing and read it through once; ManifestError when damaged."""
    manifest = Manifest(home, name)
    try:
        result = manifest.db.execute("PRAGMA quick_check").fetchone()
        if result and result[0] != "ok":
            raise sqlite3.DatabaseError(str(result[0]))
        manifest.records()
        manifest.pending()
        return manifest
    except sqlite3.Error as exc:
        manifest.close()
        raise manifest_problem(manifest.path, exc) from exc


def check_collection(ingestor: Ingestor, name: str, fix: bool) -> CheckReport:
    """Inspect one collection (the caller holds its writer lock); with `fix`, repair what is
    wrong and inspect again."""
    home = ingestor.settings.home
    collection = ingestor.store.collection(name)
    repaired: list[str] = []
    try:
        manifest = open_checked(home, name)
    except ManifestError as problem:
        if not fix:
            report = CheckReport(collection=name)
            report.add("manifest", str(problem))
            return report
        repaired.append(rebuild_manifest(ingestor, name, collection))
        manifest = open_checked(home, name)
    try:
        found = inspect(ingestor, name, collection, manifest)
        if not fix or found.clean:
            found.repaired = repaired
            return found
        repair(ingestor, name, collection, manifest, found)
        after = inspect(ingestor, name, collection, manifest)
        after.repaired = repaired + found.repaired
        return after
    finally:
        manifest.close()


def damaged_store_report(name: str, problem: Exception) -> CheckReport:
    report = CheckReport(collection=name)
    report.add("store", str(problem))
    return report


def rebuild_store(ingestor: Ingestor, name: str) -> CheckReport:
    """Move a damaged embedded store aside and embed every collection's files into a new one.

    The store holds all collections, so each one with a manifest is rebuilt (under its own
    writer lock, taken in name order); files no longer on disk are forgotten."""
    settings = ingestor.settings
    names = sorted(set(list_collections(settings.home)) | {name})
    with ExitStack() as held:
        for each in names:
            held.enter_context(writer_lock(settings, each, purpose="ingest check --repair"))
        ingestor.store.forget()
        damaged = settings.chroma_path
        aside = damaged.with_name(f"{damaged.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        damaged.rename(aside)
        moved = f"moved the damaged store aside to {aside}"
        reports = {each: check_collection(ingestor, each, fix=True) for each in names}
    report = reports[name]
    others = [each for each in names if each != name]
    report.repaired.insert(0, moved)
    if others:
        report.repaired.append(f"rebuilt the other collections too: {', '.join(others)}")
    return report


def dumps(report: CheckReport) -> str:
    return json.dumps(report.to_json(), ensure_ascii=False)
