"""BM25 keyword index (bm25s) beside the dense index: exact terms, numbers, identifiers, any language.

One index per collection, saved under RAG_HOME/keyword/<collection>/<generation>/ with a CURRENT
pointer. Writers (`ingest`, under the collection's lock) rebuild it after every run that changed the
collection, or whose saved index is missing, damaged or out of step with the store (bm25s indexes
are immutable; rebuilding 10,000 chunks takes about a second). Readers only read it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import threading
import time
from pathlib import Path

from rag import store
from rag.locks import CollectionBusyError, writer_lock
from rag.settings import Settings

log = logging.getLogger(__name__)

# Words, numbers and identifiers; "e-214", "unixepoch()", "/var/log/" keep their joined form
# and also give their parts.
TOKEN_RE = re.compile(r"\w+(?:[-_./:]\w+)*", re.UNICODE)
# Question and function words (English, Indonesian): they carry no fact to look for, and in a
# small library their rarity in the documents would give them a high IDF.
FUNCTION_WORDS = frozenset(
    """a an the of is are was were be been being do does did done can could should shall will would
    may might must has have had i me my you your we our us they them their it its he she his her
    this that these those what which how when where who whom whose why there here with without from
    into onto for to in on at by as and or but not no nor if then than so such very just only also
    about over under before after again any all some each much many more most other same own up out
    off too yes get got i'm don't doesn't can't isn't
    yang ini itu saya aku anda kamu kita kami mereka dia ia apa apakah bagaimana berapa kapan mana
    siapa mengapa kenapa di ke dari untuk agar supaya bisa dapat dan atau serta dengan pada dalam
    oleh akan sudah telah belum tidak bukan jika kalau adalah ialah harus perlu cara saat ada juga
    lagi sebuah seorang para""".split()
)


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
        words = {t for t in tokenize(question) if not re.search(r"[-_./:]", t)} - FUNCTION_WORDS
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


class KeywordIndexError(RuntimeError):
    """The saved index is missing, unreadable or damaged (it is derived data: rebuilt)."""


def build_index(collection, with_headings: bool) -> KeywordIndex:
    """Index every chunk of a collection (its embedded text), in memory."""
    import bm25s

    ids, texts = store.all_texts(collection, with_headings=with_headings)
    retriever = bm25s.BM25()
    tokenized = [tokenize(t) for t in texts]
    doc_freq: dict[str, int] = {}
    for tokens in tokenized:
        for token in set(tokens):
            doc_freq[token] = doc_freq.get(token, 0) + 1
    if ids:
        retriever.index(tokenized, show_progress=False)
    return KeywordIndex(ids, retriever, doc_freq)


class KeywordIndexes:
    """The saved keyword indexes of one RAG_HOME, and those already read (an App holds one)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._read: dict[str, tuple[str, KeywordIndex]] = {}  # collection -> (generation, index)
        self._lock = threading.Lock()

    def folder(self, name: str) -> Path:
        return self.settings.home / "keyword" / name

    def build(self, name: str, collection) -> KeywordIndex:
        """Index every chunk of a collection and save the index (writers only)."""
        index = build_index(collection, self.settings.embed_headings)
        self.save(name, index)
        return index

    def save(self, name: str, index: KeywordIndex) -> None:
        """Write the index as a new generation, then switch CURRENT to it in one atomic rename,
        so a reader sees the old index or the new one, never half of each. Writers only."""
        folder = self.folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        generation = f"g{time.time_ns()}-{os.getpid()}"
        target = folder / generation
        target.mkdir()
        if index.ids:
            index.retriever.save(str(target / "bm25"))
        (target / "doc_freq.json").write_text(json.dumps(index.doc_freq))
        (target / "ids.json").write_text(json.dumps(index.ids))
        pointer = folder / f"CURRENT.{generation}"
        pointer.write_text(generation)
        os.replace(pointer, folder / "CURRENT")
        for old in folder.iterdir():  # an earlier generation, or the files of an older layout
            if old.name not in ("CURRENT", generation):
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink(missing_ok=True)
        with self._lock:
            self._read[name] = (generation, index)

    def read(self, name: str) -> KeywordIndex:
        """The saved index; KeywordIndexError naming the folder when it is missing or damaged."""
        import bm25s

        folder = self.folder(name)
        try:
            generation = (folder / "CURRENT").read_text().strip()
        except FileNotFoundError as exc:
            raise KeywordIndexError(f"no keyword index at {folder}") from exc
        with self._lock:
            known = self._read.get(name)
        if known and known[0] == generation:
            return known[1]
        target = folder / generation
        try:
            ids = json.loads((target / "ids.json").read_text())
            doc_freq = json.loads((target / "doc_freq.json").read_text())
            if not isinstance(ids, list) or not isinstance(doc_freq, dict):
                raise KeywordIndexError("unexpected content")
            retriever = bm25s.BM25.load(str(target / "bm25")) if ids else bm25s.BM25()
            if ids and int(retriever.scores["num_docs"]) != len(ids):
                raise KeywordIndexError(
                    f"{retriever.scores['num_docs']} documents for {len(ids)} ids"
                )
        except Exception as exc:
            detail = " ".join(str(exc).split())[:200]
            raise KeywordIndexError(
                f"the keyword index at {target} is damaged ({type(exc).__name__}: {detail})"
            ) from exc
        index = KeywordIndex(ids, retriever, doc_freq)
        with self._lock:
            self._read[name] = (generation, index)
        return index

    def refresh(self, name: str, collection, force: bool = False) -> bool:
        """Rebuild and save the index when something changed, or when the saved one is missing,
        damaged or out of step with the store (a killed run). Writers only. True when rebuilt."""
        if not force:
            try:
                index = self.read(name)
                if len(index.ids) == store.count_chunks(collection):
                    return False
            except KeywordIndexError as problem:
                log.warning("%s; rebuilding it", problem)
        self.build(name, collection)
        return True

    def load(self, name: str, collection) -> KeywordIndex:
        """The index for a question. Readers never wait for or undo a writer: while an ingest
        runs the saved index may lag the store by a few chunks (those are still found by dense
        search). A missing or damaged index is rebuilt in memory, and saved when no writer is
        busy."""
        try:
            return self.read(name)
        except KeywordIndexError as problem:
            log.warning("%s; rebuilding it", problem)
        index = build_index(collection, self.settings.embed_headings)
        try:
            with writer_lock(self.settings, name, wait=False, purpose="keyword index rebuild"):
                self.save(name, index)
        except CollectionBusyError:
            pass  # the writer refreshes it when it finishes
        return index
