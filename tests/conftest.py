"""Shared fixtures: a temp RAG_HOME for every test, and small deterministic fakes for the models."""

from __future__ import annotations

import hashlib
import math
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from llama_index.core.embeddings import BaseEmbedding

from rag.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SAMPLES = ROOT / "sample_docs"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """Models prepared on this machine (the ONNX export) are made once per session and shared
    by every RAG_HOME through RAG_MODEL_CACHE, as several homes of one user share them."""
    import os

    cache = tmp_path_factory.mktemp("model-cache")
    os.environ["RAG_MODEL_CACHE"] = str(cache)
    return cache


@pytest.fixture(autouse=True)
def rag_home(tmp_path_factory, monkeypatch, model_cache) -> Path:
    """Every test gets its own empty RAG_HOME, and no RAG_* setting leaks in from the shell."""
    import os

    for key in list(os.environ):
        if key.startswith("RAG_"):
            monkeypatch.delenv(key)
    home = tmp_path_factory.mktemp("rag-home")
    monkeypatch.setenv("RAG_HOME", str(home))
    monkeypatch.setenv("RAG_MODEL_CACHE", str(model_cache))
    return home


# The refusal thresholds are calibrated for the real embedding model; the fakes' scores mean
# nothing, so tests with fakes switch refusal off (tests of refusal switch it back on).
NO_REFUSAL = {
    "refuse_below": -1.0,
    "refuse_unless_similar": -1.0,
    "refuse_missing_terms": False,
    "refuse_unstated_default": False,
    "refuse_min_typed_support": -1.0,
    "refuse_min_support": -1.0,
}


@pytest.fixture
def settings(rag_home):
    return load_settings(**NO_REFUSAL)


class FakeEmbedding(BaseEmbedding):
    """Hashed bag of words: texts sharing words are close. Deterministic and instant."""

    dims: int = 256

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        for word in re.findall(r"\w+", text.lower()):
            slot = int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dims
            vector[slot] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)


class FakeLLM:
    """A ChatModel that replies with queued texts (or a fixed one) and records the prompts."""

    def __init__(self, n_ctx: int = 4096, reply: str = "The answer is in the sources [1].") -> None:
        self.n_ctx = n_ctx
        self.reply = reply
        self.queue: list[str] = []
        self.prompts: list[list[dict[str, str]]] = []
        self.lock = threading.Lock()  # like llama.cpp: one completion at a time

    @property
    def queue_length(self) -> int:
        return 1 if self.lock.locked() else 0

    def reset_cache(self) -> None:
        pass

    def describe(self) -> dict:
        return {"name": "fake", "n_ctx": self.n_ctx}

    def enqueue(self, text: str) -> None:
        self.queue.append(text)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream_chat(self, messages, max_tokens, temperature) -> Iterator[str]:
        with self.lock:
            self.prompts.append(messages)
            text = self.queue.pop(0) if self.queue else self.reply
            yield from re.findall(r"\S+\s*", text)


@pytest.fixture
def fake_embedder() -> FakeEmbedding:
    return FakeEmbedding(model_name="fake-hash", embed_batch_size=16)


@pytest.fixture
def fake_llm() -> FakeLLM:
    return FakeLLM()


@pytest.fixture
def app(settings, fake_embedder, fake_llm):
    """An App on the test's RAG_HOME with the fake models."""
    from rag.app import build_app

    built = build_app(settings, embedder=fake_embedder, llm=fake_llm)
    yield built
    built.close()
