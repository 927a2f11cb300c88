"""Each collection records the embedding backend that made its vectors: questions and writes
with another are refused in one line, and `ingest reembed` moves a collection to the configured one."""

from __future__ import annotations

import numpy as np
import pytest

from rag.app import build_app
from rag.embedding import SentenceEmbedding
from rag.store import (
    BACKEND_KEY,
    REEMBEDDING,
    BackendMismatchError,
    embedding_backend,
    record_backend,
)


class _TaggedEncoder:
    """The fake embedding's vectors under a backend's name."""

    def __init__(self, backend: str, fake) -> None:
        self.backend = backend
        self._fake = fake

    def encode_passages(self, texts, batch_size):
        return np.array(self._fake.get_text_embedding_batch(texts))

    def encode_question(self, text):
        return np.array(self._fake.get_query_embedding(text))


@pytest.fixture
def backends(fake_embedder):
    """The fake embedding under the two backends' names."""
    return tuple(
        SentenceEmbedding(_TaggedEncoder(name, fake_embedder), "m", 8)
        for name in ("onnx-int8", "torch")
    )


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nThe zebra code is ZX-1.\n")
    return folder


def test_a_collection_records_its_backend_and_refuses_questions_or_writes_from_another(
    settings, backends, fake_llm, docs
):
    onnx, torch = backends
    first = build_app(settings, embedder=onnx, llm=fake_llm)
    first.ingestor().ingest([docs])
    collection = first.store.collection("default", create=False)
    assert collection.metadata[BACKEND_KEY] == "onnx-int8"
    assert embedding_backend(collection) == "onnx-int8"
    assert first.engine.ask("What is the zebra code?").sources  # same backend: answered

    other = build_app(settings, embedder=torch, llm=fake_llm)
    with pytest.raises(BackendMismatchError, match="RAG_EMBED_BACKEND=onnx"):
        other.engine.ask("What is the zebra code?")
    (docs / "b.md").write_text("# B\n\nThe yak code is YK-2.\n")
    with pytest.raises(BackendMismatchError, match="embedded with onnx-int8"):
        other.ingestor().ingest([docs])
    assert first.engine.stats()["chunks"] == 1  # nothing of the refused run was stored

    # emptied, it takes the backend that fills it again
    first.ingestor().remove([docs])
    other.ingestor().ingest([docs])
    refilled = other.store.collection("default", create=False)
    assert refilled.metadata[BACKEND_KEY] == "torch" and other.engine.stats()["chunks"] == 2
    fresh = build_app(settings, embedder=onnx, llm=fake_llm)
    with pytest.raises(BackendMismatchError, match="embedded with torch"):
        fresh.engine.ask("What is the zebra code?")

    # made before backends were recorded: torch, the only backend then
    refilled.modify(metadata={"note": "old"})
    assert embedding_backend(refilled) == "torch"


def test_reembed_moves_a_collection_to_the_configured_backend(settings, backends, fake_llm, docs):
    onnx, torch = backends
    (docs / "b.md").write_text("# B\n\nThe yak code is YK-2.\n")
    build_app(settings, embedder=torch, llm=fake_llm).ingestor().ingest([docs])
    (docs / "b.md").unlink()  # gone from disk: its vectors cannot be made again

    app = build_app(settings, embedder=onnx, llm=fake_llm)
    with pytest.raises(BackendMismatchError, match="ingest reembed -c default"):
        app.engine.ask("What is the zebra code?")
    report = app.ingestor().reembed()

    assert report.files == 1 and report.removed == 1 and not report.failed
    collection = build_app(settings, embedder=onnx).store.collection("default", create=False)
    assert collection.metadata[BACKEND_KEY] == "onnx-int8"
    assert [r.path for r in app.ingestor().records()] == [str(docs / "a.md")]
    fresh = build_app(settings, embedder=onnx, llm=fake_llm)
    assert fresh.engine.ask("What is the zebra code?").sources[0].file.endswith("a.md")

    # a run stopped half way leaves the mark: refused until a run finishes
    record_backend(collection, REEMBEDDING + "onnx-int8")
    stopped = build_app(settings, embedder=onnx, llm=fake_llm)
    with pytest.raises(BackendMismatchError, match="being embedded again with onnx-int8"):
        stopped.engine.ask("What is the zebra code?")
    with pytest.raises(BackendMismatchError, match="being embedded again"):
        stopped.ingestor().ingest([docs])
    stopped.ingestor().reembed()
    assert build_app(settings, embedder=onnx, llm=fake_llm).engine.ask("What is the zebra code?")


def test_the_record_is_read_afresh_by_a_process_that_opened_the_collection_earlier(
    settings, backends, fake_llm, docs
):
    onnx, torch = backends
    reader = build_app(settings, embedder=onnx, llm=fake_llm)
    opened = reader.store.collection("default")  # empty and unrecorded when opened
    assert not opened.metadata.get(BACKEND_KEY)

    build_app(settings, embedder=onnx, llm=fake_llm).ingestor().ingest([docs])
    assert reader.engine.ask("What is the zebra code?").sources  # not taken for torch

    # moved to torch by another writer meanwhile: this reader's older copy says onnx-int8
    build_app(settings, embedder=torch, llm=fake_llm).ingestor().reembed()
    with pytest.raises(BackendMismatchError, match="embedded with torch"):
        reader.engine.ask("What is the zebra code?")
