"""What is stored, per collection, in SQLite: the source of truth for `ingest list` and syncing.

Tables:
- files:    one row per path seen (stored, skipped or failed), with size, mtime, sha256, status
            and pages (a column added by writers to older manifests; readers treat it as unknown).
- contents: one row per stored content (file bytes + chunking signature): its chunk ids, their
            number, and the path that answers cite (the newest path holding that content).
- keyword_log: chunks the manifest started or stopped using, written in the same transaction,
            not yet applied to the keyword index (rag.keyword applies them and clears them).
- journal:  write-ahead intents for the store. An `add` intent is written before chunks go to
            Chroma and a `delete` intent before chunks are removed; a crash leaves the intent
            behind and the next writer's `recover()` finishes or undoes it, so store and manifest
            always agree. Only the holder of the collection's writer lock (rag.locks) writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rag import store
from rag.store import StoreError

# The layout of a collection's chunks in the store. 1: llama-index's node metadata, with a JSON copy
# of every node (`_node_content`); 2: flat metadata written by the product (rag.store.CHUNK_FIELDS).
SCHEMA_VERSION = 2

# How long a command waits for another process's manifest transaction before giving up.
BUSY_SECONDS = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT,
    content_key TEXT,
    signature TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('stored', 'skipped', 'failed')),
    parser TEXT,
    error TEXT,
    warnings TEXT,
    ingested_at REAL NOT NULL,
    pages INTEGER
);
CREATE INDEX IF NOT EXISTS files_content ON files (content_key);
CREATE TABLE IF NOT EXISTS contents (
    content_key TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    chunk_ids TEXT NOT NULL,
    cited_path TEXT NOT NULL,
    chunks INTEGER
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('add', 'delete')),
    chunk_ids TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keyword_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL CHECK (op IN ('add', 'delete')),
    chunk_id TEXT NOT NULL
);
"""


@dataclass
class FileRecord:
    path: str
    size: int
    mtime_ns: int
    sha256: str | None
    content_key: str | None
    signature: str
    status: str = "stored"
    parser: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    ingested_at: float = field(default_factory=lambda: now())
    chunks: int = 0
    pages: int | None = None  # pages (or slides) of the document; None: no pages, or unknown

    def public(self) -> dict:
        return {
            "file": self.path,
            "chunks": self.chunks,
            "status": self.status,
            "sha256": self.sha256,
            "size": self.size,
            "parser": self.parser,
            "error": self.error,
            "warnings": self.warnings,
            "ingested_at": self.ingested_at,
            "pages": self.pages,
        }


class ManifestError(StoreError):
    """The manifest cannot be read or written; the message names the file and the fix."""


class UnknownCollectionError(ManifestError):
    """A command named a collection that holds nothing; nothing is created for it."""

    def __init__(self, name: str, existing: list[str]) -> None:
        known = ", ".join(existing) if existing else "none yet"
        super().__init__(
            f"no collection named '{name}' (existing: {known}); check --collection, or add "
            f"documents to it with `ingest PATH --collection {name}`"
        )


def manifest_path(home: Path, collection: str) -> Path:
    return home / "manifests" / f"{collection}.sqlite3"


def manifest_problem(path: Path, exc: BaseException) -> ManifestError:
    """One line for a SQLite failure on a manifest: full disk, locked, or damaged."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if "full" in detail or getattr(exc, "errno", None) == 28:
        return ManifestError(f"cannot write the manifest {path} ({detail}); free some disk space")
    if "locked" in detail or "busy" in detail:
        return ManifestError(f"the manifest {path} is busy ({detail}); try again")
    if "readonly" in detail or "unable to open" in detail or "permission" in detail.lower():
        return ManifestError(
            f"cannot open the manifest {path} ({detail}); check RAG_HOME is readable and writable"
        )
    return ManifestError(
        f"the manifest {path} is damaged ({detail}); run `ingest check --repair` to rebuild it "
        "from the store"
    )


class Manifest:
    """One collection's manifest; every change is one SQLite transaction.

    `readonly` opens an existing manifest for reading only (never creating or changing it), as
    every reader does; only a writer holding the collection's lock opens it for writing."""

    def __init__(self, home: Path, collection: str, readonly: bool = False) -> None:
        self.path = manifest_path(home, collection)
        try:
            if readonly:
                self.db = sqlite3.connect(
                    f"{self.path.absolute().as_uri()}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=BUSY_SECONDS,
                )
                self.db.execute("SELECT 1 FROM files LIMIT 1").fetchall()
                self._select = select_files(self._has_column("files", "pages"))
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_SECONDS
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            fresh = not self._has_table("files")
            # One transaction: a reader sees either no tables yet or all of them.
            version = (
                "INSERT OR REPLACE INTO meta (key, value) VALUES "
                f"('schema_version', '{SCHEMA_VERSION}');"
                if fresh  # a new collection is written in today's layout from its first chunk
                else ""
            )
            self.db.executescript(f"BEGIN IMMEDIATE;{SCHEMA}{version}COMMIT;")
            self._add_missing_columns()
            self._select = select_files(True)
        except (sqlite3.Error, OSError) as exc:
            raise manifest_problem(self.path, exc) from exc

    def close(self) -> None:
        self.db.close()

    def _add_missing_columns(self) -> None:
        """Columns added since a manifest was made (writers only; readers of an older manifest
        see them as unknown)."""
        for table, column in (("files", "pages"), ("contents", "chunks")):
            if self._has_column(table, column):
                continue
            with self.transaction() as db:
                if not self._has_column(table, column):  # another writer may have just added it
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- reading -------------------------------------------------------------------------

    def _has_table(self, name: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def _has_column(self, table: str, column: str) -> bool:
        return any(row[1] == column for row in self.db.execute(f"PRAGMA table_info({table})"))

    def schema_version(self) -> int:
        """The layout of this collection's chunks in the store (1 before versions were kept)."""
        if not self._has_table("meta"):
            return 1
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 1

    def document_count(self) -> int:
        """Documents: the files stored in the collection (each copy of a file counts)."""
        row = self.db.execute("SELECT COUNT(*) FROM files WHERE status = 'stored'").fetchone()
        return int(row[0])

    def stored_paths(self) -> Iterator[tuple[str, str]]:
        """(path, content key) of every stored file, from the manifest's index."""
        yield from self.db.execute(
            "SELECT path, content_key FROM files WHERE status = 'stored' ORDER BY path"
        )

    def contents_of(self, paths: Iterable[tuple[str, str]]) -> tuple[list[str], set[str]]:
        """For stored files (path, content key): the paths their chunks cite, and their chunk ids."""
        keys = sorted({key for _, key in paths})
        cited: set[str] = set()
        ids: set[str] = set()
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT cited_path, chunk_ids FROM contents WHERE content_key IN ({marks})"
            for path, chunk_ids in self.db.execute(query, part):
                cited.add(path)
                ids.update(json.loads(chunk_ids))
        return sorted(cited), ids

    def get(self, path: str) -> FileRecord | None:
        row = self.db.execute(f"{self._select} WHERE f.path = ?", (path,)).fetchone()
        return to_record(row) if row else None

    def records(self, under: Iterable[str] | None = None) -> list[FileRecord]:
        """Every file, or those at or under the given paths (a range of the path index, so
        forgetting one folder does not read the whole library)."""
        if under is None:
            rows = self.db.execute(f"{self._select} ORDER BY f.path").fetchall()
            return [to_record(row) for row in rows]
        found: dict[str, FileRecord] = {}
        for root in under:
            prefix = root.rstrip("/") + "/"
            # paths starting with "<root>/" sort between "<root>/" and "<root>0" ('0' follows '/')
            rows = self.db.execute(
                f"{self._select} WHERE f.path = ? OR (f.path >= ? AND f.path < ?)",
                (root, prefix, prefix[:-1] + "0"),
            ).fetchall()
            for row in rows:
                record = to_record(row)
                if is_under(record.path, root):
                    found[record.path] = record
        return [found[path] for path in sorted(found)]

    def content(self, content_key: str) -> tuple[list[str], str] | None:
        row = self.db.execute(
            "SELECT chunk_ids, cited_path FROM contents WHERE content_key = ?", (content_key,)
        ).fetchone()
        return (json.loads(row[0]), row[1]) if row else None

    def paths_of(self, content_key: str) -> list[str]:
        rows = self.db.execute(
            "SELECT path FROM files WHERE content_key = ? AND status = 'stored' "
            "ORDER BY ingested_at DESC, path",
            (content_key,),
        ).fetchall()
        return [r[0] for r in rows]

    def all_chunk_ids(self) -> set[str]:
        ids: set[str] = set()
        for (chunk_ids,) in self.db.execute("SELECT chunk_ids FROM contents"):
            ids.update(json.loads(chunk_ids))
        return ids

    def chunk_count(self) -> int:
        """Chunks the stored contents use (a sum over contents, not a read of every id)."""
        row = self.db.execute(
            "SELECT SUM(COALESCE(chunks, json_array_length(chunk_ids))) FROM contents"
        ).fetchone()
        return int(row[0] or 0)

    def keyword_log_end(self) -> int | None:
        """The last entry of the keyword log; None when it is empty."""
        return self.db.execute("SELECT MAX(seq) FROM keyword_log").fetchone()[0]

    def keyword_log(self, end: int, step: int) -> Iterator[list[tuple[str, str]]]:
        """The keyword log up to `end`, oldest first, `step` (chunk id, op) entries at a time."""
        after = 0
        while True:
            rows = self.db.execute(
                "SELECT seq, chunk_id, op FROM keyword_log WHERE seq > ? AND seq <= ? "
                "ORDER BY seq LIMIT ?",
                (after, end, step),
            ).fetchall()
            if not rows:
                return
            yield [(chunk_id, op) for _, chunk_id, op in rows]
            after = rows[-1][0]

    def keyword_done(self, end: int | None) -> None:
        """Forget the keyword log up to `end` (applied to the index)."""
        if end is not None:
            self.db.execute("DELETE FROM keyword_log WHERE seq <= ?", (end,))

    def chunk_ids_by_content(self) -> dict[str, list[str]]:
        return {
            key: json.loads(ids)
            for key, ids in self.db.execute("SELECT content_key, chunk_ids FROM contents")
        }

    def pending(self) -> list[tuple[int, str, list[str]]]:
        rows = self.db.execute("SELECT id, op, chunk_ids FROM journal ORDER BY id").fetchall()
        return [(row[0], row[1], json.loads(row[2])) for row in rows]

    def cited_keys(self, cited: list[str]) -> list[tuple[str, str]]:
        """(cited path, content key) for contents cited under these paths."""
        rows: list[tuple[str, str]] = []
        for start in range(0, len(cited), 500):
            part = cited[start : start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT cited_path, content_key FROM contents WHERE cited_path IN ({marks})"
            rows.extend(self.db.execute(query, part).fetchall())
        return rows

    # --- writing -------------------------------------------------------------------------

    def intend(self, op: str, chunk_ids: list[str]) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO journal (op, chunk_ids) VALUES (?, ?)", (op, json.dumps(chunk_ids))
            )
            return int(cursor.lastrowid)

    def intend_in(self, db: sqlite3.Connection, op: str, chunk_ids: list[str]) -> int:
        """Like intend(), inside a transaction the caller holds. Chunks about to be deleted
        also leave the keyword index (see keyword_log)."""
        cursor = db.execute(
            "INSERT INTO journal (op, chunk_ids) VALUES (?, ?)", (op, json.dumps(chunk_ids))
        )
        if op == "delete":
            db.executemany(
                "INSERT INTO keyword_log (op, chunk_id) VALUES ('delete', ?)",
                ((chunk_id,) for chunk_id in chunk_ids),
            )
        return int(cursor.lastrowid)

    def done(self, journal_id: int) -> None:
        self.db.execute("DELETE FROM journal WHERE id = ?", (journal_id,))

    def put_file(self, db: sqlite3.Connection, record: FileRecord) -> None:
        db.execute(
            "INSERT OR REPLACE INTO files (path, size, mtime_ns, sha256, content_key, signature, "
            "status, parser, error, warnings, ingested_at, pages) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.path,
                record.size,
                record.mtime_ns,
                record.sha256,
                record.content_key,
                record.signature,
                record.status,
                record.parser,
                record.error,
                json.dumps(record.warnings),
                record.ingested_at,
                record.pages,
            ),
        )

    def put_content(
        self, db: sqlite3.Connection, content_key: str, sha256: str, ids: list[str], cited: str
    ) -> None:
        """Record a content's chunks (already in the store); they join the keyword index."""
        db.execute(
            "INSERT OR REPLACE INTO contents (content_key, sha256, chunk_ids, cited_path, chunks) "
            "VALUES (?,?,?,?,?)",
            (content_key, sha256, json.dumps(ids), cited, len(ids)),
        )
        db.executemany(
            "INSERT INTO keyword_log (op, chunk_id) VALUES ('add', ?)", ((i,) for i in ids)
        )

    def set_cited(self, db: sqlite3.Connection, content_key: str, cited: str) -> None:
        db.execute("UPDATE contents SET cited_path = ? WHERE content_key = ?", (cited, content_key))

    def drop_file(self, db: sqlite3.Connection, path: str) -> None:
        db.execute("DELETE FROM files WHERE path = ?", (path,))

    def drop_content(self, db: sqlite3.Connection, content_key: str) -> None:
        db.execute("DELETE FROM contents WHERE content_key = ?", (content_key,))

    def content_pages(self, content_key: str) -> int | None:
        """The page count recorded for a content by a path holding it (None when unknown)."""
        row = self.db.execute(
            "SELECT pages FROM files WHERE content_key = ? AND pages IS NOT NULL LIMIT 1",
            (content_key,),
        ).fetchone()
        return int(row[0]) if row else None

    def referenced(self, db: sqlite3.Connection, content_key: str) -> bool:
        row = db.execute(
            "SELECT 1 FROM files WHERE content_key = ? AND status = 'stored' LIMIT 1",
            (content_key,),
        ).fetchone()
        return row is not None

    def set_schema_version(self, version: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),)
        )

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        self.db.execute(
            "UPDATE files SET size = ?, mtime_ns = ? WHERE path = ?", (size, mtime_ns, path)
        )


def select_files(with_pages: bool) -> str:
    """The query for file records; a manifest made before pages were kept reads them as None."""
    pages = "f.pages" if with_pages else "NULL"
    return (
        "SELECT f.path, f.size, f.mtime_ns, f.sha256, f.content_key, f.signature, f.status, "
        f"f.parser, f.error, f.warnings, f.ingested_at, c.chunk_ids, {pages} "
        "FROM files f LEFT JOIN contents c ON c.content_key = f.content_key"
    )


def to_record(row: tuple) -> FileRecord:
    chunk_ids = json.loads(row[11]) if row[11] and row[6] == "stored" else []
    return FileRecord(
        path=row[0],
        size=row[1],
        mtime_ns=row[2],
        sha256=row[3],
        content_key=row[4],
        signature=row[5],
        status=row[6],
        parser=row[7],
        error=row[8],
        warnings=json.loads(row[9] or "[]"),
        ingested_at=row[10],
        chunks=len(chunk_ids),
        pages=row[12],
    )


def is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def now() -> float:
    return time.time()


def manifest_exists(home: Path, collection: str) -> bool:
    return manifest_path(home, collection).is_file()


def remove_manifest(home: Path, collection: str) -> None:
    """Delete a collection's manifest with its SQLite side files (its writer holds the lock)."""
    path = manifest_path(home, collection)
    for suffix in ("-wal", "-shm", "-journal", ""):  # the database itself last
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextmanager
def reading(home: Path, collection: str) -> Iterator[Manifest | None]:
    """A collection's manifest opened read-only (None when it has none), closed afterwards."""
    if not manifest_exists(home, collection):
        yield None
        return
    try:
        manifest = Manifest(home, collection, readonly=True)
    except ManifestError:
        if not _has_tables(manifest_path(home, collection)):
            yield None  # the first writer has created the file and not yet its tables
            return
        raise
    try:
        yield manifest
    finally:
        manifest.close()


def _has_tables(path: Path) -> bool:
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=BUSY_SECONDS)
        try:
            return db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] > 0
        finally:
            db.close()
    except sqlite3.Error:
        return True  # unreadable: let the caller's error stand


def list_collections(home: Path) -> list[str]:
    folder = home / "manifests"
    return sorted(p.stem for p in folder.glob("*.sqlite3")) if folder.is_dir() else []


def upgrade_schema(manifest: Manifest, collection) -> bool:
    """Bring a collection stored in an older layout up to SCHEMA_VERSION (a writer's manifest,
    under the collection's lock); True when something changed."""
    if manifest.schema_version() >= SCHEMA_VERSION:
        return False
    store.drop_framework_fields(collection)  # 1 -> 2: the only step so far
    manifest.set_schema_version(SCHEMA_VERSION)
    return True
