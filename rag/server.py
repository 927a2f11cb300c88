"""`rag serve`: the HTTP API, the third front-end over the same App as the CLIs and the page.

Routes (all JSON; errors are `{"error": {"type", "message"}}`, never a traceback):
- GET  /healthz                                  alive (no key needed)
- GET  /readyz                                   models loaded and store reachable
- GET  /v1/models                                the collections the key may use (OpenAI shape)
- GET  /v1/collections/{name}/documents          the collection's files, from the manifest
- POST /v1/collections/{name}/documents          multipart upload (field `files`), then ingest
- DELETE /v1/collections/{name}/documents/{id}   forget one file and its chunks
- POST /v1/collections/{name}/search             passages only, best first
- POST /v1/collections/{name}/ask                `rag ask --json`; "stream": true gives SSE
- POST /v1/chat/completions                      OpenAI-compatible; `model` is the collection
- GET  /metrics                                  Prometheus: requests, latency, time to first
                                                 token, queue depth, documents and chunks

Keys (rag.keys) are sent as `Authorization: Bearer <key>`. A key opens its collections only: any
other collection answers 404 as if it did not exist, and a read-only key gets 403 on writes.
Without any key the server is open, which `rag serve` allows on a loopback address only.
"""

import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
)
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.app import App
from rag.errors import UserError
from rag.http_answers import (
    Admission,
    ApiError,
    Deadline,
    Warmup,
    ask_events,
    chat_chunks,
    chat_completion,
    error_response,
    sse,
)
from rag.http_metrics import Metrics, observe_first_token
from rag.keys import ApiKey, KeyStore
from rag.locks import CollectionBusyError
from rag.manifest import FileRecord, UnknownCollectionError
from rag.uploads import store_upload

API_VERSION = "1"
UPLOAD_FILES = 20  # a request carries at most this many files' worth of bytes
COLLECTION_LABEL = re.compile(r'collection="([^"]*)"')


@dataclass
class Access:
    """Who is calling: a key, or anyone when the server has no keys."""

    key: ApiKey | None

    def collections(self, existing: list[str]) -> list[str]:
        return [n for n in existing if self.key is None or self.key.allows(n)]

    def sees_line(self, line: str) -> bool:
        """A metrics line about a collection is shown to its keys only."""
        label = COLLECTION_LABEL.search(line)
        return self.key is None or label is None or self.key.allows(label.group(1))

    def check(self, collection: str, write: bool = False) -> None:
        if self.key is not None and not self.key.allows(collection):
            raise ApiError(404, "not_found", f"collection '{collection}' not found")
        if write and self.key is not None and self.key.read_only:
            raise ApiError(403, "forbidden", "this key is read-only")


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=10_000)
    top_k: int | None = Field(None, ge=1, le=100)
    where: str | None = Field(None, description="a glob on stored paths, e.g. '*.pdf'")


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=10_000)
    history: list[str] = Field(default_factory=list, max_length=50)
    top_k: int | None = Field(None, ge=1, le=100)
    where: str | None = None
    stream: bool = False


class ChatMessage(BaseModel):
    role: str
    content: str | None = ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    temperature: float | None = None


def per_file(name: str, path: str, records: dict[str, FileRecord], report: dict) -> dict:
    """One uploaded file's outcome: stored (with its id and chunks), skipped or failed."""
    for kind, key in (("skipped", "reason"), ("failed", "error")):
        for item in report[kind]:
            if item["file"] == path:
                return {"name": name, "file": path, "outcome": kind, "reason": item[key]}
    record = records.get(path)
    if record is None:
        return {"name": name, "file": path, "outcome": "not stored", "reason": "see the report"}
    return {
        "name": name,
        "file": path,
        "outcome": record.status,
        "id": document_id(path),
        "chunks": record.chunks,
    }


def document_id(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:16]


def document(record: FileRecord) -> dict:
    return {"id": document_id(record.path), **record.public()}


def create_api(app: App, keys: KeyStore, max_queue: int = 8, timeout_s: float = 300.0) -> FastAPI:
    """The FastAPI application over `app`; `keys` decides who may use which collection.
    An answer still being written after `timeout_s` is stopped: a plain request then gets 504,
    a streamed one ends with finish reason "length"."""
    api = FastAPI(
        title="rag",
        version=API_VERSION,
        description="Private question answering over your own documents.",
    )
    gate = Admission(max_queue)
    metrics = Metrics(app, gate)

    request_limit = app.settings.max_file_mb * UPLOAD_FILES * 1024 * 1024

    @api.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > request_limit:
            # refused before the body is read, so a huge upload never reaches the disk
            response = error_response(
                413,
                "too_large",
                f"the request is over {request_limit / 1048576:g} MB: send at most "
                f"{UPLOAD_FILES} files of RAG_MAX_FILE_MB ({app.settings.max_file_mb:g} MB) at once",
            )
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - started)
        return response

    def access(request: Request) -> Access:
        stored = keys.load()
        if not stored:
            return Access(None)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "send an API key: Authorization: Bearer <key>")
        key = keys.find(token.strip(), stored)
        if key is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key")
        return Access(key)

    def collection_names() -> list[str]:
        return app.store.names()

    @api.exception_handler(ApiError)
    def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.kind, exc.message, exc.headers)

    @api.exception_handler(UserError)
    def user_error(_: Request, exc: UserError) -> JSONResponse:
        if isinstance(exc, UnknownCollectionError):
            return error_response(404, "not_found", str(exc))
        if isinstance(exc, CollectionBusyError):
            return error_response(503, "busy", str(exc), {"Retry-After": "5"})
        return error_response(400, "bad_request", str(exc))

    @api.exception_handler(RequestValidationError)
    def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @api.exception_handler(StarletteHTTPException)
    def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @api.exception_handler(Exception)
    def bug(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal", f"unexpected {type(exc).__name__}; see the log")

    @api.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    warming = Warmup(app)

    @api.get("/readyz")
    def readyz() -> JSONResponse:
        """Ready once both models are loaded (started in the background by the first call or
        by `rag serve` at start) and the store answers."""
        if warming.error:
            return error_response(503, "not_ready", warming.error)
        if not warming.done.is_set():
            warming.start()
            return error_response(503, "not_ready", "loading the models; ask again shortly")
        try:
            names = collection_names()
        except UserError as exc:
            return error_response(503, "not_ready", str(exc))
        return JSONResponse({"status": "ready", "collections": len(names)})

    api.state.warmup = warming

    @api.get("/metrics")
    def prometheus(who: Annotated[Access, Depends(access)]) -> Response:
        """Prometheus text; a key sees the library figures of its own collections only."""
        lines = metrics.text().decode("utf-8").splitlines(keepends=True)
        shown = [line for line in lines if who.sees_line(line)]
        return Response("".join(shown), media_type=CONTENT_TYPE_LATEST)

    @api.get("/v1/models")
    def models(who: Annotated[Access, Depends(access)]) -> dict:
        names = who.collections(collection_names())
        if who.key is not None:
            names = sorted(set(names) | set(who.key.collections))
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "owned_by": "rag", "created": 0} for n in names],
        }

    @api.get("/v1/collections/{name}/documents")
    def list_documents(name: str, who: Annotated[Access, Depends(access)]) -> dict:
        who.check(name)
        return {"collection": name, "documents": [document(r) for r in app.engine.library(name)]}

    @api.post("/v1/collections/{name}/documents")
    def upload(
        name: str,
        files: Annotated[list[UploadFile], File()],
        who: Annotated[Access, Depends(access)],
    ) -> dict:
        who.check(name, write=True)
        limit = app.settings.max_file_mb
        folder = app.settings.home / "uploads" / name
        stored, notes, names = [], [], []
        for item in files:
            data = item.file.read(int(limit * 1024 * 1024) + 1)
            if len(data) > limit * 1024 * 1024:
                raise ApiError(
                    413,
                    "too_large",
                    f"{item.filename} is over the {limit:g} MB limit (RAG_MAX_FILE_MB)",
                )
            saved = store_upload(folder, item.filename or "upload", data)
            stored.append(saved.path)
            names.append(saved.name)
            notes.append(saved.message(folder.parent))
        report = app.ingestor().ingest(stored, name)
        records = {r.path: r for r in app.engine.library(name)}
        documents = [
            per_file(upload_name, str(path.resolve()), records, report.to_json())
            for upload_name, path in zip(names, stored, strict=True)
        ]
        return {**report.to_json(), "documents": documents, "uploads": notes}

    @api.delete("/v1/collections/{name}/documents/{doc_id}")
    def delete_document(name: str, doc_id: str, who: Annotated[Access, Depends(access)]) -> dict:
        who.check(name, write=True)
        match = [r for r in app.engine.library(name) if document_id(r.path) == doc_id]
        if not match:
            raise ApiError(404, "not_found", f"no document '{doc_id}' in collection '{name}'")
        removed, _ = app.ingestor().remove([match[0].path], name)
        return {"removed": removed, "document": document(match[0])}

    @api.post("/v1/collections/{name}/search")
    def search(name: str, body: SearchRequest, who: Annotated[Access, Depends(access)]) -> dict:
        who.check(name)
        found = app.engine.retrieve(body.query, name, body.top_k, body.where, assess=False)
        return {"collection": name, "passages": [s.public() for s in found.sources]}

    @api.post("/v1/collections/{name}/ask", response_model=None)
    def ask(name: str, body: AskRequest, who: Annotated[Access, Depends(access)]):
        who.check(name)
        release = gate.enter()
        try:
            stream = app.engine.stream(
                body.question,
                history=body.history,
                collection=name,
                top_k=body.top_k,
                where=body.where,
            )
            limited = Deadline(stream, timeout_s)
            if body.stream:
                return sse(ask_events(limited, metrics), release)
            limited.finish()
        finally:
            if not body.stream:
                release()
        observe_first_token(metrics, stream.answer)
        return stream.answer.to_json()

    @api.post("/v1/chat/completions", response_model=None)
    def chat_completions(body: ChatRequest, who: Annotated[Access, Depends(access)]):
        name = body.model
        who.check(name)
        users = [m.content or "" for m in body.messages if m.role == "user"]
        if not users or not users[-1].strip():
            raise ApiError(400, "invalid_request", "the last user message holds the question")
        release = gate.enter()
        try:
            stream = app.engine.stream(users[-1], history=users[:-1], collection=name)
            completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
            created = int(time.time())
            limited = Deadline(stream, timeout_s)
            if body.stream:
                counted = body.stream_options is not None and body.stream_options.include_usage
                chunks = chat_chunks(completion_id, created, name, limited, metrics, counted)
                return sse(chunks, release, done=True)
            limited.finish()
        finally:
            if not body.stream:
                release()
        observe_first_token(metrics, stream.answer)
        return chat_completion(completion_id, created, name, stream.answer)

    return api
