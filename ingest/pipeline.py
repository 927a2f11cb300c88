"""Keep a collection an exact mirror of files on disk: diff -> parse -> split -> embed -> upsert/delete.

The manifest (rag.manifest) says what is stored. Every write to the store is announced in the
manifest's journal first, so a run killed at any moment is finished or undone by the next one.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.errors import FileProblem, LoadError, SkipFile
from ingest.names import escape_bytes, is_utf8, printable, skipped
from rag import store
from rag.errors import UserError
from rag.hashing import file_sha256
from rag.keyword import KeywordIndexes
from rag.locks import writer_lock
from rag.manifest import (
    FileRecord,
    Manifest,
    UnknownCollectionError,
    list_collections,
    manifest_exists,
    upgrade_schema,
)
from rag.models import Models, load_chunk_tokenizer
from rag.settings import Settings
from rag.store import Store, StoreDamagedError

if TYPE_CHECKING:
    from ingest.chunking import Chunker

# Bump when loaders or chunking change in a way that should re-embed stored files.
PARSER_VERSION = "2"


class EmbeddingFailed(RuntimeError):
    """The embedding model failed on a batch (its cause says why)."""


class MissingPathError(UserError):
    """A path given on the command line does not exist."""


@dataclass
class IngestReport:
    """What one ingest run did: stored, unchanged, moved, removed, skipped and failed files."""

    collection: str
    files: int = 0
    chunks: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "files": self.files,
            "chunks": self.chunks,
            "unchanged": self.unchanged,
            "moved": self.moved,
            "removed": self.removed,
            "skipped": self.skipped,
            "failed": self.failed,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            "collection": self.collection,
        }

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def record_problem(self, path: str, status: str, reason: str) -> None:
        if status == "skipped":
            self.skipped.append({"file": path, "reason": reason})
        else:
            self.failed.append({"file": path, "error": reason})


# Progress callback: (file, outcome, chunks); outcome: stored/unchanged/moved/skipped/failed.
Progress = Callable[[Path, str, int], None]


def discover(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, skipping hidden entries) into a sorted file list.

    Every file keeps the path it was found under. A symbolic link inside a folder is followed
    only when its target lies inside one of the folders given; a link that leaves them, and a
    name that is not UTF-8, come back as a SkippedPath whose reason check_readable() raises.
    """
    found: dict[str, Path] = {}
    roots = [Path(p).expanduser() for p in paths]
    missing = [printable(str(p)) for p in roots if not p.exists() and not p.is_symlink()]
    if missing:
        raise MissingPathError(f"no such file or folder: {', '.join(missing)}")
    folders = [absolute(root) for root in roots if root.is_dir()]

    def add(path: Path) -> None:
        if not is_utf8(str(path)):
            kind = "folder" if path.is_dir() else "file"
            path = skipped(escape_bytes(str(path)), SkipFile(bad_name_reason(kind)))
        found.setdefault(str(path), path)

    for root in roots:
        if not root.is_dir():
            add(absolute(root))
            continue
        top = absolute(root)
        if not is_utf8(str(top)):
            add(top)
            continue
        for folder, dirs, names in os.walk(top, followlinks=False):
            entered = []
            for name in sorted(dirs):
                candidate = Path(folder, name)
                if name.startswith("."):
                    continue
                if not is_utf8(name):
                    add(candidate)
                elif candidate.is_symlink():  # not entered: its files are found where they lie
                    if outside(candidate, folders):
                        add(link_leaves(candidate))
                else:
                    entered.append(name)
            dirs[:] = entered
            for name in sorted(names):
                candidate = Path(folder, name)
                if name.startswith("."):
                    continue
                if is_utf8(name) and candidate.is_symlink() and outside(candidate, folders):
                    candidate = link_leaves(candidate)
                add(candidate)
    return sorted(found.values())


def outside(link: Path, folders: list[Path]) -> bool:
    """True when a link's target exists and lies outside all the folders being ingested."""
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):
        return False  # a broken link or a loop: check_readable reports it under its own name
    return not any(target.is_relative_to(folder) for folder in folders)


def link_leaves(link: Path) -> Path:
    target = escape_bytes(str(link.resolve()))
    return skipped(
        link,
        SkipFile(
            f"symbolic link to {target}, outside the folders being ingested; "
            "ingest the target by its own path, or copy it into the folder"
        ),
    )


def bad_name_reason(kind: str) -> str:
    return (
        f"{kind} name is not valid UTF-8; rename it (e.g. convmv -f latin1 -t utf8 --notest NAME)"
    )


def absolute(path: Path) -> Path:
    """The path a file is stored under: a folder by its real path, anything else by its own
    name in its folder's real path (a file named through a link keeps the link's name)."""
    path = path.expanduser()
    if path.is_dir():
        return path.resolve()
    try:
        parent = path.parent.resolve(strict=True)
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))
    return parent / path.name


def root_paths(paths: Iterable[str | os.PathLike]) -> list[str]:
    """The given files and folders as discover() stores them, for matching stored records."""
    return [str(absolute(Path(p))) for p in paths]


@dataclass
class Parsed:
    """A file parsed and split, waiting to be embedded."""

    path: Path
    record: FileRecord
    nodes: list


class Ingestor:
    """Stores files in collections; reusable across calls (the UI keeps one)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        keywords: KeywordIndexes,
        models: Models,
        ocr: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.keywords = keywords
        self.models = models
        self.ocr = ocr
        self.signature = hashlib.sha1(
            "|".join(
                [
                    settings.embed_model,
                    str(settings.chunk_size),
                    str(settings.chunk_overlap),
                    f"headings={settings.embed_headings}",
                    PARSER_VERSION,
                    f"ocr={ocr}",
                ]
            ).encode()
        ).hexdigest()[:16]
        self._chunker: Chunker | None = None

    @property
    def embedder(self):
        return self.models.embedder

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            from ingest.chunking import Chunker

            tokenizer = load_chunk_tokenizer(self.settings)
            self._chunker = Chunker(
                self.settings.chunk_size,
                self.settings.chunk_overlap,
                tokenizer,
                self.settings.embed_headings,
            )
        return self._chunker

    def content_key(self, sha256: str) -> str:
        return hashlib.sha1(f"{sha256}|{self.signature}".encode()).hexdigest()[:24]

    def open(self, name: str) -> tuple[store.Collection, Manifest]:
        """The collection and its manifest for a writer holding the collection's lock: writes
        left unfinished by a killed run are finished or undone, and chunks stored in an older
        layout are brought up to date (see rag.manifest.SCHEMA_VERSION)."""
        collection = self.store.collection(name)
        manifest = Manifest(self.settings.home, name)
        try:
            recover(manifest, collection)
            upgrade_schema(manifest, collection)
        except BaseException:
            manifest.close()
            raise
        return collection, manifest

    # --- public operations ---------------------------------------------------------------

    def ingest(
        self,
        paths: Iterable[str | os.PathLike],
        collection_name: str | None = None,
        progress: Progress | None = None,
        files: list[Path] | None = None,
        sync: bool = False,
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
    ) -> IngestReport:
        """Store new and changed files, skip unchanged ones; with `sync`, drop vanished ones.

        Holds the collection's writer lock for the whole run (waiting for another writer unless
        `wait` is False), so no other command can undo or interleave with its writes.
        """
        started = time.perf_counter()
        paths = list(paths)
        files = files if files is not None else discover(paths)
        name = collection_name or self.settings.collection
        report = IngestReport(collection=name)
        with writer_lock(self.settings, name, wait, on_wait, "ingest"):
            collection, manifest = self.open(name)
            try:
                damaged = damaged_contents(manifest, collection)
                self.store_files(files, manifest, collection, report, progress, damaged)
                if sync:
                    seen = {str(p) for p in files}
                    roots = [r for r in root_paths(paths) if Path(r).is_dir()]
                    vanished = [
                        r.path
                        for r in manifest.records(roots)
                        if r.path not in seen and not os.path.lexists(r.path)
                    ]
                    report.removed = remove_records(manifest, collection, vanished)
                changed = report.files or report.removed or report.moved or damaged
                release_memory()  # the model's work buffers, before the keyword index is built
                self.keywords.refresh(name, collection, force=bool(changed))
            finally:
                manifest.close()
        report.seconds = time.perf_counter() - started
        return report

    def store_files(self, files, manifest, collection, report, progress, damaged) -> None:
        """Plan every file, parse and embed the new and changed ones, link copies (and re-embed
        files of `damaged` contents). The caller holds the collection's writer lock."""
        to_parse: list[tuple[Path, FileRecord]] = []
        for path in files:
            outcome = self._plan(path, manifest, collection, report, to_parse, damaged)
            if outcome and progress is not None:
                progress(path, outcome, 0)
        first, copies = split_copies(to_parse)
        self._parse_and_store(first, manifest, collection, report, progress)
        for path, record in copies:  # same bytes as a file stored just above
            if manifest.content(record.content_key) is not None:
                link_content(manifest, collection, record, manifest.get(record.path))
                report.moved += 1
                outcome = "moved"
            else:
                twin = next(p for p, r in first if r.content_key == record.content_key)
                problem = next(
                    (f for f in report.failed + report.skipped if f["file"] == str(twin)), {}
                )
                reason = problem.get("error") or problem.get("reason") or "not stored"
                status = "failed" if "error" in problem else "skipped"
                record_failure(manifest, record, status, reason)
                report.record_problem(record.path, status, reason)
                outcome = status
            if progress is not None:
                progress(path, outcome, 0)

    def remove(
        self,
        paths: Iterable[str | os.PathLike],
        collection_name: str | None = None,
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
    ):
        """Forget files (and everything under folders) whether or not they still exist."""
        name = collection_name or self.settings.collection
        roots = [str(Path(p).expanduser().absolute()) for p in paths]
        roots += [r for r in root_paths(paths) if r not in roots]
        if not manifest_exists(self.settings.home, name):
            return 0, []
        with writer_lock(self.settings, name, wait, on_wait, "ingest remove"):
            collection, manifest = self.open(name)
            try:
                doomed = [r.path for r in manifest.records(roots)]
                removed = remove_records(manifest, collection, doomed)
                self.keywords.refresh(name, collection, force=bool(removed))
                return removed, doomed
            finally:
                manifest.close()

    def check(
        self,
        collection_name: str | None = None,
        repair: bool = False,
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
    ):
        """Compare manifest, store and keyword index (and mend them with `repair`)."""
        from ingest.check import check_collection, damaged_store_report, rebuild_store

        name = collection_name or self.settings.collection
        if not manifest_exists(self.settings.home, name):
            raise UnknownCollectionError(name, list_collections(self.settings.home))
        try:
            with writer_lock(self.settings, name, wait, on_wait, "ingest check"):
                return check_collection(self, name, repair)
        except StoreDamagedError as problem:
            if not repair or self.settings.chroma_host:
                return damaged_store_report(name, problem)
            return rebuild_store(self, name)

    def records(self, collection_name: str | None = None) -> list[FileRecord]:
        """Every file the collection knows. A reader: it never changes the store or the manifest;
        a write still in progress (or left by a killed run) shows as its last committed state."""
        name = collection_name or self.settings.collection
        if not manifest_exists(self.settings.home, name):
            raise UnknownCollectionError(name, list_collections(self.settings.home))
        manifest = Manifest(self.settings.home, name, readonly=True)
        try:
            return manifest.records()
        finally:
            manifest.close()

    # --- steps ---------------------------------------------------------------------------

    def _plan(
        self, path: Path, manifest: Manifest, collection, report, to_parse, damaged=frozenset()
    ) -> str | None:
        """Decide what one file needs; returns the outcome, or None when it waits for parsing.

        A file whose stored chunks are partly or wholly missing from the store (`damaged`
        contents) is parsed and embedded again even when its bytes are unchanged."""
        key = str(path)
        old = manifest.get(key)
        if old is not None and old.content_key in damaged:
            old = None
        try:
            stat = check_readable(path, self.settings.max_file_mb)
        except FileProblem as problem:
            status = "skipped" if isinstance(problem, SkipFile) else "failed"
            report.record_problem(key, status, problem.reason)
            return status
        if old is not None and (old.size, old.mtime_ns, old.signature) == (
            stat.st_size,
            stat.st_mtime_ns,
            self.signature,
        ):
            return self._unchanged(old, report)
        try:
            sha256 = file_sha256(path)
        except OSError as exc:
            report.record_problem(key, "failed", f"cannot read file ({exc.strerror})")
            return "failed"
        content_key = self.content_key(sha256)
        if old is not None and old.sha256 == sha256 and old.signature == self.signature:
            manifest.touch(key, stat.st_size, stat.st_mtime_ns)
            return self._unchanged(old, report)
        record = FileRecord(
            path=key,
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            sha256=sha256,
            content_key=content_key,
            signature=self.signature,
        )
        if content_key not in damaged and manifest.content(content_key) is not None:
            link_content(manifest, collection, record, old)
            report.moved += 1
            return "moved"
        to_parse.append((path, record))
        return None

    def _unchanged(self, old: FileRecord, report: IngestReport) -> str:
        if old.status == "stored":
            report.unchanged += 1
            return "unchanged"
        report.record_problem(old.path, old.status, old.error or "")
        return old.status

    def _parse_and_store(self, to_parse, manifest, collection, report, progress) -> None:
        pending: list[Parsed] = []
        size = 0
        from ingest.parallel import ParsePool  # parsing machinery loads only when needed

        pool = ParsePool(self.settings, self.ocr)  # parses in guarded worker processes
        try:
            for path, record, result in pool.map(to_parse):
                if isinstance(result, FileProblem):
                    status = "skipped" if isinstance(result, SkipFile) else "failed"
                    record_failure(manifest, record, status, result.reason)
                    report.record_problem(record.path, status, result.reason)
                    outcome = status
                else:
                    nodes, parser, warnings = result
                    record.parser, record.warnings = parser, warnings
                    report.warnings.extend({"file": record.path, "warning": w} for w in warnings)
                    pending.append(Parsed(path, record, nodes))
                    size += len(nodes)
                    outcome = "stored"
                if size >= self.settings.ingest_batch_chunks:
                    self._flush(pending, manifest, collection, report)
                    pending, size = [], 0
                if progress is not None:
                    progress(path, outcome, len(result[0]) if outcome == "stored" else 0)
            self._flush(pending, manifest, collection, report)
        finally:
            pool.close()

    def _flush(self, batch: list[Parsed], manifest: Manifest, collection, report) -> None:
        """Embed and store a batch of parsed files, then commit them to the manifest."""
        if not batch:
            return
        nodes = [node for item in batch for node in item.nodes]
        ids = [node.node_id for node in nodes]
        intent = manifest.intend("add", ids)
        step = self.settings.ingest_batch_chunks
        try:
            # A long file arrives as thousands of nodes: embed and store them a slice at a
            # time, dropping each slice's vectors once stored, so memory stays flat.
            for start in range(0, len(nodes), step):
                part = nodes[start : start + step]
                try:
                    self.embedder(part)
                except Exception as exc:
                    raise EmbeddingFailed(exc) from exc
                store.upsert_nodes(collection, part)
                for node in part:
                    node.embedding = None
        except StoreDamagedError:
            raise  # every later batch would fail the same way: stop with one line
        except Exception as exc:
            what = "embed" if isinstance(exc, EmbeddingFailed) else "store"
            cause = exc.__cause__ if isinstance(exc, EmbeddingFailed) else exc
            for item in batch:
                report.record_problem(item.record.path, "failed", f"could not {what} ({cause})")
            recover(manifest, collection)  # undo the slices already stored
            return
        doomed: list[str] = []
        with manifest.transaction() as db:
            for item in batch:
                record = item.record
                old = manifest.get(record.path)
                chunk_ids = [node.node_id for node in item.nodes]
                manifest.put_content(db, record.content_key, record.sha256, chunk_ids, record.path)
                manifest.put_file(db, record)
                if old is not None and old.content_key and old.content_key != record.content_key:
                    doomed += release_content(manifest, db, collection, old.content_key)
            manifest.done(intent)
            delete_intent = manifest.intend_in(db, "delete", doomed) if doomed else None
        if delete_intent is not None:
            store.delete_ids(collection, doomed)
            manifest.done(delete_intent)
        report.files += len(batch)
        report.chunks += len(nodes)


def split_copies(items: list[tuple[Path, FileRecord]]):
    """Files of one run with identical content: parse the first, link the others to it."""
    seen: set[str] = set()
    first, copies = [], []
    for path, record in items:
        (copies if record.content_key in seen else first).append((path, record))
        seen.add(record.content_key)
    return first, copies


def check_readable(path: Path, max_file_mb: float) -> os.stat_result:
    """Reject what cannot be a document before reading it: what discover() already turned down,
    dangling links, folders, huge files."""
    problem = getattr(path, "problem", None)
    if problem is not None:
        raise problem
    if not path.exists():
        raise LoadError("broken symbolic link or link loop; fix or remove the link")
    if not path.is_file():
        raise SkipFile("not a regular file")
    stat = path.stat()
    size_mb = stat.st_size / (1024 * 1024)
    if size_mb > max_file_mb:
        raise LoadError(
            f"file is {size_mb:.0f} MB, over the {max_file_mb:g} MB limit; "
            "raise RAG_MAX_FILE_MB to ingest it"
        )
    if not os.access(path, os.R_OK):
        raise LoadError("permission denied; make the file readable (chmod +r)")
    return stat


def record_failure(manifest: Manifest, record: FileRecord, status: str, reason: str) -> None:
    """Remember a bad file; if an older version of it is stored, that version stays."""
    old = manifest.get(record.path)
    if old is not None and old.status == "stored":
        return
    record.status, record.error, record.content_key = status, reason, None
    with manifest.transaction() as db:
        manifest.put_file(db, record)


def link_content(manifest: Manifest, collection, record: FileRecord, old: FileRecord | None):
    """A file whose content is already stored (moved, renamed or copied): no new embedding."""
    found = manifest.content(record.content_key)
    assert found is not None
    chunk_ids, _ = found
    store.set_file_path(collection, chunk_ids, record.path)
    gone = [p for p in manifest.paths_of(record.content_key) if not os.path.lexists(p)]
    doomed: list[str] = []
    with manifest.transaction() as db:
        manifest.put_file(db, record)
        manifest.set_cited(db, record.content_key, record.path)
        for path in gone:  # the old name of a moved file
            manifest.drop_file(db, path)
        if old is not None and old.content_key and old.content_key != record.content_key:
            doomed = release_content(manifest, db, collection, old.content_key)
        intent = manifest.intend_in(db, "delete", doomed) if doomed else None
    if intent is not None:
        store.delete_ids(collection, doomed)
        manifest.done(intent)


def release_content(manifest: Manifest, db, collection, content_key: str) -> list[str]:
    """Called inside a transaction after a path stopped using a content: chunk ids to delete
    when no path uses it any more, otherwise re-point citations at the newest remaining path."""
    found = manifest.content(content_key)
    if found is None:
        return []
    chunk_ids, cited = found
    if manifest.referenced(db, content_key):
        newest = manifest.paths_of(content_key)[0]
        if newest != cited:
            manifest.set_cited(db, content_key, newest)
            store.set_file_path(collection, chunk_ids, newest)
        return []
    manifest.drop_content(db, content_key)
    return chunk_ids


def remove_records(manifest: Manifest, collection, paths: list[str]) -> int:
    """Forget these paths; chunks go when no other path holds the same content."""
    if not paths:
        return 0
    doomed: list[str] = []
    with manifest.transaction() as db:
        keys = set()
        for path in paths:
            record = manifest.get(path)
            manifest.drop_file(db, path)
            if record is not None and record.content_key:
                keys.add(record.content_key)
        for key in keys:
            doomed += release_content(manifest, db, collection, key)
        intent = manifest.intend_in(db, "delete", doomed) if doomed else None
    if intent is not None:
        store.delete_ids(collection, doomed)
        manifest.done(intent)
    return len(paths)


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
    by_content = manifest.chunk_ids_by_content()
    expected = sum(len(ids) for ids in by_content.values())
    if store.count_chunks(collection) == expected:
        return set()
    present = store.all_ids(collection)
    return {key for key, ids in by_content.items() if any(i not in present for i in ids)}


def release_memory() -> None:
    """Hand memory freed by Python and torch back to the system (glibc keeps it otherwise), so
    that the next step's peak does not stack on top of the last one's."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
