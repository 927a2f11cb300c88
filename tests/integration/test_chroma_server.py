"""The product against a `chroma run` server on 127.0.0.1 of its own, chosen by settings alone:
the same answers, one line when the server cannot be reached, and nothing lost when the server
is killed and started again in the middle of an `ingest`.

These tests start (and kill) their own server, so they run in the embedded pass only; the server
pass (RAG_TEST_CHROMA=server) runs the rest of the integration suite against a shared one.
"""

import os
import subprocess
import time

import pytest

from rag.app import build_app
from rag.settings import load_settings
from tests.conftest import BIN, DATA
from tests.integration.conftest import free_port, run_cli
from tests.integration.server_pass import ChromaServer, fresh_store
from tests.integration.test_crash_safety import state, stored_count

pytestmark = [pytest.mark.integration, pytest.mark.store_independent]


@pytest.fixture
def chroma_server(tmp_path):
    server = ChromaServer(tmp_path / "server-data", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_ingest_and_ask_through_a_chroma_server(
    chroma_server, monkeypatch, fake_embedder, fake_llm, rag_home
):
    monkeypatch.setenv("RAG_CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("RAG_CHROMA_PORT", str(chroma_server.port))
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


def one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_an_unreachable_server_is_one_line_naming_its_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = dict(os.environ, RAG_HOME=str(tmp_path / "home"), RAG_CHROMA_URL=url)
    for argv in (
        ("ingest", str(DATA / "notes.md")),
        ("rag", "ask", "What do the notes say?"),
    ):
        result = run_cli(*argv, env=env, timeout=300)
        assert result.returncode == 2, (argv, result.stderr)
        line = one_line(result)
        assert f"cannot reach the Chroma server at {url}" in line, line
        assert "chroma run" in line and "RAG_CHROMA_URL" in line, line
    assert not (tmp_path / "home" / "chroma").exists()


def make_library(folder, files=12):
    """Small notes, half Markdown, half plain text, each several chunks long."""
    folder.mkdir()
    for n in range(files):
        lines = [f"Item {n}.{k}: valve V{n * 40 + k} is checked by crew {n}." for k in range(24)]
        if n % 2:
            (folder / f"note{n:02d}.txt").write_text(f"Note {n}\n\n" + "\n\n".join(lines))
        else:
            (folder / f"note{n:02d}.md").write_text(f"# Note {n}\n\n" + "\n\n".join(lines))


def test_server_killed_and_restarted_mid_ingest_loses_nothing(chroma_server, tmp_path):
    library = tmp_path / "library"
    make_library(library)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAG_CHROMA")}
    base.update(
        RAG_CHROMA_URL=chroma_server.url,
        RAG_CHUNK_SIZE="64",
        RAG_CHUNK_OVERLAP="8",
        RAG_INGEST_BATCH_CHUNKS="8",
    )
    clean_home = tmp_path / "clean"
    clean = run_cli("ingest", str(library), "--json", env=dict(base, RAG_HOME=str(clean_home)))
    assert clean.returncode == 0, clean.stderr
    expected = state(clean_home, base)
    assert len(expected["chroma"]) == 12 and expected["pending"] == 0
    fresh_store(base)  # one server holds one store for every RAG_HOME: start from empty

    home = tmp_path / "restarted"
    env = dict(base, RAG_HOME=str(home))
    ingest = subprocess.Popen(
        [str(BIN / "ingest"), str(library), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while ingest.poll() is None and time.monotonic() < deadline:
            if stored_count(home) >= 3:  # files are being written
                break
            time.sleep(0.05)
        assert ingest.poll() is None, "the ingest ended before the server could be killed"
        chroma_server.kill()
        out, err = ingest.communicate(timeout=300)
    finally:
        if ingest.poll() is None:
            ingest.kill()
            ingest.communicate()
    interrupted = subprocess.CompletedProcess(ingest.args, ingest.returncode, out, err)
    assert interrupted.returncode == 2, err
    assert f"cannot reach the Chroma server at {chroma_server.url}" in one_line(interrupted)
    assert 3 <= stored_count(home) < 12

    chroma_server.start()  # the same folder and port
    again = run_cli("ingest", str(library), "--json", env=env)
    assert again.returncode == 0, again.stderr
    after = state(home, base)
    assert after["pending"] == 0
    assert after["chroma"] == expected["chroma"]
    assert after["manifest"] == expected["manifest"]
    assert after["ids"] == after["live"] == expected["ids"]
    check = run_cli("ingest", "check", "--json", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
