"""The Chroma store: an embedded PersistentClient, or an HttpClient to a Chroma server.

This is the only module that imports chromadb.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Iterable
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

    def __init__(self, raw, location: str, embedded: bool, settings: Settings | None = None):
        self.raw = raw
        self.location = location
        self.embedded = embedded
        self.settings = settings

    def __getattr__(self, name: str):
        return getattr(self.raw, name)

    def reopen(self) -> None:
        """Read the collection afresh from disk (see STALE_READ)."""
        if self.settings is None or not self.embedded:
            return
        forget_client(self.settings, stop=False)  # the old client stays usable for its holders
        self.raw = open_client(self.settings).get_collection(name=self.raw.name)


# Chroma's answer when a reader's copy of the vector index still holds chunks that another
# process deleted a moment ago; reading the collection afresh resolves it.
STALE_READ = "Error finding id"
STALE_RETRIES = 4


def store_failure(location: str, embedded: bool, exc: BaseException) -> StoreError:
    """One line for a failing store call: damaged files, or what Chroma said."""
    if isinstance(exc, StoreError):
        return exc
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
    return module.startswith("chromadb") or isinstance(exc, (sqlite3.Error, OSError))


def location(settings: Settings) -> str:
    if settings.chroma_host:
        return f"http://{settings.chroma_host}:{settings.chroma_port}"
    return str(settings.chroma_path)


_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def _chroma_settings():
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def open_client(settings: Settings):
    """One client per location per process (Chroma dislikes two clients on one folder)."""
    key = (str(settings.chroma_path), settings.chroma_host, settings.chroma_port)
    with _clients_lock:
        if key not in _clients:
            if settings.chroma_host:
                _clients[key] = _connect(settings)
            else:  # creating a new store's tables must not race another process doing it
                with store_init_lock(settings):
                    _clients[key] = _connect(settings)
        return _clients[key]


def forget_client(settings: Settings, stop: bool = True) -> None:
    """Drop this process's client for a location, so the next one reads it afresh; `stop` also
    shuts the old one down (after the store's files were moved away)."""
    key = (str(settings.chroma_path), settings.chroma_host, settings.chroma_port)
    with _clients_lock:
        _clients.pop(key, None)
    if settings.chroma_host:
        return
    from chromadb.api.shared_system_client import SharedSystemClient

    # Chroma caches one system per folder, even a half-started one when opening failed.
    identifier = str(settings.chroma_path)
    system = SharedSystemClient._identifier_to_system.pop(identifier, None)
    SharedSystemClient._identifier_to_refcount.pop(identifier, None)
    if system is not None and stop:
        try:
            system.stop()
        except Exception:  # a system that never started cannot stop cleanly; it is dropped
            pass


def _connect(settings: Settings):
    import chromadb

    if settings.chroma_host:
        url = f"http://{settings.chroma_host}:{settings.chroma_port}"
        try:
            client = chromadb.HttpClient(
                host=settings.chroma_host, port=settings.chroma_port, settings=_chroma_settings()
            )
            client.heartbeat()
        except Exception as exc:
            raise StoreError(
                f"cannot reach the Chroma server at {url} ({type(exc).__name__}); start it "
                f"(`chroma run --host {settings.chroma_host} --port {settings.chroma_port}`) "
                "or unset RAG_CHROMA_HOST to use the embedded store"
            ) from None
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
        ) from None
    except Exception as exc:
        raise store_failure(str(settings.chroma_path), True, exc) from exc


def get_collection(
    settings: Settings, name: str | None = None, create: bool = True
) -> Collection | None:
    """The named collection (cosine distance); None when it does not exist and create is False."""
    name = validate_collection_name(name or settings.collection)
    client = open_client(settings)
    where, embedded = location(settings), not settings.chroma_host
    if create:
        try:
            if embedded:
                with store_init_lock(settings):
                    raw = client.get_or_create_collection(
                        name=name, metadata={"hnsw:space": "cosine"}
                    )
            else:
                raw = client.get_or_create_collection(name=name, metadata={"hnsw:space": "cosine"})
        except Exception as exc:
            raise store_failure(where, embedded, exc) from exc
        return Collection(raw, where, embedded, settings)
    try:
        raw = client.get_collection(name=name)
    except Exception as exc:  # NotFoundError / ValueError depending on version
        if "does not exist" in str(exc) or "not found" in str(exc).lower():
            return None
        raise store_failure(where, embedded, exc) from exc
    return Collection(raw, where, embedded, settings)


def collection_names(settings: Settings) -> list[str]:
    client = open_client(settings)
    try:
        return sorted(getattr(c, "name", c) for c in client.list_collections())
    except Exception as exc:
        raise store_failure(location(settings), not settings.chroma_host, exc) from exc


@guarded
def count_chunks(collection) -> int:
    return collection.count() if collection is not None else 0


@guarded
def chunk_ids_where(collection, where: dict[str, Any]) -> list[str]:
    return list(collection.get(where=where, include=[])["ids"])


@guarded
def metadata_where(collection, where: dict[str, Any] | None = None, limit: int | None = None):
    """Metadata of the chunks matching `where` (all chunks when None)."""
    result = collection.get(where=where, include=["metadatas"], limit=limit)
    return list(zip(result["ids"], result["metadatas"], strict=True))


@guarded
def delete_ids(collection, ids: Iterable[str]) -> int:
    ids = list(ids)
    for start in range(0, len(ids), WRITE_BATCH):
        collection.delete(ids=ids[start : start + WRITE_BATCH])
    return len(ids)


@guarded
def distinct_values(collection, key: str) -> set[str]:
    """All values of one metadata key across the collection, read in pages."""
    values: set[str] = set()
    offset = 0
    while True:
        page = collection.get(include=["metadatas"], limit=5000, offset=offset)
        metas = page["metadatas"] or []
        values.update(str(m[key]) for m in metas if m and key in m)
        if len(metas) < 5000:
            return values
        offset += 5000


@guarded
def upsert_nodes(collection, nodes) -> list[str]:
    """Write embedded llama-index nodes in batches; upsert makes a repeated write harmless."""
    from llama_index.core.schema import MetadataMode
    from llama_index.core.vector_stores.utils import node_to_metadata_dict

    ids: list[str] = []
    for start in range(0, len(nodes), WRITE_BATCH):
        batch = nodes[start : start + WRITE_BATCH]
        metadatas = []
        for node in batch:
            meta = node_to_metadata_dict(node, remove_text=True, flat_metadata=True)
            metadatas.append({k: ("" if v is None else v) for k, v in meta.items()})
        collection.upsert(
            ids=[n.node_id for n in batch],
            embeddings=[n.get_embedding() for n in batch],
            metadatas=metadatas,
            documents=[n.get_content(metadata_mode=MetadataMode.NONE) for n in batch],
        )
        ids.extend(n.node_id for n in batch)
    return ids


@guarded
def set_file_path(collection, ids: list[str], path: str) -> None:
    """Point stored chunks at another path (a moved file), without embedding them again."""
    import json
    from pathlib import Path

    for start in range(0, len(ids), WRITE_BATCH):
        batch = ids[start : start + WRITE_BATCH]
        found = collection.get(ids=batch, include=["metadatas"])
        metadatas = []
        for meta in found["metadatas"]:
            meta = dict(meta)
            meta["file"], meta["file_name"] = path, Path(path).name
            if "_node_content" in meta:  # llama-index rebuilds the node from this copy
                node = json.loads(meta["_node_content"])
                node.setdefault("metadata", {}).update(file=path, file_name=Path(path).name)
                meta["_node_content"] = json.dumps(node)
            metadatas.append(meta)
        if found["ids"]:
            collection.update(ids=list(found["ids"]), metadatas=metadatas)


@guarded
def all_ids(collection) -> set[str]:
    ids: set[str] = set()
    offset = 0
    while True:
        page = collection.get(include=[], limit=5000, offset=offset)
        ids.update(page["ids"])
        if len(page["ids"]) < 5000:
            return ids
        offset += 5000


@guarded
def all_texts(collection, with_headings: bool = True) -> tuple[list[str], list[str]]:
    """Every chunk's id and searchable text (title, heading and passage), read in pages."""
    ids: list[str] = []
    texts: list[str] = []
    offset = 0
    while True:
        page = collection.get(include=["documents", "metadatas"], limit=5000, offset=offset)
        for chunk_id, text, meta in zip(
            page["ids"], page["documents"], page["metadatas"], strict=True
        ):
            meta = meta or {}
            ids.append(chunk_id)
            head = f"{meta.get('title', '')}\n{meta.get('heading', '')}\n" if with_headings else ""
            texts.append(head + (text or ""))
        if len(page["ids"]) < 5000:
            return ids, texts
        offset += 5000


@guarded
def nearest(
    collection, embedding: list[float], limit: int, where: dict | None = None
) -> list[dict]:
    """The chunks closest to an embedding: id, text, metadata and cosine similarity, best first."""
    count = collection.count()
    if count == 0:
        return []
    result = collection.query(
        query_embeddings=[embedding],
        n_results=min(limit, count),
        where=where,
        include=["documents", "metadatas", "distances"],
    )
    return [
        {"id": i, "text": t, "meta": m or {}, "cosine": 1.0 - float(d)}
        for i, t, m, d in zip(
            result["ids"][0],
            result["documents"][0],
            result["metadatas"][0],
            result["distances"][0],
            strict=True,
        )
    ]


@guarded
def chunks_by_id(collection, ids: list[str]) -> dict[str, dict]:
    """id -> {text, meta, embedding} for the given chunk ids."""
    if not ids:
        return {}
    result = collection.get(ids=ids, include=["documents", "metadatas", "embeddings"])
    return {
        i: {"text": t, "meta": m or {}, "embedding": e}
        for i, t, m, e in zip(
            result["ids"],
            result["documents"],
            result["metadatas"],
            result["embeddings"],
            strict=True,
        )
    }
