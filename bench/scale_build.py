"""The libraries bench/scale.py measures: synthetic chunks made from real ones, written through
the product's own layers (the method is described in bench/scale.py)."""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.app import App
from rag.settings import Settings

PER_DOCUMENT = 100
BIG_DOCUMENT = 1_000
SIGMA = 0.02
MIN_CHARS, MAX_CHARS = 800, 1000
NAME = "default"


# --- the pool of real chunks --------------------------------------------------------------


@dataclass
class Pool:
    """Real chunks (text, title, heading, source document) and their embeddings."""

    texts: list[str]
    titles: list[str]
    headings: list[str]
    sources: list[int]  # index of the real document each chunk comes from
    vectors: np.ndarray  # float32, one normalised row per chunk
    backend: str | None = None  # the embedding backend that made them (None: a test's fake)

    def __post_init__(self) -> None:
        self.own_sentences = [sentences(t) or [t] for t in self.texts]
        self.all_sentences = [s for own in self.own_sentences for s in own]
        by_source: dict[int, list[int]] = {}
        for index, source in enumerate(self.sources):
            by_source.setdefault(source, []).append(index)
        self.by_source = [by_source[s] for s in sorted(by_source)]

    def save(self, stem: Path) -> None:
        np.save(stem.with_suffix(".npy"), self.vectors)
        meta = {k: getattr(self, k) for k in ("texts", "titles", "headings", "sources", "backend")}
        stem.with_suffix(".json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, stem: Path) -> Pool:
        meta = json.loads(stem.with_suffix(".json").read_text())
        return cls(vectors=np.load(stem.with_suffix(".npy")), **meta)


SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(text: str) -> list[str]:
    return [s.strip()[:400] for s in SENTENCE_END.split(text) if len(s.strip()) >= 20]


def document_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def make_pool(settings: Settings, embedder, docs: list[Path], limit: int, seed: int = 7) -> Pool:
    """Split real documents with the product's loaders and chunker; embed `limit` chunks."""
    from llama_index.core.schema import MetadataMode

    from ingest.chunking import Chunker
    from ingest.errors import FileProblem
    from ingest.loaders import load_file
    from ingest.parallel import load_options

    chunker = Chunker.from_settings(settings)
    options = load_options(settings, False)
    nodes, sources = [], []
    for number, path in enumerate(docs):
        try:
            found = chunker.chunk(path, load_file(path, **options), "pool")
        except FileProblem as problem:
            print(f"pool: {path} left out ({problem})", file=sys.stderr)
            continue
        nodes.extend(found)
        sources.extend([number] * len(found))
    picked = sorted(random.Random(seed).sample(range(len(nodes)), min(limit, len(nodes))))
    chosen = [nodes[i] for i in picked]
    embedder(chosen)  # as the pipeline does: title and heading are part of the embedded text
    backend = getattr(embedder, "backend", None)
    vectors = np.asarray([n.get_embedding() for n in chosen], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Pool(
        texts=[n.get_content(metadata_mode=MetadataMode.NONE) for n in chosen],
        titles=[str(n.metadata.get("title", "")) for n in chosen],
        headings=[str(n.metadata.get("heading", "")) for n in chosen],
        sources=[sources[i] for i in picked],
        vectors=vectors,
        backend=backend,
    )


# --- synthetic documents -------------------------------------------------------------------


@dataclass
class SynthDoc:
    number: int
    chunks: int

    @property
    def path(self) -> str:
        return f"/library/doc{self.number:05d}.pdf"


def plan_documents(size: int, big: int = BIG_DOCUMENT, per_doc: int = PER_DOCUMENT) -> list:
    """Document 0 holds `big` chunks (the one removed), the others `per_doc` each."""
    docs = [SynthDoc(0, min(big, size))]
    left = size - docs[0].chunks
    while left > 0:
        docs.append(SynthDoc(len(docs), min(per_doc, left)))
        left -= docs[-1].chunks
    return docs


def chunk_text(pool: Pool, rng: random.Random, base: int) -> str:
    """800-1,000 characters: a run of the base chunk's sentences mixed with other real ones."""
    own = pool.own_sentences[base]
    target = rng.randint(MIN_CHARS, MAX_CHARS)
    at = rng.randrange(len(own))
    parts: list[str] = []
    length = 0
    while length < target:
        if rng.random() < 0.6:
            sentence = own[at % len(own)]
            at += 1
        else:
            sentence = pool.all_sentences[rng.randrange(len(pool.all_sentences))]
        parts.append(sentence)
        length += len(sentence) + 1
    text = " ".join(parts)
    if len(text) > MAX_CHARS:
        cut = text.rfind(" ", MIN_CHARS, MAX_CHARS)
        text = text[: cut if cut > 0 else MAX_CHARS]
    return text


def document_nodes(pool: Pool, doc: SynthDoc, signature: str):
    """The TextNodes (with embeddings) and the manifest record of one synthetic document."""
    from llama_index.core.schema import TextNode

    from ingest.plan import content_key
    from rag.manifest import FileRecord

    rng = random.Random(doc.number)
    bases_of = pool.by_source[doc.number % len(pool.by_source)]
    start = rng.randrange(len(bases_of))
    bases = [bases_of[(start + i) % len(bases_of)] for i in range(doc.chunks)]
    texts = [chunk_text(pool, rng, b) for b in bases]
    noise = np.random.default_rng(doc.number).standard_normal((doc.chunks, pool.vectors.shape[1]))
    vectors = pool.vectors[bases] + SIGMA * noise.astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    body = "\n".join(texts).encode()
    sha = hashlib.sha256(body).hexdigest()
    key = content_key(sha, signature)
    title = f"{pool.titles[bases[0]]} ({doc.number})"
    nodes = []
    for index, (text, base, vector) in enumerate(zip(texts, bases, vectors.tolist(), strict=True)):
        meta = {
            "file": doc.path,
            "file_name": doc.path.rsplit("/", 1)[1],
            "title": title,
            "heading": pool.headings[base],
            "page": index // 3 + 1,
            "sha256": sha,
            "chunk_index": index,
            "parser": "synthetic",
        }
        nodes.append(TextNode(id_=f"{key}-{index:05d}", text=text, metadata=meta, embedding=vector))
    record = FileRecord(
        path=doc.path,
        size=len(body),
        mtime_ns=time.time_ns(),
        sha256=sha,
        content_key=key,
        signature=signature,
        parser="synthetic",
        chunks=doc.chunks,
        pages=(doc.chunks - 1) // 3 + 1,
    )
    return nodes, record


def write_documents(app: App, manifest, collection, pool: Pool, docs: list, progress=None) -> None:
    """Write documents as an ingest does: journal intent, store, manifest in one transaction."""
    from ingest.plan import chunk_signature
    from rag import store

    signature = chunk_signature(app.settings, False)
    batch: list = []

    def flush() -> None:
        nodes = [n for found, _ in batch for n in found]
        intent = manifest.intend("add", [n.node_id for n in nodes])
        store.upsert_nodes(collection, nodes)
        with manifest.transaction() as db:
            for found, record in batch:
                ids = [n.node_id for n in found]
                manifest.put_content(db, record.content_key, record.sha256, ids, record.path)
                manifest.put_file(db, record)
            manifest.done(intent)
        if progress is not None:
            progress(len(nodes))
        batch.clear()

    for doc in docs:
        batch.append(document_nodes(pool, doc, signature))
        if sum(len(found) for found, _ in batch) >= store.WRITE_BATCH:
            flush()
    if batch:
        flush()


@contextmanager
def writing(app: App, purpose: str):
    """The bench collection and its manifest, under the collection's writer lock (as `ingest`)."""
    from rag.locks import writer_lock
    from rag.manifest import Manifest

    with writer_lock(app.settings, NAME, True, None, purpose):
        collection = app.store.collection(NAME)
        manifest = Manifest(app.settings.home, NAME)
        try:
            yield collection, manifest
        finally:
            manifest.close()


def build_library(app: App, pool: Pool, size: int, big: int = BIG_DOCUMENT, show=True) -> dict:
    """Write a library of `size` synthetic chunks into the App's (empty) home; timings."""
    from rag import store

    docs = plan_documents(size, big)
    timings: dict[str, float] = {}
    bar = ProgressBar(size, "chunks") if show else None
    with writing(app, "bench build") as (collection, manifest):
        if pool.backend is not None:  # as an ingest's first write: later ingests must match it
            store.record_backend(collection, pool.backend)
        started = time.perf_counter()
        write_documents(app, manifest, collection, pool, docs, bar.advance if bar else None)
        timings["write_s"] = time.perf_counter() - started
        if bar:
            bar.finish()
        started = time.perf_counter()
        app.keywords.update(NAME, collection, manifest)  # applies the manifest's keyword log
        timings["keyword_s"] = time.perf_counter() - started
    return {
        "size": size,
        "documents": len(docs),
        "big_path": docs[0].path,
        "big_chunks": docs[0].chunks,
        "timings": timings,
    }


def catch_up_keywords(app: App) -> None:
    """Apply whatever the keyword index has not seen yet (as the next ingest would)."""
    with writing(app, "bench keywords") as (collection, manifest):
        app.keywords.update(NAME, collection, manifest)


def rewrite_document(app: App, pool: Pool, doc: SynthDoc) -> None:
    """Write one synthetic document back (after it was removed), with its keyword entries."""
    with writing(app, "bench rewrite") as (collection, manifest):
        write_documents(app, manifest, collection, pool, [doc])
        app.keywords.update(NAME, collection, manifest)


class ProgressBar:
    """A one-line progress bar on stderr (a line per 10% when stderr is not a terminal)."""

    def __init__(self, total: int, unit: str) -> None:
        self.total, self.unit, self.done = total, unit, 0
        self.started = self.shown = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.step = 0

    def advance(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        step = int(10 * self.done / max(self.total, 1))
        if (self.tty and now - self.shown >= 0.5) or (not self.tty and step > self.step):
            self.shown, self.step = now, step
            self._show(now)

    def finish(self) -> None:
        self._show(time.perf_counter())
        if self.tty:
            sys.stderr.write("\n")

    def _show(self, now: float) -> None:
        share = self.done / max(self.total, 1)
        rate = self.done / max(now - self.started, 1e-9)
        eta = (self.total - self.done) / rate if rate else 0
        bar = "#" * int(30 * share)
        line = (
            f"[{bar:<30}] {share:4.0%} {self.done:,}/{self.total:,} {self.unit} "
            f"{rate:,.0f}/s eta {eta:,.0f}s"
        )
        sys.stderr.write(("\r" + line) if self.tty else line + "\n")
        sys.stderr.flush()
