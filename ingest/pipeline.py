"""Keep a collection an exact mirror of files on disk: plan -> parse -> split -> embed -> store.

The Ingestor holds the collection's writer lock for a whole run. Planning (ingest.plan) decides
what each file needs; parsing runs in guarded worker processes (ingest.parallel); this module
embeds and stores the chunks, a batch at a time. The manifest (rag.manifest) says what is
stored, and every write to the store is announced in its journal first (ingest.sync), so a run
killed at any moment is finished or undone by the next one.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.discover import MissingPathError, discover, root_paths
from ingest.errors import FileProblem
from ingest.plan import Run, chunk_signature, plan_file, settle_copies, split_copies
from ingest.report import FileOutcome, IngestReport, Progress, outcome_of
from ingest.sync import (
    damaged_contents,
    manifest_change,
    recover,
    release_old,
    remove_records,
    vanished_paths,
)
from rag import store
from rag.errors import UserError
from rag.keyword import KeywordIndexes
from rag.locks import writer_lock
from rag.manifest import (
    FileRecord,
    Manifest,
    UnknownCollectionError,
    list_collections,
    manifest_exists,
    reading,
    remove_manifest,
    upgrade_schema,
)
from rag.models import Models
from rag.settings import Settings, validate_collection_name
from rag.store import Store, StoreDamagedError

if TYPE_CHECKING:
    from ingest.chunking import Chunker

# Callers import these from here: the public face of ingesting.
__all__ = [
    "EmbeddingFailed",
    "FileOutcome",
    "IngestReport",
    "Ingestor",
    "MissingPathError",
    "Progress",
    "discover",
]


class EmbeddingFailed(RuntimeError):
    """The embedding model failed on a batch (its cause says why)."""


@dataclass
class Parsed:
    """A file parsed and split, waiting to be embedded."""

    path: Path
    record: FileRecord
    nodes: list


@dataclass(eq=False)
class Ingestor:
    """Stores files in collections; reusable across calls. Made by rag.app.App.ingestor()."""

    settings: Settings
    store: Store
    keywords: KeywordIndexes
    models: Models
    ocr: bool = False  # read scanned pages with OCR (it changes what is stored: see signature)
    # Makes the pool that parses (and may embed) files, called like ParsePool(settings, ocr);
    # None: ParsePool. `ingest --ray` passes ingest.cluster.ClusterOptions(...).pool.
    parse_pool: Callable | None = None
    signature: str = field(init=False)
    _chunker: Chunker | None = field(default=None, init=False, repr=False)
    _backend_checked: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self.signature = chunk_signature(self.settings, self.ocr)

    @property
    def embedder(self):
        return self.models.embedder

    @property
    def chunker(self) -> Chunker:
        """The chunker parsing workers use (loaded here only by callers that split in-process)."""
        if self._chunker is None:
            from ingest.chunking import Chunker

            self._chunker = Chunker.from_settings(self.settings)
        return self._chunker

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
        force: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> IngestReport:
        """Store new and changed files, skip unchanged ones; with `sync`, drop vanished ones.

        Holds the collection's writer lock for the whole run (waiting for another writer unless
        `wait` is False), so no other command can undo or interleave with its writes.
        `force` parses and embeds the files again even when unchanged (their chunks are replaced
        like a changed file's). `should_stop` is asked after each file: once it returns True the
        run takes no further file, stores what was already parsed, and its report says
        `cancelled` (files not reached are left as they were: a later run takes them).
        """
        started = time.perf_counter()
        paths = list(paths)
        files = files if files is not None else discover(paths)
        name = collection_name or self.settings.collection
        report = IngestReport(collection=name)
        with writer_lock(self.settings, name, wait, on_wait, "ingest"):
            collection, manifest = self.open(name)
            try:
                store.check_backend(collection, name, self.models.embed_backend)
                damaged = damaged_contents(manifest, collection)
                run = Run(manifest, collection, report, progress, damaged, force, should_stop)
                self.store_files(files, run)
                if sync and not report.cancelled:
                    vanished = vanished_paths(manifest, paths, files)
                    report.removed = remove_records(manifest, collection, vanished)
                release_memory()  # the model's work buffers, before the keyword index is updated
                self.keywords.update(name, collection, manifest)
            finally:
                manifest.close()
        report.seconds = time.perf_counter() - started
        return report

    def reembed(
        self,
        collection_name: str | None = None,
        progress: Progress | None = None,
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
    ) -> IngestReport:
        """Embed every file of a collection again with the configured backend (after changing
        RAG_EMBED_BACKEND). The collection is marked as being embedded again until the run ends,
        so questions and other writers are refused meanwhile rather than mixing two backends'
        vectors; a stopped run is finished by running it again. Files no longer on disk are
        forgotten (their vectors cannot be made again)."""
        started = time.perf_counter()
        name = collection_name or self.settings.collection
        report = IngestReport(collection=name)
        backend = self.models.embed_backend
        with writer_lock(self.settings, name, wait, on_wait, "ingest reembed"):
            collection, manifest = self.open(name)
            try:
                paths = [record.path for record in manifest.records()]
                on_disk = {p: os.path.isfile(p) for p in paths}
                present = [Path(p) for p in paths if on_disk[p]]
                if backend is not None:
                    store.record_backend(collection, store.REEMBEDDING + backend)
                self._backend_checked.discard(name)
                report.removed = remove_records(
                    manifest, collection, [p for p in paths if not on_disk[p]]
                )
                damaged = damaged_contents(manifest, collection)
                run = Run(manifest, collection, report, progress, damaged, True, None)
                self.store_files(present, run)
                if backend is not None and not report.failed:
                    store.record_backend(collection, backend)
                release_memory()
                self.keywords.update(name, collection, manifest)
            finally:
                manifest.close()
        report.seconds = time.perf_counter() - started
        return report

    def store_files(self, files: list[Path], run: Run) -> None:
        """Plan every file, parse and embed the new and changed ones, link copies (and re-embed
        files of the run's damaged contents). The caller holds the collection's writer lock."""
        to_parse: list[tuple[Path, FileRecord]] = []
        for path in files:
            if run.stopping():
                break
            planned = plan_file(path, run, self.signature, self.settings.max_file_mb)
            if isinstance(planned, FileRecord):
                to_parse.append((path, planned))
            else:
                run.tell(path, planned)
        first, copies = split_copies(to_parse)
        if not run.report.cancelled:
            first = self._parse_and_store(first, run)
        else:
            first = []
        reached = {record.content_key for _, record in first}
        copies = [(p, r) for p, r in copies if r.content_key in reached]
        settle_copies(first, copies, run)  # same bytes as a file stored just above

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
                self.keywords.update(name, collection, manifest)
                return removed, doomed
            finally:
                manifest.close()

    def create_collection(self, name: str) -> None:
        """Make an empty collection (its store collection, manifest and keyword index);
        UserError when the name is not valid or the collection already exists."""
        check_collection_name(name)
        if manifest_exists(self.settings.home, name):
            raise UserError(f"collection '{name}' already exists; choose another name")
        with writer_lock(self.settings, name, True, None, "create collection"):
            if manifest_exists(self.settings.home, name):
                raise UserError(f"collection '{name}' already exists; choose another name")
            collection = self.store.collection(name)
            if store.count_chunks(collection):
                raise UserError(
                    f"the store already holds chunks for collection '{name}' but it has no "
                    f"manifest; run `ingest check --repair --collection {name}` to recover it, "
                    "or choose another name"
                )
            Manifest(self.settings.home, name).close()
            self.keywords.build(name, collection)

    def delete_collection(
        self,
        name: str,
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        """Delete a collection for good: its chunks, manifest and keyword index (under its writer
        lock; CollectionBusyError when another command is changing it and `wait` is False).
        UnknownCollectionError when there is no such collection."""
        if not self._collection_exists(name):
            raise UnknownCollectionError(name, list_collections(self.settings.home))
        with writer_lock(self.settings, name, wait, on_wait, "delete collection"):
            if not self._collection_exists(name):  # deleted meanwhile
                raise UnknownCollectionError(name, list_collections(self.settings.home))
            # The manifest goes last: killed half way, the collection still shows and deleting
            # it again finishes the job.
            self.store.delete_collection(name)
            shutil.rmtree(self.keywords.folder(name), ignore_errors=True)
            remove_manifest(self.settings.home, name)

    def _collection_exists(self, name: str) -> bool:
        """A manifest, or (left by an interrupted delete) a store collection of that name."""
        if manifest_exists(self.settings.home, name):
            return True
        try:
            check_collection_name(name)
        except UserError:
            return False
        return self.store.collection(name, create=False) is not None

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
        with reading(self.settings.home, name) as manifest:
            if manifest is None:
                raise UnknownCollectionError(name, list_collections(self.settings.home))
            return manifest.records()

    # --- steps ---------------------------------------------------------------------------

    def _parse_and_store(
        self, to_parse: list[tuple[Path, FileRecord]], run: Run
    ) -> list[tuple[Path, FileRecord]]:
        """Parse, embed and store the files in batches; returns those reached before the run
        was asked to stop (all of them, unless it was)."""
        from ingest.parallel import ParsePool  # parsing machinery loads only when needed

        pending: list[Parsed] = []
        reached: list[tuple[Path, FileRecord]] = []
        size = 0
        pool = (self.parse_pool or ParsePool)(self.settings, self.ocr)
        try:
            for path, record, result in pool.map(to_parse):
                chunks = 0
                if isinstance(result, FileProblem):
                    outcome = outcome_of(result)
                    run.turn_down(record, outcome, result.reason)
                else:
                    nodes, parser, warnings = result
                    record.parser, record.warnings = parser, warnings
                    record.pages = page_count(nodes)
                    run.report.warnings.extend(
                        {"file": record.path, "warning": w} for w in warnings
                    )
                    pending.append(Parsed(path, record, nodes))
                    outcome, chunks = FileOutcome.STORED, len(nodes)
                    size += chunks
                if size >= self.settings.ingest_batch_chunks:
                    self._flush(pending, run)
                    pending, size = [], 0
                run.tell(path, outcome, chunks)
                reached.append((path, record))
                if run.stopping():
                    break
            self._flush(pending, run)
        finally:
            pool.close()
        return reached

    def _flush(self, batch: list[Parsed], run: Run) -> None:
        """Embed and store a batch of parsed files, then commit them to the manifest."""
        if not batch:
            return
        manifest, collection = run.manifest, run.collection
        nodes = [node for item in batch for node in item.nodes]
        intent = manifest.intend("add", [node.node_id for node in nodes])
        try:
            self._embed_and_store(nodes, collection)
        except StoreDamagedError:
            raise  # every later batch would fail the same way: stop with one line
        except Exception as exc:
            what = "embed" if isinstance(exc, EmbeddingFailed) else "store"
            cause = exc.__cause__ if isinstance(exc, EmbeddingFailed) else exc
            for item in batch:
                run.report.record_problem(
                    item.record.path, FileOutcome.FAILED, f"could not {what} ({cause})"
                )
            recover(manifest, collection)  # undo the slices already stored
            return
        with manifest_change(manifest, collection) as change:
            for item in batch:
                record = item.record
                old = manifest.get(record.path)
                chunk_ids = [node.node_id for node in item.nodes]
                before = manifest.content(record.content_key)  # read again (forced): same key
                if before is not None:
                    change.delete(sorted(set(before[0]) - set(chunk_ids)))
                manifest.put_content(
                    change.db, record.content_key, record.sha256, chunk_ids, record.path
                )
                manifest.put_file(change.db, record)
                release_old(change, old, record)
            manifest.done(intent)
        run.report.files += len(batch)
        run.report.chunks += len(nodes)

    def _embed_and_store(self, nodes: list, collection) -> None:
        """A long file arrives as thousands of nodes: embed and store them a slice at a time,
        dropping each slice's vectors once stored, so memory stays flat."""
        self._match_backend(collection)
        step = self.settings.ingest_batch_chunks
        for start in range(0, len(nodes), step):
            part = nodes[start : start + step]
            todo = [node for node in part if node.embedding is None]  # a Ray pool embedded some
            try:
                if todo:
                    self.embedder(todo)
            except Exception as exc:
                raise EmbeddingFailed(exc) from exc
            store.upsert_nodes(collection, part)
            for node in part:
                node.embedding = None

    def _match_backend(self, collection) -> None:
        """A collection holds vectors of one embedding backend: recorded on its first write
        (every run checks it first: ingest())."""
        backend = self.models.embed_backend
        if backend is None or collection.name in self._backend_checked:
            return
        recorded = store.recorded_backend(collection)
        if recorded != backend and not recorded.startswith(store.REEMBEDDING):
            store.record_backend(collection, backend)  # empty until now: check_backend passed
        self._backend_checked.add(collection.name)


def check_collection_name(name: str) -> None:
    """UserError (one line) for a name the store cannot hold."""
    try:
        validate_collection_name(name)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def page_count(nodes: list) -> int | None:
    """A document's pages (or slides): the highest page its chunks name; None without pages."""
    pages = [node.metadata.get("page") for node in nodes]
    numbers = [int(p) for p in pages if isinstance(p, int) or (isinstance(p, str) and p.isdigit())]
    return max(numbers) if numbers else None


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
