"""BM25 keyword index (bm25s) beside the dense index: exact terms, numbers, identifiers, any language.

One index per collection, saved under RAG_HOME/keyword/<collection>/. `ingest` rebuilds it after
every run that changed the collection (bm25s indexes are immutable; rebuilding 10,000 chunks takes
about a second); a query rebuilds it first if its chunk count no longer matches the store's.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import threading
from pathlib import Path

from rag import store
from rag.settings import Settings

# Words, numbers and identifiers; "e-214", "unixepoch()", "/var/log/" keep their joined form
# and also give their parts.
TOKEN_RE = re.compile(r"\w+(?:[-_./:]\w+)*", re.UNICODE)

_cache: dict[str, tuple[float, KeywordIndex]] = {}
_lock = threading.Lock()


def tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    for match in TOKEN_RE.finditer(text.lower()):
        token = match.group()
        tokens.append(token)
        if len(token) > 1 and re.search(r"[-_./:]", token):
            tokens.extend(part for part in re.split(r"[-_./:]+", token) if part)
    return tokens


class KeywordIndex:
    """Chunk ids, their BM25 index, and document frequencies for evidence checks."""

    def __init__(self, ids: list[str], retriever, doc_freq: dict[str, int] | None = None) -> None:
        self.ids = ids
        self.retriever = retriever
        self.doc_freq = doc_freq or {}

    def idf(self, token: str) -> float:
        n = max(len(self.ids), 1)
        return math.log(
            1 + (n - self.doc_freq.get(token, 0) + 0.5) / (self.doc_freq.get(token, 0) + 0.5)
        )

    def coverage(self, question: str, passages: list[str]) -> float:
        """Share of the question's information (IDF-weighted words) found in the best passage.

        A question about something the documents never mention keeps words no passage has.
        """
        words = {t for t in tokenize(question) if not re.search(r"[-_./:]", t)}
        words = words or set(tokenize(question))
        total = sum(self.idf(w) for w in words)
        if not total:
            return 0.0
        best = 0.0
        for passage in passages:
            present = set(tokenize(passage))
            best = max(best, sum(self.idf(w) for w in words if w in present) / total)
        return best

    def search(
        self, query: str, limit: int, allowed: set[str] | None = None
    ) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) best first, only ids in `allowed` when given."""
        tokens = tokenize(query)
        if not self.ids or not tokens:
            return []
        scores = self.retriever.get_scores(tokens)
        order = scores.argsort()[::-1]
        hits = []
        for index in order:
            score = float(scores[index])
            if score <= 0:
                break
            chunk_id = self.ids[int(index)]
            if allowed is None or chunk_id in allowed:
                hits.append((chunk_id, score))
                if len(hits) >= limit:
                    break
        return hits


def index_dir(settings: Settings, name: str) -> Path:
    return settings.home / "keyword" / name


def build(settings: Settings, name: str, collection=None) -> KeywordIndex:
    """Index every chunk of a collection (its embedded text) and save the index."""
    import bm25s

    collection = collection if collection is not None else store.get_collection(settings, name)
    ids, texts = store.all_texts(collection, with_headings=settings.embed_headings)
    retriever = bm25s.BM25()
    tokenized = [tokenize(t) for t in texts]
    doc_freq: dict[str, int] = {}
    for tokens in tokenized:
        for token in set(tokens):
            doc_freq[token] = doc_freq.get(token, 0) + 1
    if ids:
        retriever.index(tokenized, show_progress=False)
    folder = index_dir(settings, name)
    staging = folder.with_name(folder.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if ids:
        retriever.save(str(staging / "bm25"))
    (staging / "doc_freq.json").write_text(json.dumps(doc_freq))
    (staging / "ids.json").write_text(json.dumps(ids))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    index = KeywordIndex(ids, retriever, doc_freq)
    with _lock:
        _cache[str(folder)] = ((folder / "ids.json").stat().st_mtime, index)
    return index


def load(settings: Settings, name: str, collection) -> KeywordIndex:
    """The saved index, rebuilt when missing or out of step with the store."""
    import bm25s

    folder = index_dir(settings, name)
    ids_file = folder / "ids.json"
    count = store.count_chunks(collection)
    with _lock:
        cached = _cache.get(str(folder))
    if ids_file.exists():
        mtime = ids_file.stat().st_mtime
        if cached and cached[0] == mtime and len(cached[1].ids) == count:
            return cached[1]
        ids = json.loads(ids_file.read_text())
        if len(ids) == count:
            retriever = bm25s.BM25.load(str(folder / "bm25")) if ids else bm25s.BM25()
            freq_file = folder / "doc_freq.json"
            doc_freq = json.loads(freq_file.read_text()) if freq_file.exists() else None
            if doc_freq is None:
                return build(settings, name, collection)
            index = KeywordIndex(ids, retriever, doc_freq)
            with _lock:
                _cache[str(folder)] = (mtime, index)
            return index
    return build(settings, name, collection)
