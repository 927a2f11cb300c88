"""build_engine(settings) -> Engine: the one place that wires store, models, retrieval and answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from rag import store
from rag.answer import (
    REFUSAL_TEXT,
    Answer,
    SourceRef,
    build_messages,
    cited_numbers,
    fit_sources,
    is_refusal,
)
from rag.errors import UserError
from rag.models import ChatModel, load_embedder, load_llm, load_reranker
from rag.retrieve import Retrieval, Retriever
from rag.settings import Settings

# Tokens kept free for the chat template's role markers around the messages.
TEMPLATE_RESERVE = 64


class EmptyCollectionError(UserError):
    """The collection holds no documents yet."""


class QuestionTooLongError(UserError):
    """The question leaves no room for a passage in the model's context window."""


class AnswerStream:
    """Iterate to receive the answer's text as it is generated; `answer` is set when it ends."""

    def __init__(self, tokens: Iterator[str]) -> None:
        self._tokens = tokens
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        return self._tokens


class Engine:
    """Answers questions from one store; models load on first use and are shared by all callers."""

    def __init__(self, settings: Settings, embedder=None, llm: ChatModel | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._llm = llm
        self._reranker = None
        self._load_lock = threading.Lock()

    @property
    def embedder(self):
        with self._load_lock:
            if self._embedder is None:
                self._embedder = load_embedder(self.settings)
            return self._embedder

    @property
    def llm(self) -> ChatModel:
        with self._load_lock:
            if self._llm is None:
                self._llm = load_llm(self.settings)
            return self._llm

    def stats(self, collection: str | None = None) -> dict:
        """How many documents and chunks a collection holds."""
        name = collection or self.settings.collection
        coll = store.get_collection(self.settings, name, create=False)
        files = store.distinct_values(coll, "file") if coll is not None else set()
        return {"collection": name, "files": len(files), "chunks": store.count_chunks(coll)}

    def collections(self) -> list[str]:
        return store.collection_names(self.settings)

    def retrieve(
        self,
        question: str,
        collection: str | None = None,
        top_k: int | None = None,
        where: str | None = None,
    ) -> Retrieval:
        """The best passages for a question, and whether the evidence is too weak to answer."""
        name = collection or self.settings.collection
        coll = store.get_collection(self.settings, name, create=False)
        if store.count_chunks(coll) == 0:
            raise EmptyCollectionError(
                f"collection '{name}' is empty; add documents first with `ingest PATH` "
                f"(e.g. `ingest sample_docs{'' if name == 'default' else ' --collection ' + name}`)"
            )
        retriever = Retriever(self.settings, name, coll, self.embedder, self.reranker)
        return retriever.retrieve(question, top_k or self.settings.top_k, where)

    @property
    def reranker(self):
        with self._load_lock:
            if self._reranker is None and self.settings.rerank_model:
                self._reranker = load_reranker(self.settings)
            return self._reranker

    def stream(
        self,
        question: str,
        collection: str | None = None,
        top_k: int | None = None,
        where: str | None = None,
    ) -> AnswerStream:
        """Retrieve now; generate lazily as the returned stream is iterated."""
        if not question.strip():
            raise ValueError("the question is empty; type a question")
        started = time.perf_counter()
        retrieval = self.retrieve(question, collection, top_k, where)
        retrieved = time.perf_counter()
        used = self._fit(question, retrieval)
        result = AnswerStream(iter(()))
        result._tokens = self._generate(question, retrieval, used, started, retrieved, result)
        return result

    def _fit(self, question: str, retrieval: Retrieval) -> list[SourceRef]:
        """The passages that fit the model's context with the question; none when refused."""
        if retrieval.refused or not retrieval.sources:  # weak evidence: no model needed
            return []
        llm = self.llm
        budget = llm.n_ctx - self.settings.max_answer_tokens - TEMPLATE_RESERVE
        used = fit_sources(question, retrieval.sources, llm.count_tokens, budget)
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

    def chat(
        self,
        history: list[str],
        question: str,
        collection: str | None = None,
        top_k: int | None = None,
        where: str | None = None,
    ) -> AnswerStream:
        """Answer a follow-up: earlier questions of the conversation help find the passages."""
        query = standalone_query(history, question)
        if query == question:
            return self.stream(question, collection, top_k, where)
        if not question.strip():
            raise ValueError("the question is empty; type a question")
        started = time.perf_counter()
        retrieval = self.retrieve(query, collection, top_k, where)
        retrieved = time.perf_counter()
        prompt_question = (
            f"{question.strip()}\n(This follows the earlier question: {history[-1].strip()})"
        )
        used = self._fit(prompt_question, retrieval)
        result = AnswerStream(iter(()))
        result._tokens = self._generate(
            prompt_question, retrieval, used, started, retrieved, result
        )
        return result

    def ask(
        self,
        question: str,
        collection: str | None = None,
        top_k: int | None = None,
        where: str | None = None,
    ) -> Answer:
        stream = self.stream(question, collection, top_k, where)
        for _ in stream:
            pass
        assert stream.answer is not None
        return stream.answer

    def _generate(
        self,
        question: str,
        retrieval: Retrieval,
        used: list[SourceRef],
        started: float,
        retrieved: float,
        result: AnswerStream,
    ) -> Iterator[str]:
        sources = retrieval.sources
        pieces: list[str] = []
        first_token: float | None = None
        if used:
            messages = build_messages(question, used)
            for piece in self.llm.stream_chat(
                messages, self.settings.max_answer_tokens, self.settings.temperature
            ):
                if first_token is None:
                    first_token = time.perf_counter()
                pieces.append(piece)
                yield piece
        else:
            pieces.append(REFUSAL_TEXT)
            yield REFUSAL_TEXT
        finished = time.perf_counter()
        text = "".join(pieces).strip()
        timings = {
            "retrieve_s": retrieved - started,
            "generate_s": finished - retrieved,
            "total_s": finished - started,
        }
        if first_token is not None:
            timings["first_token_s"] = first_token - started
        result.answer = Answer(
            text=text,
            sources=sources,
            refused=retrieval.refused or is_refusal(text),
            timings=timings,
            cited=cited_numbers(text, len(used)),
            chunks_used=len(used),
        )


def standalone_query(history: list[str], question: str, turns: int = 1) -> str:
    """The search query for a follow-up: the last question(s) joined with the new one.

    "What is X?" then "And its default value?" searches for both, so X's passage is found. A
    tiny local model rewrites questions unreliably, so no LLM call is spent on condensing.
    """
    earlier = [q.strip() for q in history[-turns:] if q.strip()]
    return " ".join([*earlier, question.strip()]) if earlier else question


def build_engine(settings: Settings, embedder=None, llm: ChatModel | None = None) -> Engine:
    """The single setup function used by the CLI, the UI and the tests."""
    return Engine(settings, embedder=embedder, llm=llm)
