"""Dense + keyword retrieval, fused with reciprocal rank fusion, with path filters.

The store is queried directly rather than through llama-index's vector retriever because fusion
needs chunk ids, stored embeddings (to score keyword-only hits) and `$in` filters on file paths.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from rag import store
from rag.answer import SourceRef
from rag.answerability import Signals, judge, read_evidence
from rag.errors import UserError
from rag.keyword import KeywordIndex
from rag.manifest import reading
from rag.settings import Settings
from rag.store import Chunk

RRF_K = 60  # the usual constant: rank 1 scores 1/61, rank 10 scores 1/70


TOPIC_REASON = "no passage is about what the question asks"


@dataclass
class Retrieval:
    """Sources best first, and the evidence behind the refusal decision."""

    sources: list[SourceRef]
    best_score: float
    coverage: float
    refused: bool
    reason: str | None = None  # why it was refused, in one line
    # the check that refused: topic, key_terms, default, answer_type, support
    check: str | None = None
    signals: Signals | None = None


class NoMatchingFilesError(UserError):
    """A path filter that matches no stored file: say so, rather than "not in the documents"."""


def parse_where(where: str | None) -> str | None:
    """`path:*.pdf` (or just `*.pdf`) -> the glob; None for no filter."""
    if not where:
        return None
    glob = where.split(":", 1)[1] if where.startswith("path:") else where
    glob = glob.strip()
    if not glob:
        raise UserError("--where needs a pattern, e.g. --where 'path:*.pdf'")
    return glob


def matches(path: str, glob: str) -> bool:
    """A glob matches the whole path, or the file name when it has no slash."""
    return fnmatch.fnmatch(path, glob) or (
        "/" not in glob and fnmatch.fnmatch(path.rsplit("/", 1)[-1], glob)
    )


@dataclass
class PathFilter:
    """A glob on stored paths, resolved through the manifest (SQLite), not by scanning the store:
    the paths that the matching files' chunks cite, those chunks' ids, and for each cited path
    the matching path to show (a copy matched by the glob is shown by its own name)."""

    glob: str
    cited: list[str]
    ids: set[str]
    shown_as: dict[str, str]

    @classmethod
    def build(cls, home: Path, collection: str, where: str | None) -> PathFilter | None:
        glob = parse_where(where)
        if glob is None:
            return None
        matched: list[tuple[str, str]] = []
        with reading(home, collection) as manifest:
            if manifest is not None:
                matched = [(p, key) for p, key in manifest.stored_paths() if matches(p, glob)]
                cited, ids = manifest.contents_of(matched)
                by_key = {key: path for path, key in matched}
                shown_as = {
                    path: by_key[key] for path, key in manifest.cited_keys(cited) if key in by_key
                }
        if not matched:
            raise NoMatchingFilesError(
                f"no stored file of collection '{collection}' matches the filter '{glob}'; "
                "`ingest list` shows the stored paths (a pattern without '/' matches file names)"
            )
        return cls(glob, cited, ids, shown_as)

    def chroma_where(self) -> dict:
        return {"file": {"$in": self.cited}}

    def shown(self, path: str) -> str:
        return path if matches(path, self.glob) else self.shown_as.get(path, path)


class Retriever:
    """Finds the passages that best answer a question in one collection: one nearest-neighbour
    query, and one read of the chunks found only by keywords."""

    def __init__(
        self, settings: Settings, name: str, collection, embedder, reranker, index: KeywordIndex
    ) -> None:
        self.settings = settings
        self.name = name
        self.collection = collection
        self.embedder = embedder
        self.reranker = reranker
        self.index = index

    def retrieve(
        self,
        question: str,
        top_k: int,
        path_filter: PathFilter | None = None,
        *,
        assess: bool = True,
    ) -> Retrieval:
        mode = self.settings.retrieval_mode
        pool = max(self.settings.candidates, top_k)
        where = path_filter.chroma_where() if path_filter else None
        allowed = path_filter.ids if path_filter else None
        query_vector = self.embedder.get_query_embedding(question)
        dense = (
            [] if mode == "keyword" else store.nearest(self.collection, query_vector, pool, where)
        )
        sparse = [] if mode == "dense" else self.index.search(question, pool, allowed)
        fused = fuse([[chunk.id for chunk in dense], [chunk_id for chunk_id, _ in sparse]])
        found = {chunk.id: chunk for chunk in dense}
        missing = [chunk_id for chunk_id in fused if chunk_id not in found]
        for chunk_id, chunk in store.chunks_by_id(self.collection, missing).items():
            chunk.score = dot(query_vector, chunk.embedding or [])
            found[chunk_id] = chunk
        candidates = [to_source(found[chunk_id]) for chunk_id in fused if chunk_id in found]
        if path_filter is not None:
            for source in candidates:
                source.file = path_filter.shown(source.file)
        if self.reranker is not None:
            candidates = self.reranker.rerank(question, candidates[: max(top_k * 4, 20)])
        sources = diversify(candidates, top_k, self.settings.max_chunks_per_file)
        best = max((s.score for s in sources), default=0.0)
        passages = [f"{s.title} {s.heading} {s.text}" for s in sources]
        coverage = self.index.coverage(question, passages)
        if off_topic(best, coverage, self.settings):
            return Retrieval(sources, best, coverage, True, TOPIC_REASON, "topic")
        if not assess:
            return Retrieval(sources, best, coverage, False)
        signals = read_evidence(
            question, sources, query_vector, self.embedder.get_text_embedding_batch, self.index.idf
        )
        verdict = judge(signals, self.settings)
        return Retrieval(
            sources, best, coverage, verdict.refused, verdict.reason, verdict.signal, signals
        )


def off_topic(best: float, coverage: float, settings: Settings) -> bool:
    """Too little evidence to answer: passages neither close in meaning nor sharing the
    question's distinctive words (thresholds calibrated with `rag eval`, docs/quality.md)."""
    s = settings
    return best < s.refuse_below or (
        best < s.refuse_unless_similar and coverage < s.refuse_min_coverage
    )


def fuse(rankings: list[list[str]]) -> list[str]:
    """Reciprocal rank fusion: ids ordered by the sum of 1 / (RRF_K + rank) over the rankings."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores, key=lambda chunk_id: -scores[chunk_id])


def diversify(sources: list[SourceRef], top_k: int, per_file: int) -> list[SourceRef]:
    """The best `top_k`, at most `per_file` from one file while others are left: one long
    document must not push every other file out of the answer (0 = no limit)."""
    if per_file <= 0:
        return sources[:top_k]
    chosen: list[SourceRef] = []
    held_back: list[SourceRef] = []
    counts: dict[str, int] = {}
    for source in sources:
        if len(chosen) >= top_k:
            break
        if counts.get(source.file, 0) < per_file:
            chosen.append(source)
            counts[source.file] = counts.get(source.file, 0) + 1
        else:
            held_back.append(source)
    return (chosen + held_back)[:top_k]


def dot(a, b) -> float:
    return float(sum(x * y for x, y in zip(a, b, strict=True)))


def to_source(chunk: Chunk) -> SourceRef:
    meta = chunk.meta
    page = meta.get("page")
    return SourceRef(
        file=str(meta.get("file", "")),
        page=int(page) if page not in (None, "") else None,
        score=float(chunk.score),
        text=chunk.text,
        title=str(meta.get("title", "")),
        heading=str(meta.get("heading", "")),
        chunk_id=chunk.id,
    )
