"""Keep the manifest and the store in step as paths start or stop using stored content.

One content (the chunks of one file's bytes) is shared by every path holding those bytes: a
copy or a moved file links to it, and its chunks leave the store only when no path uses it.
Every deletion is announced in the manifest's journal in the same transaction that leaves the
chunks unused, so a run killed at any moment is finished by the next writer's recover().
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ingest.discover import root_paths
from ingest.report import FileOutcome
from rag import store
from rag.manifest import FileRecord, Manifest


@dataclass
class ManifestChange:
    """An open manifest transaction; chunks handed to `delete` leave the store once it commits."""

    manifest: Manifest
    collection: store.Collection
    db: sqlite3.Connection
    doomed: list[str] = field(default_factory=list)

    def delete(self, chunk_ids: Iterable[str]) -> None:
        self.doomed.extend(chunk_ids)


@contextmanager
def manifest_change(manifest: Manifest, collection) -> Iterator[ManifestChange]:
    """The one way chunks are deleted: announce the intent in the journal within the manifest
    transaction that makes them unused, delete them from the store once it commits, then mark
    the intent done. Killed in between, the next writer's recover() finishes the deletion."""
    with manifest.transaction() as db:
        change = ManifestChange(manifest, collection, db)
        yield change
        intent = manifest.intend_in(db, "delete", change.doomed) if change.doomed else None
    if intent is not None:
        store.delete_ids(collection, change.doomed)
        manifest.done(intent)


def delete_chunks(manifest: Manifest, collection, chunk_ids: list[str]) -> int:
    """Delete chunks that no content of the manifest uses (orphans), journalled like any other."""
    with manifest_change(manifest, collection) as change:
        change.delete(chunk_ids)
    return len(chunk_ids)


def release_content(change: ManifestChange, content_key: str) -> None:
    """Called after a path stopped using a content: its chunks go when no path uses it any
    more; otherwise their citations move to the newest remaining path."""
    manifest = change.manifest
    found = manifest.content(content_key)
    if found is None:
        return
    chunk_ids, cited = found
    if manifest.referenced(change.db, content_key):
        newest = manifest.paths_of(content_key)[0]
        if newest != cited:
            manifest.set_cited(change.db, content_key, newest)
            store.set_file_path(change.collection, chunk_ids, newest)
        return
    manifest.drop_content(change.db, content_key)
    change.delete(chunk_ids)


def release_old(change: ManifestChange, old: FileRecord | None, record: FileRecord) -> None:
    """Release the content a path held before it was stored again with other bytes."""
    if old is not None and old.content_key and old.content_key != record.content_key:
        release_content(change, old.content_key)


def link_content(manifest: Manifest, collection, record: FileRecord, old: FileRecord | None):
    """A file whose content is already stored (moved, renamed or copied): no new embedding."""
    found = manifest.content(record.content_key)
    assert found is not None
    chunk_ids, _ = found
    if record.pages is None:
        record.pages = manifest.content_pages(record.content_key)
    store.set_file_path(collection, chunk_ids, record.path)
    gone = [p for p in manifest.paths_of(record.content_key) if not os.path.lexists(p)]
    with manifest_change(manifest, collection) as change:
        manifest.put_file(change.db, record)
        manifest.set_cited(change.db, record.content_key, record.path)
        for path in gone:  # the old name of a moved file
            manifest.drop_file(change.db, path)
        release_old(change, old, record)


def record_failure(
    manifest: Manifest, record: FileRecord, outcome: FileOutcome, reason: str
) -> None:
    """Remember a bad file; if an older version of it is stored, that version stays."""
    old = manifest.get(record.path)
    if old is not None and old.status == FileOutcome.STORED:
        return
    record.status, record.error, record.content_key = outcome.value, reason, None
    with manifest.transaction() as db:
        manifest.put_file(db, record)


def remove_records(manifest: Manifest, collection, paths: list[str]) -> int:
    """Forget these paths; chunks go when no other path holds the same content."""
    if not paths:
        return 0
    with manifest_change(manifest, collection) as change:
        keys = set()
        for path in paths:
            record = manifest.get(path)
            manifest.drop_file(change.db, path)
            if record is not None and record.content_key:
                keys.add(record.content_key)
        for key in keys:
            release_content(change, key)
    return len(paths)


def vanished_paths(manifest: Manifest, paths: Iterable[str | os.PathLike], found: list[Path]):
    """Files stored from these folders that were not found again and are gone from disk."""
    seen = {str(p) for p in found}
    roots = [r for r in root_paths(paths) if Path(r).is_dir()]
    return [
        r.path
        for r in manifest.records(roots)
        if r.path not in seen and not os.path.lexists(r.path)
    ]


def recover(manifest: Manifest, collection) -> int:
    """Finish or undo store writes that a killed run left half done; returns chunks deleted."""
    pending = manifest.pending()
    if not pending:
        return 0
    live = manifest.all_chunk_ids()
    deleted = 0
    for journal_id, _op, chunk_ids in pending:
        orphans = [i for i in chunk_ids if i not in live]
        deleted += store.delete_ids(collection, orphans)
        manifest.done(journal_id)
    return deleted


def damaged_contents(manifest: Manifest, collection) -> set[str]:
    """Contents with chunks missing from the store (a damaged, reset or partly restored store).

    Cheap when all is well: the store's count equals the manifest's; only otherwise are the
    store's ids read and compared."""
    if store.count_chunks(collection) == manifest.chunk_count():
        return set()
    by_content = manifest.chunk_ids_by_content()
    present = store.all_ids(collection)
    return {key for key, ids in by_content.items() if any(i not in present for i in ids)}
