"""The same product against a real `chroma run` server on 127.0.0.1, chosen by settings alone."""

import os
import subprocess

import pytest

from rag.app import build_app
from rag.settings import load_settings
from tests.conftest import BIN, DATA
from tests.integration.conftest import free_port, wait_for_http

pytestmark = pytest.mark.integration


@pytest.fixture
def chroma_server(tmp_path):
    port = free_port()
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
    server = subprocess.Popen(
        [
            str(BIN / "chroma"),
            "run",
            "--path",
            str(tmp_path / "server-data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=60, process=server)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_ingest_and_ask_through_a_chroma_server(
    chroma_server, monkeypatch, fake_embedder, fake_llm, rag_home
):
    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("RAG_CHROMA_PORT", str(chroma_server))
    settings = load_settings()
    report = (
        build_app(settings, embedder=fake_embedder).ingestor().ingest([DATA / "three-pages.pdf"])
    )
    assert report.files == 1 and not report.failed
    engine = build_app(settings, embedder=fake_embedder, llm=fake_llm).engine
    answer = engine.ask("Where is the charlie page marker?", top_k=3)
    assert answer.sources[0].page == 3
    assert engine.stats()["files"] == 1
    assert not (rag_home / "chroma").exists()  # nothing was written to the embedded store
