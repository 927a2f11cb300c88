"""The integration suite's second pass: the same tests against a real `chroma run` server.

`RAG_TEST_CHROMA=server pytest tests/integration` starts one Chroma server on a free 127.0.0.1
port with its data in a temporary folder, points every test at it (RAG_CHROMA_URL) and deletes
every collection on it before and after each test. A fixture that outlives one test (the ingested
sample_docs) keeps its collections: `kept_store` records them, and before each test that uses the
fixture they are put back as they were, in place, so an engine already holding them keeps
working. Tests marked `embedded_only`, `store_independent` or `server_pass_redundant` are skipped
in this pass (pyproject.toml says what each marker means).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag import store

CHOICE = os.environ.get("RAG_TEST_CHROMA") or "embedded"  # checked in conftest.py
SERVER_PASS = CHOICE == "server"

SKIP_REASONS = {
    "embedded_only": "about the embedded store's own files, or run with no network at all "
    "(RAG_TEST_CHROMA=server)",
    "store_independent": "does not depend on the store it runs against; runs in the embedded "
    "pass (RAG_TEST_CHROMA=server)",
    "server_pass_redundant": "left out of the server pass to keep it short: {0}",
}

BIN = Path(sys.executable).parent
WRITE_BATCH = 1000


def chroma_client(url: str):
    """A chromadb client for the server at `url` (tests only; the product goes through
    rag.store)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    host, _, port = url.split("://", 1)[1].rpartition(":")
    return chromadb.HttpClient(
        host=host, port=int(port), settings=ChromaSettings(anonymized_telemetry=False)
    )


def fresh_store(env: Mapping[str, str] | None = None) -> None:
    """Delete every collection on the Chroma server that `env` (default: this process's
    environment) names in RAG_CHROMA_URL; nothing to do for the embedded store, where each
    RAG_HOME has its own."""
    url = (os.environ if env is None else env).get("RAG_CHROMA_URL")
    if url:
        client = chroma_client(url)
        for collection in client.list_collections():
            client.delete_collection(name=collection.name)


@dataclass
class Snapshot:
    """Every chunk of one collection, with its embedding, to put back later."""

    name: str
    metadata: dict[str, Any] | None
    ids: list[str]
    embeddings: list[Any]
    documents: list[str | None]
    metadatas: list[dict[str, Any] | None]


@dataclass
class ChromaServer:
    """`chroma run` on 127.0.0.1 with its data in `path`; it can be killed and started again
    on the same folder and port."""

    path: Path
    port: int
    process: subprocess.Popen | None = None
    kept: dict[str, list[Snapshot]] = field(default_factory=dict)  # by fixture name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        from tests.integration.conftest import wait_for_http

        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        env["ANONYMIZED_TELEMETRY"] = "False"  # the server's own telemetry
        log = open(self.path.with_name(self.path.name + ".log"), "ab")  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [str(BIN / "chroma"), "run", "--path", str(self.path)]
                + ["--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        try:
            wait_for_http(f"{self.url}/api/v2/heartbeat", timeout=timeout, process=self.process)
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to finish anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    # --- the server pass: fresh state before each test -----------------------------------

    def keep(self, fixture: str) -> None:
        """The collections now on the server belong to `fixture`, which outlives one test."""
        client = chroma_client(self.url)
        snapshots = []
        for collection in client.list_collections():
            raw = client.get_collection(name=collection.name)
            data = raw.get(include=["embeddings", "documents", "metadatas"])
            snapshots.append(
                Snapshot(
                    name=raw.name,
                    metadata=dict(raw.metadata or {}) or None,
                    ids=list(data["ids"]),
                    embeddings=list(data["embeddings"]),
                    documents=list(data["documents"]),
                    metadatas=list(data["metadatas"]),
                )
            )
        self.kept[fixture] = snapshots

    def reset(self, fixtures: list[str]) -> None:
        """Delete every collection, except those kept by the `fixtures` a test uses: those are
        put back as they were kept, in place."""
        wanted = {s.name: s for name in fixtures for s in self.kept.get(name, [])}
        client = chroma_client(self.url)
        for collection in client.list_collections():
            if collection.name not in wanted:
                client.delete_collection(name=collection.name)
        for snapshot in wanted.values():
            # the distance is set at creation only: a collection whose metadata was modified
            # (its embedding backend recorded) no longer lists it
            metadata = store.COLLECTION_METADATA | (snapshot.metadata or {})
            raw = client.get_or_create_collection(name=snapshot.name, metadata=metadata)
            extra = set(raw.get(include=[])["ids"]) - set(snapshot.ids)
            if extra:
                raw.delete(ids=sorted(extra))
            for start in range(0, len(snapshot.ids), WRITE_BATCH):
                end = start + WRITE_BATCH
                raw.upsert(
                    ids=snapshot.ids[start:end],
                    embeddings=snapshot.embeddings[start:end],
                    documents=snapshot.documents[start:end],
                    metadatas=snapshot.metadatas[start:end],
                )


RUNNING: list[ChromaServer] = []  # the server pass's server, while it runs


@contextmanager
def kept_store(server: ChromaServer | None, fixture: str) -> Iterator[None]:
    """Around the ingest of a fixture that outlives one test: an empty server before it, its
    collections kept after it. Nothing to do in the embedded pass (`server` is None)."""
    if server is not None:
        fresh_store({"RAG_CHROMA_URL": server.url})
    yield
    if server is not None:
        server.keep(fixture)
