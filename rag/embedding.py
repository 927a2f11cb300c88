"""The embedder every part uses, over a loaded encoder (see rag.models and rag.onnx_model).

It speaks the interface of llama-index's embedding models (get_query_embedding,
get_text_embedding_batch, and called on nodes it sets their embeddings) without subclassing
llama-index's BaseEmbedding: importing llama-index costs 0.7 s, which the question path does not
otherwise need (test fakes are BaseEmbeddings and fit the same places).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Encoder(Protocol):
    """What the embedder needs from a backend (torch or ONNX Runtime)."""

    backend: str

    def encode_passages(self, texts: list[str], batch_size: int) -> np.ndarray: ...

    def encode_question(self, text: str) -> np.ndarray: ...


class SentenceEmbedding:
    """Questions and passages to normalised vectors, with the model's prefixes (e5, bge).

    The encoder sorts a list by length and encodes it in its own batches, as raw
    `SentenceTransformer.encode` does.
    """

    def __init__(
        self,
        model: Encoder,
        name: str,
        batch_size: int,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        self.model = model
        self.model_name = name
        self.batch_size = batch_size
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix

    @property
    def backend(self) -> str:
        return self.model.backend

    def get_query_embedding(self, query: str) -> list[float]:
        return self.model.encode_question(self.query_prefix + query).tolist()

    def get_text_embedding(self, text: str) -> list[float]:
        return self.get_text_embedding_batch([text])[0]

    def get_text_embedding_batch(self, texts: list[str], **_: object) -> list[list[float]]:
        if not texts:
            return []
        texts = [self.passage_prefix + text for text in texts]
        return self.model.encode_passages(texts, self.batch_size).tolist()

    def __call__(self, nodes: list, **_: object) -> list:
        """Embed llama-index nodes as its embedding models do: their text with the metadata
        meant for embedding."""
        from llama_index.core.schema import MetadataMode

        texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        for node, vector in zip(nodes, self.get_text_embedding_batch(texts), strict=True):
            node.embedding = vector
        return nodes
