"""The engine: questions in, answers with sources out. Built by rag.app.build_app, never alone."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from pydantic import ValidationError

from rag import answer as answers
from rag import followup, store
from rag.answer import Answer, SourceRef
from rag.errors import UserError
from rag.keyword import KeywordIndexes
from rag.locks import CollectionBusyError, writer_lock
from rag.manifest import (
    SCHEMA_VERSION,
    FileRecord,
    Manifest,
    UnknownCollectionError,
    reading,
    upgrade_schema,
)
from rag.models import Models
from rag.retrieve import PathFilter, Retrieval, Retriever
from rag.settings import Settings, SettingsError, describe_validation_error
from rag.store import Store

log = logging.getLogger(__name__)

# Tokens kept free for the chat template's role markers around the messages.
TEMPLATE_RESERVE = 64


class EmptyCollectionError(UserError):
    """The collection holds no documents yet."""


class QuestionTooLongError(UserError):
    """The question leaves no room for a passage in the model's context window."""


class EmptyQuestionError(UserError):
    """Nothing was asked."""


class AskOptions(TypedDict, total=False):
    """How to answer: `history` (the conversation's earlier questions, oldest first),
    `collection`, `top_k` (passages) and `where` (a glob on stored paths)."""

    history: Sequence[str]
    collection: str | None
    top_k: int | None
    where: str | None
    tuning: Mapping[str, Any]  # per-question values of TUNABLE settings (the page's Settings)


# Settings a question may change without reloading a model (the page's Settings page).
TUNABLE = frozenset(
    {"retrieval_mode", "max_chunks_per_file", "max_answer_tokens", "temperature", "candidates"}
)


@dataclass
class Prepared:
    """A question made ready for the model: what was searched, what was found, the prompt."""

    settings: Settings  # with the question's tuning applied
    question: str
    query: str
    follows_up: bool
    retrieval: Retrieval
    used: list[SourceRef]
    messages: list[dict[str, str]]
    started: float
    retrieved: float


class AnswerStream:
    """An answer being generated. Iterate it for text pieces as the model writes them;
    `text()` waits for the whole text; `answer` (sources, timings, citations) is set once it
    has finished; `close()` (or leaving a `with` block) stops the model at once and frees it
    for the next question. Leaving a loop early keeps the model until close(): the stream can
    be read on. A finished stream does not replay."""

    def __init__(self, prepared: Prepared, models: Models) -> None:
        self.prepared = prepared
        self._models = models
        self._settings = prepared.settings
        self._pieces: list[str] = []
        self._generation: Iterator[str] | None = None
        self._first_token: float | None = None
        self._closed = False
        self.stopped = False  # closed before the model had finished
        self.answer: Answer | None = None

    @property
    def uses_model(self) -> bool:
        """False when the evidence was too weak: the refusal is given without the model."""
        return bool(self.prepared.used)

    @property
    def sources(self) -> list[SourceRef]:
        """The passages found, best first (known before the answer starts)."""
        return self.prepared.retrieval.sources

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> str:
        if self._closed or self.answer is not None:
            raise StopIteration
        if self._generation is None:
            self._generation = self._generate()
        try:
            piece = next(self._generation)
        except StopIteration:
            self._generation = None
            self._finish()
            raise
        if self._first_token is None:
            self._first_token = time.perf_counter()
        self._pieces.append(piece)
        return piece

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def text(self) -> str:
        """The whole answer (generating what is left)."""
        for _ in self:
            pass
        return "".join(self._pieces).strip()

    def close(self) -> None:
        """Stop generating now and release the model (its lock); the answer keeps the text
        written so far. Safe to call more than once, and after the answer has finished."""
        if self._closed:
            return
        self._closed = True
        self.stopped = self.answer is None
        generation, self._generation = self._generation, None
        try:
            if generation is not None:
                generation.close()  # runs the model's `finally`: its lock is released here
        except Exception as exc:  # a server connection cut mid-answer: what was written stays
            log.debug("closing the answer stream: %s", exc)
        finally:
            if self.answer is None:
                self._finish()

    def _generate(self) -> Iterator[str]:
        prepared = self.prepared
        if not prepared.used:
            yield answers.REFUSAL_TEXT
            return
        yield from self._models.llm.stream_chat(
            prepared.messages, self._settings.max_answer_tokens, self._settings.temperature
        )

    def _finish(self) -> None:
        prepared = self.prepared
        finished = time.perf_counter()
        text = "".join(self._pieces).strip()
        timings = {
            "retrieve_s": prepared.retrieved - prepared.started,
            "generate_s": finished - prepared.retrieved,
            "total_s": finished - prepared.started,
        }
        if self._first_token is not None:
            timings["first_token_s"] = self._first_token - prepared.started
            timings["prefill_s"] = self._first_token - prepared.retrieved
            streaming = finished - self._first_token
            if prepared.used and len(self._pieces) > 1 and streaming > 0:
                # llama.cpp streams one token per piece: the speed a person sees
                timings["tokens_per_s"] = (len(self._pieces) - 1) / streaming
        retrieval = prepared.retrieval
        reason = retrieval.reason if retrieval.refused else None
        if reason is None and answers.is_refusal(text):
            reason = answers.MODEL_REFUSED if prepared.used else answers.NOTHING_GIVEN
        self.answer = Answer(
            text=text,
            sources=retrieval.sources,
            refused=reason is not None,
            timings=timings,
            cited=answers.cited_numbers(text, len(prepared.used)),
            chunks_used=len(prepared.used),
            refusal_reason=reason,
            **self._token_counts(text),
        )

    def _token_counts(self, text: str) -> dict[str, int]:
        """What the model read and wrote, by its tokenizer (the chat template's few marker
        tokens aside); nothing when the question was refused before the model was called."""
        if not self.prepared.used:
            return {"prompt_tokens": 0, "completion_tokens": 0}
        count = self._models.llm.count_tokens
        return {
            "prompt_tokens": sum(count(m["content"]) for m in self.prepared.messages),
            "completion_tokens": count(text) if text else 0,
        }


class Engine:
    """Answers questions from one store with shared models."""

    def __init__(
        self, settings: Settings, store: Store, keywords: KeywordIndexes, models: Models
    ) -> None:
        self.settings = settings
        self.store = store
        self.keywords = keywords
        self.models = models
        self._current: set[str] = set()  # collections known to be in today's layout

    @property
    def queue_length(self) -> int:
        """Answers ahead of a new question (0 while the model is not loaded)."""
        return self.models.queue_length

    def stats(self, collection: str | None = None) -> dict:
        """How many documents (files stored) and chunks a collection holds, as its manifest
        records them: two small SQLite reads, 11 ms at a million chunks, where Chroma's count()
        takes 53 ms (2.3 s the first time in a process; docs/benchmarks.md). The page shows
        this on every rerun. Without a manifest, the store counts the chunks."""
        name = collection or self.settings.collection
        files = 0
        with reading(self.settings.home, name) as manifest:
            if manifest is not None:
                files = manifest.document_count()
                try:
                    return {"collection": name, "files": files, "chunks": manifest.chunk_count()}
                except sqlite3.OperationalError:  # kept no chunk counts, and no writer came since
                    pass
        coll = self.store.collection(name, create=False)
        return {"collection": name, "files": files, "chunks": store.count_chunks(coll)}

    def embed_backend(self, collection: str | None = None) -> str | None:
        """The embedding backend of a collection's vectors; None while it holds none."""
        coll = self.store.collection(collection or self.settings.collection, create=False)
        return store.embedding_backend(coll) if coll is not None else None

    def document_count(self, collection: str | None = None) -> int:
        name = collection or self.settings.collection
        with reading(self.settings.home, name) as manifest:
            return manifest.document_count() if manifest else 0

    def collections(self) -> list[str]:
        return self.store.names()

    def attribute(self, answer: Answer) -> Answer:
        """The answer with [n] added where the model cited nothing but its sentences match a
        passage it was given (see rag.evidence.attribute); other answers unchanged."""
        from rag.evidence import attribute

        return attribute(self.models.embedder, answer)

    def evidence(self, answer: Answer, question: str) -> dict[int, list[tuple[int, int]]]:
        """For each source number, the span(s) of its text that best support the answer (or
        the question, for a refusal or an uncited source), chosen with the loaded embedder."""
        from rag.evidence import highlight

        return highlight(self.models.embedder, answer, question)

    def library(self, collection: str | None = None) -> list[FileRecord]:
        """Every file the collection knows (stored, skipped, failed), from the manifest."""
        name = collection or self.settings.collection
        with reading(self.settings.home, name) as manifest:
            return manifest.records() if manifest else []

    def chunks_of(self, path: str, collection: str | None = None) -> list[store.Chunk]:
        """The stored chunks of one file, in document order (one read by id)."""
        name = collection or self.settings.collection
        with reading(self.settings.home, name) as manifest:
            record = manifest.get(path) if manifest else None
            found = manifest.content(record.content_key) if record and record.content_key else None
        coll = self.store.collection(name, create=False)
        if found is None or coll is None:
            return []
        chunks = store.chunks_by_id(coll, found[0], embeddings=False)
        return [chunks[i] for i in found[0] if i in chunks]

    def section(
        self, source: SourceRef, collection: str | None = None, around: int = 1
    ) -> list[str]:
        """A passage with its neighbours in the document (the chunks just before and after)."""
        key, _, number = source.chunk_id.rpartition("-")
        if not key or not number.isdigit():
            return [source.text]
        index = int(number)
        ids = [f"{key}-{i:05d}" for i in range(max(0, index - around), index + around + 1)]
        coll = self.store.collection(collection or self.settings.collection, create=False)
        found = store.chunks_by_id(coll, ids, embeddings=False) if coll is not None else {}
        return [found[i].text if i != source.chunk_id else source.text for i in ids if i in found]

    def tuned(self, tuning: Mapping[str, Any] | None = None) -> Settings:
        """The settings with per-question values applied (validated like the settings)."""
        if not tuning:
            return self.settings
        unknown = set(tuning) - TUNABLE
        if unknown:
            raise UserError(f"cannot change {', '.join(sorted(unknown))} per question")
        try:
            return Settings.model_validate({**self.settings.model_dump(), **tuning})
        except ValidationError as exc:
            raise SettingsError(describe_validation_error(exc)) from exc

    def retrieve(
        self,
        question: str,
        collection: str | None = None,
        top_k: int | None = None,
        where: str | None = None,
        *,
        settings: Settings | None = None,
        assess: bool = True,
    ) -> Retrieval:
        """The best passages for a question, and whether the evidence is too weak to answer
        (`assess=False`: ranking only, without reading the passages' sentences)."""
        settings = settings or self.settings
        name = collection or self.settings.collection
        top_k = self._top_k(top_k)
        coll = self.store.collection(name, create=False)
        if coll is None:
            if name == self.settings.collection:
                raise self._empty(name)  # nothing ingested yet: say how to start
            raise UnknownCollectionError(name, self.store.names())
        self._ensure_current(name, coll)
        store.check_backend(coll, name, self.models.embed_backend)
        path_filter = PathFilter.build(self.settings.home, name, where)
        retriever = Retriever(
            settings,
            name,
            coll,
            self.models.embedder,
            self.models.reranker,
            self.keywords.load(name, coll),
        )
        retrieval = retriever.retrieve(question, top_k, path_filter, assess=assess)
        if not retrieval.sources and store.count_chunks(coll) == 0:
            raise self._empty(name)
        return retrieval

    def prepare(self, question: str, **options: Unpack[AskOptions]) -> Prepared:
        """Search for a question (with the conversation when it follows up on it) and build the
        prompt for the model; no text is generated yet."""
        if not question.strip():
            raise EmptyQuestionError("the question is empty; type a question")
        history = [q for q in options.get("history", ()) if q.strip()]
        collection, top_k = options.get("collection"), options.get("top_k")
        where = options.get("where")
        settings = self.tuned(options.get("tuning"))
        started = time.perf_counter()
        found = followup.search_query(
            question,
            history,
            lambda query: self.retrieve(query, collection, top_k, where, settings=settings),
        )
        retrieved = time.perf_counter()
        prompt_question = question.strip()
        if found.follows_up:
            prompt_question += f"\n(This follows the earlier question: {history[-1].strip()})"
        used = self._fit(prompt_question, found.retrieval, settings)
        messages = answers.build_messages(prompt_question, used) if used else []
        return Prepared(
            settings,
            prompt_question,
            found.query,
            found.follows_up,
            found.retrieval,
            used,
            messages,
            started,
            retrieved,
        )

    def stream(self, question: str, **options: Unpack[AskOptions]) -> AnswerStream:
        """Search now; the answer is generated as the returned stream is read (AskOptions)."""
        return AnswerStream(self.prepare(question, **options), self.models)

    def ask(self, question: str, **options: Unpack[AskOptions]) -> Answer:
        """A whole answer at once."""
        with self.stream(question, **options) as answer_stream:
            answer_stream.text()
        assert answer_stream.answer is not None
        return answer_stream.answer

    def _fit(self, question: str, retrieval: Retrieval, settings: Settings) -> list[SourceRef]:
        """The passages that fit the model's context with the question; none when refused."""
        if retrieval.refused or not retrieval.sources:  # weak evidence: no model needed
            return []
        llm = self.models.llm
        budget = llm.n_ctx - settings.max_answer_tokens - TEMPLATE_RESERVE
        sources = retrieval.sources
        if settings.context_trim and retrieval.signals is not None:
            margin = settings.context_trim_margin
            sources = answers.trim_sources(sources, retrieval.signals.sentences, margin)
        used = answers.fit_sources(question, sources, llm.count_tokens, budget)
        if not used:
            size = llm.count_tokens(question)
            room = f"RAG_N_CTX={llm.n_ctx} leaves {max(budget, 0)} for the question and passages"
            if size * 2 > budget:
                raise QuestionTooLongError(
                    f"the question is too long for the model's context ({size} tokens; {room}); "
                    "shorten the question or raise RAG_N_CTX"
                )
            raise QuestionTooLongError(
                f"the model's context is too small for even one passage ({room}); raise RAG_N_CTX "
                "or lower RAG_MAX_ANSWER_TOKENS or RAG_CHUNK_SIZE"
            )
        return used

    def _ensure_current(self, name: str, collection) -> None:
        """Upgrade a collection stored in an older layout on first use, when no writer is busy
        (a busy writer upgrades it itself; older chunks still read correctly meanwhile)."""
        if name in self._current:
            return
        home = self.settings.home
        with reading(home, name) as reader:
            old = reader is not None and reader.schema_version() < SCHEMA_VERSION
        if old:
            try:
                with writer_lock(self.settings, name, wait=False, purpose="upgrade"):
                    writer = Manifest(home, name)
                    try:
                        upgrade_schema(writer, collection)
                    finally:
                        writer.close()
            except CollectionBusyError:
                return
        self._current.add(name)

    def _top_k(self, top_k: int | None) -> int:
        if top_k is None:
            return self.settings.top_k
        if not 1 <= top_k <= 100:
            raise UserError(f"--top-k must be between 1 and 100 (got {top_k})")
        return top_k

    def _empty(self, name: str) -> EmptyCollectionError:
        hint = "" if name == "default" else f" --collection {name}"
        return EmptyCollectionError(
            f"collection '{name}' is empty; add documents first with `ingest PATH` "
            f"(e.g. `ingest sample_docs{hint}`)"
        )
