"""How the HTTP API hands out answers: admission (a bounded number in progress), a time limit,
model warm-up, server-sent events, and OpenAI's completion and chunk shapes with the sources."""

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from rag.answer import Answer
from rag.app import App
from rag.errors import UserError
from rag.http_metrics import Metrics, observe_first_token


class ApiError(Exception):
    """An error answered as JSON with its HTTP status."""

    def __init__(self, status: int, kind: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


def error_response(
    status: int, kind: str, message: str, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"type": kind, "message": message}}, status_code=status, headers=headers
    )


def sse(events: Iterator[dict], release, done: bool = False) -> StreamingResponse:
    """Server-sent events; `release` gives the answer's place back once the stream ends (or,
    for a response that never starts, once Starlette is done with it)."""

    def lines() -> Iterator[str]:
        try:
            for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
            if done:
                yield "data: [DONE]\n\n"
        finally:
            release()

    return StreamingResponse(
        lines(), media_type="text/event-stream", background=BackgroundTask(release)
    )


class Warmup:
    """Loads the embedding model and the LLM once, in a background thread."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.done = threading.Event()
        self.error: str | None = None
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="rag-warmup", daemon=True).start()

    def _load(self) -> None:
        try:
            self.app.models.embedder  # noqa: B018 - loads the model
            self.app.models.llm  # noqa: B018
        except UserError as exc:
            self.error = str(exc)
        finally:
            self.done.set()


class Admission:
    """At most `limit` answers in the server at once (searching, waiting for the model or
    being written); one more is turned away with 503 and Retry-After. Counted when a request
    is admitted, not when it reaches the model, so a burst cannot slip past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inside = 0
        self._lock = threading.Lock()

    def enter(self):
        with self._lock:
            if self.inside >= self.limit:
                raise ApiError(
                    503,
                    "busy",
                    f"{self.limit} answers are already being prepared; try again shortly",
                    {"Retry-After": "5"},
                )
            self.inside += 1
        done = threading.Event()

        def release() -> None:
            with self._lock:
                if not done.is_set():
                    done.set()
                    self.inside -= 1

        return release


class Deadline:
    """An answer stream that is stopped once `seconds` have passed since the request."""

    def __init__(self, stream, seconds: float) -> None:
        self.stream = stream
        self.ends = time.monotonic() + seconds
        self.seconds = seconds
        self.expired = False

    @property
    def answer(self) -> Answer:
        return self.stream.answer

    def pieces(self) -> Iterator[str]:
        with self.stream:
            for piece in self.stream:
                yield piece
                if time.monotonic() > self.ends:
                    self.expired = True
                    break

    def finish(self) -> None:
        """The whole answer, or 504 when it takes too long."""
        for _ in self.pieces():
            pass
        if self.expired:
            raise ApiError(
                504,
                "timeout",
                f"the answer took longer than {self.seconds:g} s and was stopped "
                "(rag serve --timeout)",
            )


def ask_events(limited: Deadline, metrics: Metrics) -> Iterator[dict]:
    """Text deltas, then one final event with everything `rag ask --json` gives (and
    `"stopped": true` when the time limit cut the answer short)."""
    for piece in limited.pieces():
        yield {"type": "delta", "text": piece}
    observe_first_token(metrics, limited.answer)
    yield {"type": "final", **limited.answer.to_json(), "stopped": limited.expired}


def rag_fields(answer: Answer) -> dict[str, Any]:
    data = answer.to_json()
    return {k: data[k] for k in ("sources", "refused", "refusal_reason", "cited", "timings")}


def chat_completion(completion_id: str, created: int, model: str, answer: Answer) -> dict:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "finish_reason": "stop",
            }
        ],
        "usage": usage(answer),
        "rag": rag_fields(answer),
    }


def usage(answer: Answer) -> dict[str, int]:
    """OpenAI's token counts: what the model read (the question, the passages, the
    instructions) and wrote; zero when the question was refused before the model ran."""
    prompt, completion = answer.prompt_tokens, answer.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def chat_chunks(
    completion_id: str,
    created: int,
    model: str,
    limited: Deadline,
    metrics: Metrics,
    include_usage: bool = False,
) -> Iterator[dict]:
    """OpenAI's chunk format; the last chunk carries the sources under `rag`. With
    `include_usage` (OpenAI's `stream_options`), every chunk has `"usage": null` and one more
    chunk, with no choices, gives the token counts."""
    none: dict = {"usage": None} if include_usage else {}

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **none,
        }

    yield chunk({"role": "assistant", "content": ""})
    for piece in limited.pieces():
        yield chunk({"content": piece})
    observe_first_token(metrics, limited.answer)
    finish = "length" if limited.expired else "stop"
    yield {**chunk({}, finish), "rag": rag_fields(limited.answer)}
    if include_usage:
        yield {**chunk({}), "choices": [], "usage": usage(limited.answer)}
