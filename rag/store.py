"""The Chroma store: an embedded PersistentClient, or an HttpClient to a Chroma server.

This is the only module that imports chromadb.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from rag.errors import UserError
from rag.locks import store_init_lock
from rag.settings import Settings, validate_collection_name

# Chroma caps one write; stay well below it.
WRITE_BATCH = 1000


class StoreError(UserError):
    """The store cannot be opened or used; the message says what to do."""


class StoreDamagedError(StoreError):
    """The embedded store's files are damaged; `ingest check --repair` rebuilds them."""


# What Chroma says when its files are damaged (SQLite pages, the log, the HNSW segment).
DAMAGE_SIGNS = (
    "malformed",
    "not a database",
    "failed to pull logs",
    "error loading hnsw",
    "corrupt",
    "no such table",
)


class Collection:
    """A Chroma collection and where it lives, so that every failure can name the store."""

    def __init__(self, raw, store: Store) -> None:
        self.raw = raw
        self.store = store
        self.location = store.location
        self.embedded = store.embedded

    def __getattr__(self, name: str):
        return getattr(self.raw, name)

    def current_metadata(self) -> dict:
        """The collection's metadata as stored now: the handle keeps the copy read when it was
        opened, and another process (an upload, `ingest reembed`) may have changed it since."""
        try:
            raw = self.store.client().get_collection(name=self.raw.name)
        except Exception as exc:
            raise store_failure(self.location, self.embedded, exc) from exc
        return dict(raw.metadata or {})

    def reopen(self) -> None:
        """Read the collection afresh from disk (see STALE_READ)."""
        if not self.embedded:
            return
        self.store.forget(stop=False)  # the old client stays usable for its holders
        self.raw = self.store.client().get_collection(name=self.raw.name)


# Chroma's answer when a reader's copy of the vector index still holds chunks that another
# process deleted a moment ago; reading the collection afresh resolves it.
STALE_READ = "Error finding id"
STALE_RETRIES = 4


def store_failure(location: str, embedded: bool, exc: BaseException) -> StoreError:
    """One line for a failing store call: damaged files, a server that stopped answering, or
    what Chroma said."""
    if isinstance(exc, StoreError):
        return exc
    if not embedded and any(is_connection_failure(e) for e in causes(exc)):
        return unreachable(location, None, exc)
    detail = " ".join(str(exc).split())[:300] or type(exc).__name__
    lowered = " ".join(str(e) for e in causes(exc)).lower()
    damage = next((e for e in causes(exc) if any(s in str(e).lower() for s in DAMAGE_SIGNS)), None)
    if damage is not None:
        detail = " ".join(str(damage).split())[:300]
    if embedded and any(sign in lowered for sign in DAMAGE_SIGNS):
        return StoreDamagedError(
            f"the store at {location} is damaged ({detail}); run `ingest check --repair` to "
            "rebuild it from your files"
        )
    if "full" in lowered or getattr(exc, "errno", None) == 28:
        return StoreError(f"the store at {location} cannot write ({detail}); free some disk space")
    return StoreError(f"the store at {location} failed ({type(exc).__name__}: {detail})")


def causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from (Chroma wraps its database errors)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def guarded(function):
    """Turn any failure of Chroma inside a store function into a StoreError naming the store."""

    @functools.wraps(function)
    def wrapper(collection, *args, **kwargs):
        for attempt in range(STALE_RETRIES + 1):
            try:
                return function(collection, *args, **kwargs)
            except StoreError:
                raise
            except Exception as exc:
                if not isinstance(collection, Collection) or not is_store_failure(exc):
                    raise
                if STALE_READ in str(exc) and attempt < STALE_RETRIES:
                    time.sleep(0.2 * (attempt + 1))
                    collection.reopen()
                    continue
                raise store_failure(collection.location, collection.embedded, exc) from exc
        raise AssertionError("unreachable")

    return wrapper


def is_store_failure(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return (
        module.startswith("chromadb")
        or isinstance(exc, (sqlite3.Error, OSError))
        or is_connection_failure(exc)
    )


def is_connection_failure(exc: BaseException) -> bool:
    """The Chroma server could not be reached, or went away in the middle of a call."""
    import httpx  # the HTTP client chromadb talks to a server with

    return isinstance(exc, (httpx.TransportError, ConnectionError))


def unreachable(url: str, settings: Settings | None, exc: BaseException) -> StoreError:
    """One line naming the Chroma server that does not answer, and what to do."""
    setting = "RAG_CHROMA_URL"
    if settings is not None and not settings.chroma_url:
        setting = "RAG_CHROMA_HOST"
    host, _, port = url.split("://", 1)[1].rpartition(":")
    cause = next((e for e in causes(exc) if is_connection_failure(e)), exc)
    reason = " ".join(str(cause).split())[:120] or type(cause).__name__
    return StoreError(
        f"cannot reach the Chroma server at {url} ({reason}); start it "
        f"(`chroma run --path DIR --host {host.strip('[]')} --port {port}`) and run the command "
        f"again, or unset {setting} to use the embedded store"
    )


def location(settings: Settings) -> str:
    """The Chroma server's URL, or the embedded store's folder."""
    return settings.chroma_server or str(settings.chroma_path)


def _chroma_settings():
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


class Store:
    """The Chroma client for one location, opened on first use; an App holds one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.location = location(settings)
        self.embedded = settings.chroma_server is None
        self._client = None
        self._collections: dict[str, Collection] = {}  # opened once: each open is a Chroma call
        self._lock = threading.Lock()

    def client(self):
        with self._lock:
            if self._client is None:
                if self.embedded:  # creating a new store's tables must not race another process
                    with store_init_lock(self.settings):
                        self._client = _connect(self.settings)
                else:
                    self._client = _connect(self.settings)
            return self._client

    def forget(self, stop: bool = True) -> None:
        """Drop the client, so the next call reads the store afresh; `stop` also shuts the old
        one down (after the store's files were moved away)."""
        with self._lock:
            self._client = None
            self._collections.clear()
        if self.embedded:
            forget_system(str(self.settings.chroma_path), stop)

    def collection(self, name: str | None = None, create: bool = True) -> Collection | None:
        """The named collection (cosine distance); None when it does not exist and create is
        False."""
        name = name or self.settings.collection
        try:
            validate_collection_name(name)
        except ValueError as exc:
            raise StoreError(str(exc)) from exc
        with self._lock:
            known = self._collections.get(name)
        if known is not None:
            return known
        client = self.client()
        try:
            if not create:
                raw = client.get_collection(name=name)
            elif self.embedded:
                with store_init_lock(self.settings):
                    raw = client.get_or_create_collection(name=name, metadata=COLLECTION_METADATA)
            else:
                raw = client.get_or_create_collection(name=name, metadata=COLLECTION_METADATA)
        except Exception as exc:  # NotFoundError / ValueError depending on version
            if not create and ("does not exist" in str(exc) or "not found" in str(exc).lower()):
                return None
            raise store_failure(self.location, self.embedded, exc) from exc
        opened = Collection(raw, self)
        with self._lock:
            self._collections[name] = opened
        return opened

    def delete_collection(self, name: str) -> bool:
        """Delete the named collection and every chunk in it; False when it did not exist.
        The caller holds the collection's writer lock."""
        with self._lock:
            self._collections.pop(name, None)
        client = self.client()
        try:
            client.delete_collection(name=name)
        except Exception as exc:  # NotFoundError / ValueError depending on version
            if "does not exist" in str(exc) or "not found" in str(exc).lower():
                return False
            raise store_failure(self.location, self.embedded, exc) from exc
        return True

    def names(self) -> list[str]:
        try:
            return sorted(getattr(c, "name", c) for c in self.client().list_collections())
        except Exception as exc:
            raise store_failure(self.location, self.embedded, exc) from exc


COLLECTION_METADATA = {"hnsw:space": "cosine"}
BACKEND_KEY = "embed_backend"  # in a collection's metadata: what embedded its chunks
REEMBEDDING = "reembedding:"  # ...while `ingest reembed` replaces them: "reembedding:<backend>"


class BackendMismatchError(UserError):
    """A collection's chunks were embedded by another backend than the one configured."""


def stored_metadata(collection) -> dict:
    """A collection's metadata as stored now (a test's plain collection: as it holds it)."""
    current = getattr(collection, "current_metadata", None)
    return current() if current is not None else dict(collection.metadata or {})


def recorded_backend(collection) -> str:
    """The backend written in a collection's metadata as stored now ("" when none was
    recorded)."""
    return str(stored_metadata(collection).get(BACKEND_KEY) or "")


def embedding_backend(collection, recorded: str | None = None) -> str | None:
    """The backend that embedded a collection's chunks ("onnx-int8", "torch"): recorded when the
    collection is first written; "torch" for one written before backends were recorded (torch was
    the only one); None while it is empty (any backend may fill it)."""
    if not count_chunks(collection):
        return None
    return (recorded_backend(collection) if recorded is None else recorded) or "torch"


def record_backend(collection, backend: str) -> None:
    """Write the backend into the collection's metadata (the distance, set at creation, stays)."""
    metadata = stored_metadata(collection)
    kept = {k: v for k, v in metadata.items() if not k.startswith("hnsw:")}
    collection.modify(metadata=kept | {BACKEND_KEY: backend})


def check_backend(collection, name: str, backend: str | None) -> None:
    """Refuse, in one line, to mix vectors of two backends: on the development set, questions
    embedded with int8 ONNX against passages embedded with torch lose 0.015 of MRR@10. The
    record is read from the store each time: another process may have written it since this
    one opened the collection."""
    if backend is None:
        return  # a test's fake embedder
    recorded = recorded_backend(collection)
    if recorded == backend:
        return
    if recorded.startswith(REEMBEDDING):
        raise BackendMismatchError(
            f"collection '{name}' is being embedded again with "
            f"{recorded.removeprefix(REEMBEDDING)}; wait for `ingest reembed -c {name}` to finish, "
            "or run it again if it was stopped"
        )
    stored = embedding_backend(collection, recorded)
    if stored is not None and stored != backend:
        setting = "onnx" if stored.startswith("onnx") else stored
        raise BackendMismatchError(
            f"collection '{name}' was embedded with {stored}, but RAG_EMBED_BACKEND gives "
            f"{backend}: set RAG_EMBED_BACKEND={setting}, or embed it again with this backend: "
            f"`ingest reembed -c {name}`"
        )


def forget_system(path: str, stop: bool) -> None:
    """Chroma caches one system per folder (even a half-started one when opening failed); drop
    it so the next client reads the folder afresh."""
    from chromadb.api.shared_system_client import SharedSystemClient

    system = SharedSystemClient._identifier_to_system.pop(path, None)
    SharedSystemClient._identifier_to_refcount.pop(path, None)
    if system is not None and stop:
        try:
            system.stop()
        except Exception:  # a system that never started cannot stop cleanly; it is dropped
            pass


def _connect(settings: Settings):
    import chromadb

    url = settings.chroma_server
    if url is not None:
        try:
            client = chromadb.HttpClient(
                host=settings.chroma_host,
                port=settings.chroma_port,
                ssl=url.startswith("https:"),
                settings=_chroma_settings(),
            )
            client.heartbeat()
        except Exception as exc:
            raise unreachable(url, settings, exc) from exc
        return client
    try:
        settings.chroma_path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(
            path=str(settings.chroma_path), settings=_chroma_settings()
        )
    except OSError as exc:
        raise StoreError(
            f"cannot open the store at {settings.chroma_path} ({exc.strerror or exc}); "
            "check RAG_HOME points at a writable folder"
        ) from exc
    except Exception as exc:
        raise store_failure(str(settings.chroma_path), True, exc) from exc


# The metadata the product writes for every chunk (flat: str, int or float). Nothing else is
# stored: no framework blobs, so a moved file rewrites two fields and readers need no parser.
CHUNK_FIELDS = ("file", "file_name", "page", "title", "heading", "sha256", "chunk_index", "parser")
# Keys that llama-index wrote beside them up to schema 1; `drop_framework_fields` removes them.
FRAMEWORK_FIELDS = ("_node_content", "_node_type", "doc_id", "document_id", "ref_doc_id")
PAGE_SIZE = 5000


@dataclass
class Chunk:
    """One stored chunk: its id, text, flat metadata, and (when asked for) embedding and the
    cosine similarity to a query."""

    id: str
    text: str
    meta: dict[str, Any]
    score: float = 0.0
    embedding: list[float] | None = None


@dataclass
class Page:
    """One page of a collection read in order: ids, and texts/metadatas when included."""

    ids: list[str]
    texts: list[str]
    metas: list[dict[str, Any]]


def pages(collection, include: tuple[str, ...] = (), size: int = PAGE_SIZE) -> Iterator[Page]:
    """Every chunk of a collection, a page at a time (the one way the product scans a store;
    only maintenance does: checks, migrations, rebuilding the keyword index)."""
    offset = 0
    while True:
        page = _get_page(collection, list(include), size, offset)
        ids = list(page["ids"])
        texts = list(page.get("documents") or [""] * len(ids))
        metas = [m or {} for m in (page.get("metadatas") or [{}] * len(ids))]
        if ids:
            yield Page(ids, texts, metas)
        if len(ids) < size:
            return
        offset += size


@guarded
def _get_page(collection, include: list[str], size: int, offset: int) -> dict:
    return collection.get(include=include, limit=size, offset=offset)


@guarded
def count_chunks(collection) -> int:
    return collection.count() if collection is not None else 0


def metadata_where(collection) -> list[tuple[str, dict[str, Any]]]:
    """(id, metadata) of every chunk (maintenance and tests)."""
    return [
        item
        for page in pages(collection, ("metadatas",))
        for item in zip(page.ids, page.metas, strict=True)
    ]


@guarded
def delete_ids(collection, ids: Iterable[str]) -> int:
    ids = list(ids)
    for start in range(0, len(ids), WRITE_BATCH):
        collection.delete(ids=ids[start : start + WRITE_BATCH])
    return len(ids)


def chunk_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The flat metadata stored for a chunk: the product's fields that have a value."""
    return {key: meta[key] for key in CHUNK_FIELDS if meta.get(key) not in (None, "")}


@guarded
def upsert_nodes(collection, nodes) -> list[str]:
    """Write embedded llama-index nodes in batches; upsert makes a repeated write harmless."""
    from llama_index.core.schema import MetadataMode

    ids: list[str] = []
    for start in range(0, len(nodes), WRITE_BATCH):
        batch = nodes[start : start + WRITE_BATCH]
        collection.upsert(
            ids=[n.node_id for n in batch],
            embeddings=[n.get_embedding() for n in batch],
            metadatas=[chunk_metadata(n.metadata) for n in batch],
            documents=[n.get_content(metadata_mode=MetadataMode.NONE) for n in batch],
        )
        ids.extend(n.node_id for n in batch)
    return ids


@guarded
def set_file_path(collection, ids: list[str], path: str) -> None:
    """Point stored chunks at another path (a moved file), without embedding them again."""
    name = PurePath(path).name
    for start in range(0, len(ids), WRITE_BATCH):
        batch = ids[start : start + WRITE_BATCH]
        collection.update(ids=batch, metadatas=[{"file": path, "file_name": name}] * len(batch))


@guarded
def drop_framework_fields(collection) -> int:
    """Schema 1 -> 2: remove llama-index's node copies from every chunk's metadata (an update
    with None deletes a key); ids are read first, then rewritten a batch at a time."""
    ids = all_ids(collection)
    cleared = dict.fromkeys(FRAMEWORK_FIELDS)
    ordered = sorted(ids)
    for start in range(0, len(ordered), WRITE_BATCH):
        batch = ordered[start : start + WRITE_BATCH]
        collection.update(ids=batch, metadatas=[dict(cleared) for _ in batch])
    return len(ordered)


def all_ids(collection) -> set[str]:
    return {chunk_id for page in pages(collection) for chunk_id in page.ids}


@guarded
def nearest(
    collection, embedding: list[float], limit: int, where: dict | None = None
) -> list[Chunk]:
    """The chunks closest to an embedding, best first, scored by cosine similarity. One call:
    Chroma returns fewer than `limit` when the collection holds fewer."""
    result = collection.query(
        query_embeddings=[embedding],
        n_results=limit,
        where=where,
        include=["documents", "metadatas", "distances"],
    )
    return [
        Chunk(id=i, text=t or "", meta=m or {}, score=1.0 - float(d))
        for i, t, m, d in zip(
            result["ids"][0],
            result["documents"][0],
            result["metadatas"][0],
            result["distances"][0],
            strict=True,
        )
    ]


@guarded
def chunks_by_id(collection, ids: list[str], embeddings: bool = True) -> dict[str, Chunk]:
    """The given chunks (with their embeddings unless told otherwise), by id."""
    if not ids:
        return {}
    include = ["documents", "metadatas"] + (["embeddings"] if embeddings else [])
    result = collection.get(ids=ids, include=include)
    vectors = result["embeddings"] if embeddings else [None] * len(result["ids"])
    return {
        i: Chunk(id=i, text=t or "", meta=m or {}, embedding=None if e is None else list(e))
        for i, t, m, e in zip(
            result["ids"], result["documents"], result["metadatas"], vectors, strict=True
        )
    }
