"""llama-index's embedding interface over a loaded SentenceTransformer (see rag.models)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr


class SentenceEmbedding(BaseEmbedding):
    """sentence-transformers behind llama-index's embedding interface.

    llama-index hands over whole lists (embed_batch_size is its maximum, 2048); the model then sorts them by
    length and encodes in its own batches, exactly as raw `SentenceTransformer.encode` does.
    """

    _model: Any = PrivateAttr()
    _batch_size: int = PrivateAttr()
    _query_prefix: str = PrivateAttr(default="")
    _passage_prefix: str = PrivateAttr(default="")

    @classmethod
    def wrap(
        cls, model, name: str, batch_size: int, query_prefix: str = "", passage_prefix: str = ""
    ) -> SentenceEmbedding:
        """Models such as e5 or bge expect prefixes on questions and passages; set them here."""
        embedder = cls(model_name=name, embed_batch_size=2048)
        embedder._model = model
        embedder._batch_size = batch_size
        embedder._query_prefix = query_prefix
        embedder._passage_prefix = passage_prefix
        return embedder

    @classmethod
    def class_name(cls) -> str:
        return "SentenceEmbedding"

    @property
    def model(self):
        return self._model

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        with one_thread():
            return self._encode([self._query_prefix + query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._encode([self._passage_prefix + text for text in texts])


_threads_lock = threading.Lock()
_threads = {"single": 0, "before": 1}  # questions being encoded on one thread; the count before


@contextmanager
def one_thread():
    """Encode a question on one CPU thread. A question is a few dozen tokens: a second thread
    saves a millisecond on an idle machine, and on a busy one its threads wait for each other
    (measured on 2 busy cores: 13 ms with one thread, 290-360 ms with two; bench/scale.py).
    Passages, encoded in batches, keep every thread."""
    import torch

    with _threads_lock:
        if _threads["single"] == 0:
            _threads["before"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads["single"] += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads["single"] -= 1
            if _threads["single"] == 0:
                torch.set_num_threads(_threads["before"])
