"""Dense retrieval over a Chroma collection through llama-index, returning SourceRefs best first."""

from __future__ import annotations

import math

from llama_index.core import VectorStoreIndex
from llama_index.core.schema import MetadataMode, NodeWithScore

from rag import store
from rag.answer import SourceRef


class Retriever:
    """Finds the chunks closest to a question in one collection."""

    def __init__(self, collection, embedder) -> None:
        self.collection = collection
        self.index = VectorStoreIndex.from_vector_store(
            store.vector_store(collection), embed_model=embedder
        )

    def retrieve(self, question: str, top_k: int) -> list[SourceRef]:
        retriever = self.index.as_retriever(similarity_top_k=top_k)
        hits = retriever.retrieve(question)
        return [to_source(hit) for hit in hits]


def cosine_from_score(score: float | None) -> float:
    """llama-index's Chroma store reports exp(-cosine distance); turn it back into cosine similarity."""
    if not score or score <= 0:
        return 0.0
    return 1.0 + math.log(score)


def to_source(hit: NodeWithScore) -> SourceRef:
    meta = hit.node.metadata
    page = meta.get("page")
    return SourceRef(
        file=str(meta.get("file", "")),
        page=int(page) if page not in (None, "") else None,
        score=cosine_from_score(hit.score),
        text=hit.node.get_content(metadata_mode=MetadataMode.NONE),
        title=str(meta.get("title", "")),
        heading=str(meta.get("heading", "")),
        chunk_id=hit.node.node_id,
    )
