"""Helpers for tests that run the real parts: processes, servers, the browser."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import BIN, SAMPLES
from tests.integration.server_pass import (
    CHOICE,
    RUNNING,
    SERVER_PASS,
    SKIP_REASONS,
    ChromaServer,
    kept_store,
)


def pytest_configure(config) -> None:
    if CHOICE not in ("embedded", "server"):
        raise pytest.UsageError(
            f"RAG_TEST_CHROMA={CHOICE!r}: use 'server' for the pass against a Chroma server, "
            "or leave it unset"
        )


def pytest_collection_modifyitems(config, items) -> None:
    """In the server pass, skip what is about the embedded store or runs the same either way."""
    if not SERVER_PASS:
        return
    for item in items:
        for name, reason in SKIP_REASONS.items():
            marker = item.get_closest_marker(name)
            if marker is not None:
                item.add_marker(pytest.mark.skip(reason=reason.format(*marker.args)))
                break


@pytest.fixture(scope="session", autouse=True)
def chroma_pass(tmp_path_factory) -> Iterator[ChromaServer | None]:
    """The server pass's Chroma server (None in the embedded pass), named in RAG_CHROMA_URL for
    the whole session, so that fixtures outliving one test reach it too."""
    if not SERVER_PASS:
        yield None
        return
    server = ChromaServer(tmp_path_factory.mktemp("chroma-server") / "data", free_port())
    server.start()
    before = os.environ.get("RAG_CHROMA_URL")
    os.environ["RAG_CHROMA_URL"] = server.url
    RUNNING.append(server)
    try:
        yield server
    finally:
        RUNNING.remove(server)
        server.stop()
        if before is None:
            os.environ.pop("RAG_CHROMA_URL", None)
        else:
            os.environ["RAG_CHROMA_URL"] = before


@pytest.fixture(autouse=True)
def server_store(request, rag_home, chroma_pass, monkeypatch, tmp_path_factory) -> Iterator[None]:
    """Server pass: this test's RAG_HOME uses the server, which holds no collection but those
    of the long-lived fixtures the test uses; and no command of the test made an embedded
    store (in any RAG_HOME under the test's temporary folders) instead."""
    if chroma_pass is None:
        yield
        return
    monkeypatch.setenv("RAG_CHROMA_URL", chroma_pass.url)
    chroma_pass.reset(request.fixturenames)
    before = embedded_stores(tmp_path_factory.getbasetemp())
    yield
    made = embedded_stores(tmp_path_factory.getbasetemp()) - before
    assert not made, f"the server pass made embedded stores: {sorted(map(str, made))}"


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem) -> None:
    """Server pass: once a test and the fixtures it alone used are torn down, the server keeps
    only the collections of long-lived fixtures the next test uses, so that a fixture set up
    before the next test (one that ingests, say) starts from an empty server too."""
    if RUNNING and nextitem is not None:
        RUNNING[0].reset(nextitem.fixturenames)


def embedded_stores(root: Path) -> set[Path]:
    """Embedded Chroma stores in RAG_HOMEs one or two folders below `root`."""
    return {*root.glob("*/chroma/chroma.sqlite3"), *root.glob("*/*/chroma/chroma.sqlite3")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def run_cli(*argv: str, env: dict | None = None, offline: bool = False, timeout: int = 600):
    """Run one of our console scripts; `offline` cuts the network off (loopback only) when possible."""
    env = env or dict(os.environ)
    command = [str(BIN / argv[0]), *argv[1:]]
    # a Chroma server is reached over loopback, which a new network namespace does not share
    if offline and not env.get("RAG_CHROMA_URL") and network_namespaces_work():
        command = ["unshare", "--net", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def run_in_namespace(script: str, *args: str, env: dict, timeout: int):
    """Run a Python `script` (with `args`) in a new network namespace that has only loopback."""
    from tests.conftest import ROOT

    command = " ".join(shlex.quote(part) for part in (sys.executable, script, *args))
    return subprocess.run(
        ["unshare", "--net", "--", "sh", "-c", f"ip link set lo up && exec {command}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )


def start_server(
    command: str, port: int, health: str, env: dict, output=subprocess.DEVNULL
) -> subprocess.Popen:
    """`rag COMMAND --port PORT` started and answering `health`; stopped again if it never does."""
    process = subprocess.Popen(
        [str(BIN / "rag"), command, "--port", str(port)],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}{health}", timeout=120, process=process)
    except BaseException:
        process.kill()
        process.communicate(timeout=30)
        raise
    return process


def wait_until_stored(home: Path, collection: str = "default", timeout: float = 300) -> int:
    """Until a writer has committed a first file to the collection's manifest (read every 20 ms,
    without starting a process); how many files it holds then."""
    from rag.manifest import reading

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with reading(home, collection) as manifest:
                stored = manifest.document_count() if manifest is not None else 0
        except Exception:  # the manifest being created
            stored = 0
        if stored:
            return stored
        time.sleep(0.02)
    raise AssertionError(f"no file was stored in {collection} within {timeout} s")


def network_namespaces_work() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--net", "--", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def sample_home(tmp_path_factory, chroma_pass) -> Path:
    """A RAG_HOME holding sample_docs/, ingested once with the real embedded model."""
    home = tmp_path_factory.mktemp("sample-home")
    env = dict(os.environ, RAG_HOME=str(home))
    with kept_store(chroma_pass, "sample_home"):
        result = run_cli("ingest", str(SAMPLES), "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["files"] == len([p for p in SAMPLES.iterdir() if p.is_file()]), report
    return home


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def launch_chromium(playwright):
    """Debian's Chromium, headless, with no background connections (never a downloaded browser)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)


@dataclass
class UiServer:
    """A running `rag ui`: its address, and what it printed once stopped."""

    port: int
    url: str
    output: str = ""


@contextmanager
def api_server(env: dict) -> Iterator[str]:
    """`rag serve` on a free loopback port (yields its base URL); stopped after the block, and
    its output must hold no traceback."""
    port = free_port()
    process = start_server("serve", port, "/healthz", env, output=subprocess.PIPE)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
        assert "Traceback" not in output, output


@contextmanager
def ui_server(env: dict) -> Iterator[UiServer]:
    """`rag ui` on a free loopback port, answering before the block starts, stopped after it."""
    port = free_port()
    server = UiServer(port, f"http://127.0.0.1:{port}/")
    process = start_server("ui", port, "/_stcore/health", env, output=subprocess.PIPE)
    try:
        yield server
    finally:
        process.terminate()
        server.output = process.communicate(timeout=30)[0]


class StubModel(BaseHTTPRequestHandler):
    """The OpenAI chat API on loopback, answering every question with the same `answer`, streamed
    word by word (`delay` seconds apart, so a page can be seen drawing it as it comes)."""

    answer: str
    delay: float = 0.0
    protocol_version = "HTTP/1.0"  # the connection closes after each reply, ending the stream

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/").endswith("/models"):
            self.reply({"object": "list", "data": [{"id": "stub", "object": "model"}]})
        else:
            self.send_error(404)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.endswith("/chat/completions"):
            self.send_error(404)
            return
        base = {"id": "stub-1", "created": 0, "model": "stub"}
        if not request.get("stream"):
            message = {"role": "assistant", "content": self.answer}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self.reply({**base, "object": "chat.completion", "choices": [choice]})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        words = self.answer.split(" ")
        pieces = [w + " " for w in words[:-1]] + [words[-1]]
        for piece in pieces:
            delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            chunk = {**base, "object": "chat.completion.chunk", "choices": [delta]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(self.delay)
        done = {"index": 0, "delta": {}, "finish_reason": "stop"}
        last = {**base, "object": "chat.completion.chunk", "choices": [done]}
        self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())

    def reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextmanager
def stub_llm(answer: str, delay: float = 0.0) -> Iterator[str]:
    """A StubModel answering `answer`; yields its base URL for RAG_LLM_BASE_URL."""
    server = serve(type("Stub", (StubModel,), {"answer": answer, "delay": delay}))
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def stub_env(home, model_url: str) -> dict:
    """The environment for `rag ui` on `home` answering with the stub model at `model_url`."""
    return dict(
        os.environ, RAG_HOME=str(home), RAG_LLM_BACKEND="openai", RAG_LLM_BASE_URL=model_url
    )


def open_ask_page(browser, server: UiServer, width: int = 1400, height: int = 1600):
    """A new browser page on the Ask page of `server`, once its question box is shown."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(server.url, timeout=120_000)
    box = page.get_by_placeholder("Ask a question about your documents")
    expect(box).to_be_visible(timeout=120_000)
    return page, box
