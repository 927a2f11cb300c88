"""Paths -> files -> load -> chunk -> embed -> store, recording every outcome in an IngestReport."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.chunking import Chunker
from ingest.errors import FileProblem, LoadError, SkipFile
from ingest.loaders import load_file
from rag import store
from rag.models import embedder_tokenizer, load_embedder
from rag.settings import Settings

# Embed and write after this many chunks have been collected (bounds memory, keeps batches full).
FLUSH_CHUNKS = 256


class MissingPathError(FileNotFoundError):
    """A path given on the command line does not exist."""


@dataclass
class IngestReport:
    """What one ingest run did: stored, unchanged, skipped and failed files."""

    collection: str
    files: int = 0
    chunks: int = 0
    unchanged: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {
            "files": self.files,
            "chunks": self.chunks,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            "collection": self.collection,
        }

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


# Progress callback: (file, outcome) where outcome is "stored", "unchanged", "skipped" or "failed".
Progress = Callable[[Path, str], None]


def discover(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, skipping hidden entries) into a sorted file list."""
    found: dict[str, Path] = {}
    roots = [Path(p).expanduser() for p in paths]
    missing = [str(p) for p in roots if not p.exists()]
    if missing:
        raise MissingPathError(f"no such file or folder: {', '.join(missing)}")
    for root in roots:
        if root.is_file():
            resolved = root.resolve()
            found[str(resolved)] = resolved
            continue
        for folder, dirs, names in os.walk(root, onerror=None, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                candidate = Path(folder, name)
                try:
                    resolved = candidate.resolve(strict=True)
                except (OSError, RuntimeError):  # broken link or a link loop
                    resolved = candidate.absolute()
                found.setdefault(str(resolved), resolved)
    return sorted(found.values())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Ingestor:
    """Stores files in one collection; reusable across calls (the UI keeps one)."""

    def __init__(self, settings: Settings, embedder=None) -> None:
        self.settings = settings
        self.embedder = embedder if embedder is not None else load_embedder(settings)
        self.chunker = Chunker(
            settings.chunk_size, settings.chunk_overlap, embedder_tokenizer(self.embedder)
        )

    def ingest(
        self,
        paths: Iterable[str | os.PathLike],
        collection_name: str | None = None,
        progress: Progress | None = None,
        files: list[Path] | None = None,
    ) -> IngestReport:
        started = time.perf_counter()
        name = collection_name or self.settings.collection
        report = IngestReport(collection=name)
        files = files if files is not None else discover(paths)
        collection = store.get_collection(self.settings, name)
        batch = _Batch()
        for path in files:
            outcome = self._prepare(path, collection, report, batch)
            if batch.size >= FLUSH_CHUNKS:
                self._flush(batch, collection, report)
            if progress is not None:
                progress(path, outcome)
        self._flush(batch, collection, report)
        report.seconds = time.perf_counter() - started
        return report

    def _prepare(self, path: Path, collection, report: IngestReport, batch: _Batch) -> str:
        """Load and chunk one file into the batch; record why not when it cannot be."""
        try:
            check_readable(path, self.settings.max_file_mb)
            sha256 = file_sha256(path)
            old = store.metadata_where(collection, {"file": str(path)})
            if old and all(meta.get("sha256") == sha256 for _, meta in old):
                report.unchanged += 1
                return "unchanged"
            loaded = load_file(path)
            nodes = self.chunker.chunk(path, loaded, sha256)
            if not nodes:
                raise SkipFile("no text to store after splitting")
        except SkipFile as problem:
            report.skipped.append({"file": str(path), "reason": problem.reason})
            return "skipped"
        except FileProblem as problem:
            report.failed.append({"file": str(path), "error": problem.reason})
            return "failed"
        except OSError as exc:
            report.failed.append({"file": str(path), "error": f"cannot read file ({exc.strerror})"})
            return "failed"
        for warning in loaded.warnings:
            report.warnings.append({"file": str(path), "warning": warning})
        batch.add(path, nodes, [chunk_id for chunk_id, _ in old])
        return "stored"

    def _flush(self, batch: _Batch, collection, report: IngestReport) -> None:
        if not batch.nodes:
            return
        try:
            nodes = self.embedder(batch.nodes)
            store.vector_store(collection).add(nodes)
        except Exception as exc:  # the store or model failed: these files are not stored
            for path in batch.files:
                report.failed.append(
                    {"file": str(path), "error": f"could not embed or store ({exc})"}
                )
            batch.clear()
            return
        new_ids = {node.node_id for node in nodes}
        stale = [chunk_id for chunk_id in batch.old_ids if chunk_id not in new_ids]
        store.delete_ids(collection, stale)
        report.files += len(batch.files)
        report.chunks += len(nodes)
        batch.clear()


@dataclass
class _Batch:
    files: list[Path] = field(default_factory=list)
    nodes: list = field(default_factory=list)
    old_ids: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.nodes)

    def add(self, path: Path, nodes: list, old_ids: list[str]) -> None:
        self.files.append(path)
        self.nodes.extend(nodes)
        self.old_ids.extend(old_ids)

    def clear(self) -> None:
        self.files.clear()
        self.nodes.clear()
        self.old_ids.clear()


def check_readable(path: Path, max_file_mb: float) -> None:
    """Reject what cannot be a document before parsing it: links to nowhere, folders, huge files."""
    if not path.exists():
        raise LoadError("broken symbolic link or link loop; fix or remove the link")
    if not path.is_file():
        raise SkipFile("not a regular file")
    size_mb = path.stat().st_size / (1024 * 1024)
    if size_mb > max_file_mb:
        raise LoadError(
            f"file is {size_mb:.0f} MB, over the {max_file_mb:g} MB limit; "
            "raise RAG_MAX_FILE_MB to ingest it"
        )
    if not os.access(path, os.R_OK):
        raise LoadError("permission denied; make the file readable (chmod +r)")
