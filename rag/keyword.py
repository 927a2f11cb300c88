"""BM25 keyword index (tantivy) beside the dense index: exact terms, numbers, identifiers, any language.

One index per collection under RAG_HOME/keyword/<collection>/<generation>/, with a CURRENT
pointer. It follows the store incrementally: every chunk the manifest starts or stops using is
written to the manifest's keyword log in the same transaction (rag.manifest), and the writer
applies the log at the end of its run (`update`): deleted chunks become tombstones, added ones a
new segment, and tantivy merges segments in the background, as search engines do. Nothing reads
every chunk except a full build: a new collection, an index in an older format, or one found
missing, damaged or out of step with the store (after a crash or a restored backup), written as
a new generation and switched to in one atomic rename. Readers only read it.
"""

from __future__ import annotations

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
# A "word" longer than this (a base64 blob, a hash run together) is no search term.
MAX_TOKEN_CHARS = 120
# Chunks written or fetched per step of a build or an update.
STEP = 2000
# Above this many allowed chunk ids a path filter is applied to ranked hits instead of inside
# the query (a term set of a few ids is fast; one of most of the library is not worth building).
FILTER_IN_QUERY = 50_000
ID, TEXT = "id", "text"


def tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    for match in TOKEN_RE.finditer(text.lower()):
        token = match.group()
        tokens.append(token)
        if len(token) > 1 and re.search(r"[-_./:]", token):
            tokens.extend(part for part in re.split(r"[-_./:]+", token) if part)
    return tokens


def document(chunk_id: str, text: str, meta: dict, with_headings: bool):
    """A chunk as the index holds it: its id, and its title, heading and passage as the
    space-joined tokens."""
    import tantivy

    head = f"{meta.get('title', '')}\n{meta.get('heading', '')}\n" if with_headings else ""
    tokens = (t for t in tokenize(head + (text or "")) if len(t) <= MAX_TOKEN_CHARS)
    return tantivy.Document(**{ID: chunk_id, TEXT: " ".join(tokens)})


def _schema():
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field(ID, stored=True, tokenizer_name="raw", index_option="basic")
    # Tokens are made by tokenize(); the index only splits them at spaces. No positions: BM25
    # needs term and field frequencies only.
    builder.add_text_field(TEXT, tokenizer_name="whitespace", index_option="freq")
    return builder.build()


class KeywordIndexError(RuntimeError):
    """The saved index is missing, unreadable or damaged (it is derived data: rebuilt)."""


class KeywordIndex:
    """One collection's BM25 index: search, and document frequencies for evidence checks."""

    def __init__(self, index) -> None:
        self.index = index
        self.schema = index.schema

    @property
    def size(self) -> int:
        """Chunks indexed (deleted ones not counted)."""
        return int(self.index.searcher().num_docs)

    def idf(self, token: str, searcher=None) -> float:
        searcher = searcher or self.index.searcher()
        n = max(int(searcher.num_docs), 1)
        df = min(int(searcher.doc_freq(TEXT, token)), n)  # tombstones count until merged
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def coverage(self, question: str, passages: list[str]) -> float:
        """Share of the question's information (IDF-weighted words) found in the best passage.

        A question about something the documents never mention keeps words no passage has.
        """
        words = {t for t in tokenize(question) if not re.search(r"[-_./:]", t)} - FUNCTION_WORDS
        words = words or set(tokenize(question))
        searcher = self.index.searcher()
        weights = {w: self.idf(w, searcher) for w in words}
        total = sum(weights.values())
        if not total:
            return 0.0
        best = 0.0
        for passage in passages:
            present = set(tokenize(passage))
            best = max(best, sum(v for w, v in weights.items() if w in present) / total)
        return best

    def search(
        self, query: str, limit: int, allowed: set[str] | None = None
    ) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) best first, only ids in `allowed` when given."""
        import tantivy

        tokens = [t for t in tokenize(query) if len(t) <= MAX_TOKEN_CHARS]
        if not tokens or limit <= 0 or (allowed is not None and not allowed):
            return []
        Query, Occur = tantivy.Query, tantivy.Occur  # noqa: N806
        terms = Query.boolean_query(
            [(Occur.Should, Query.term_query(self.schema, TEXT, t, "freq")) for t in tokens]
        )
        searcher = self.index.searcher()
        if allowed is not None and len(allowed) <= FILTER_IN_QUERY:
            only = Query.const_score_query(
                Query.term_set_query(self.schema, ID, sorted(allowed)), 0.0
            )
            return self._hits(
                searcher, Query.boolean_query([(Occur.Must, terms), (Occur.Must, only)]), limit
            )
        if allowed is None:
            return self._hits(searcher, terms, limit)
        wanted = limit  # a wide filter: rank, then keep allowed ids, widening until enough
        while True:
            hits = self._hits(searcher, terms, wanted)
            kept = [hit for hit in hits if hit[0] in allowed]
            if len(kept) >= limit or len(hits) < wanted:
                return kept[:limit]
            wanted *= 4

    @staticmethod
    def _hits(searcher, query, limit: int) -> list[tuple[str, float]]:
        found = searcher.search(query, limit, count=False).hits
        return [(searcher.doc(address)[ID][0], float(score)) for score, address in found]

    def ids(self) -> list[str]:
        """The chunk id of every indexed document (maintenance: `ingest check`, tests)."""
        import tantivy

        searcher = self.index.searcher()
        total = int(searcher.num_docs)
        if not total:
            return []
        found = searcher.search(tantivy.Query.all_query(), total, count=False).hits
        return [searcher.doc(address)[ID][0] for _, address in found]


class KeywordIndexes:
    """The saved keyword indexes of one RAG_HOME, and those already opened (an App holds one)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._read: dict[str, tuple[str, KeywordIndex]] = {}  # collection -> (generation, index)
        self._lock = threading.Lock()

    def folder(self, name: str) -> Path:
        return self.settings.home / "keyword" / name

    # --- readers -------------------------------------------------------------------------

    def read(self, name: str) -> KeywordIndex:
        """The saved index at its last commit; KeywordIndexError naming the folder when it is
        missing, damaged or in an older format."""
        folder = self.folder(name)
        try:
            generation = (folder / "CURRENT").read_text().strip()
        except FileNotFoundError as exc:
            raise KeywordIndexError(f"no keyword index at {folder}") from exc
        with self._lock:
            known = self._read.get(name)
        if known and known[0] == generation:
            known[1].index.reload()  # a writer may have committed since
            return known[1]
        target = folder / generation
        if not (target / "meta.json").is_file():
            raise KeywordIndexError(
                f"the keyword index at {target} is missing or in an older format"
            )
        index = KeywordIndex(open_index(target))
        with self._lock:
            self._read[name] = (generation, index)
        return index

    def load(self, name: str, collection) -> KeywordIndex:
        """The index for a question. Readers never wait for or undo a writer: while an ingest
        runs the saved index may lag the store by a few chunks (those are still found by dense
        search). A missing or damaged index is built afresh, saved when no writer is busy and
        kept in memory otherwise."""
        try:
            return self.read(name)
        except KeywordIndexError as problem:
            log.warning("%s; rebuilding it", problem)
        try:
            with writer_lock(self.settings, name, wait=False, purpose="keyword index rebuild"):
                return self.build(name, collection)
        except CollectionBusyError:
            return KeywordIndex(self._fill(None, collection))  # the writer mends it when done

    # --- writers (holding the collection's lock) -----------------------------------------

    def update(self, name: str, collection, manifest) -> str:
        """Bring the index in step with the store: apply the manifest's keyword log
        ("updated"), or nothing to do ("kept"); a missing, damaged or out-of-step index is
        built afresh from the store ("rebuilt"; "built" for a collection's first index)."""
        if not (self.folder(name) / "CURRENT").exists():
            self.rebuild(name, collection, manifest)
            return "built"
        try:
            index = self.read(name)
            changed = self._apply(name, index, collection, manifest)
            stored = store.count_chunks(collection)
            if index.size == stored:
                return "updated" if changed else "kept"
            log.warning(
                "the keyword index at %s holds %d chunks, the store %d; rebuilding it",
                self.folder(name),
                index.size,
                stored,
            )
        except KeywordIndexError as problem:
            log.warning("%s; rebuilding it", problem)
        self.rebuild(name, collection, manifest)
        return "rebuilt"

    def rebuild(self, name: str, collection, manifest=None) -> KeywordIndex:
        """Index every chunk afresh (`ingest check --repair`, or an index that cannot be
        trusted); the manifest's keyword log is then cleared: the build holds it all."""
        last = manifest.keyword_log_end() if manifest is not None else None
        index = self.build(name, collection)
        if manifest is not None:
            manifest.keyword_done(last)
        return index

    def build(self, name: str, collection) -> KeywordIndex:
        """Index every chunk of a collection as a new generation, then switch CURRENT to it in
        one atomic rename, so a reader sees the old index or the new one, never half of each."""
        folder = self.folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        generation = f"g{time.time_ns()}-{os.getpid()}"
        target = folder / generation
        target.mkdir()
        index = KeywordIndex(self._fill(target, collection))
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
        return index

    def _fill(self, target: Path | None, collection):
        """A tantivy index (on disk at `target`, or in memory) holding every chunk."""
        import tantivy

        index = tantivy.Index(_schema(), path=None if target is None else str(target))
        writer = index.writer(heap_size=BUILD_HEAP, num_threads=1)
        with_headings = self.settings.embed_headings
        for page in store.pages(collection, ("documents", "metadatas")):
            for chunk_id, text, meta in zip(page.ids, page.texts, page.metas, strict=True):
                writer.add_document(document(chunk_id, text, meta, with_headings))
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        return index

    def _apply(self, name: str, index: KeywordIndex, collection, manifest) -> bool:
        """Apply the manifest's keyword log to the index; True when it held anything."""
        end = manifest.keyword_log_end()
        if end is None:
            return False
        writer = index.index.writer(heap_size=UPDATE_HEAP, num_threads=1)
        try:
            with_headings = self.settings.embed_headings
            for batch in manifest.keyword_log(end, STEP):
                last = dict(batch)  # chunk id -> its last operation in this step
                for chunk_id in last:  # an added chunk replaces any older copy of itself
                    writer.delete_documents_by_term(ID, chunk_id)
                added = [chunk_id for chunk_id, op in last.items() if op == "add"]
                for chunk in store.chunks_by_id(collection, added, embeddings=False).values():
                    writer.add_document(document(chunk.id, chunk.text, chunk.meta, with_headings))
            writer.commit()
        except Exception as exc:
            writer.rollback()
            if isinstance(exc, store.StoreError):
                raise
            detail = " ".join(str(exc).split())[:200]
            raise KeywordIndexError(
                f"the keyword index at {self.folder(name)} could not be updated ({detail})"
            ) from exc
        finally:
            writer.wait_merging_threads()
        index.index.reload()
        manifest.keyword_done(end)
        return True


# Indexing memory: a full build and an update (tantivy flushes a segment when it fills).
BUILD_HEAP = 64_000_000
UPDATE_HEAP = 32_000_000


def open_index(target: Path):
    """Open a saved index and read it once, so damage shows here (KeywordIndexError)."""
    import tantivy

    try:
        index = tantivy.Index.open(str(target))
        searcher = index.searcher()
        searcher.search(tantivy.Query.all_query(), 1, count=True)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        raise KeywordIndexError(
            f"the keyword index at {target} is damaged ({type(exc).__name__}: {detail})"
        ) from exc
    return index
