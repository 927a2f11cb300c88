"""`rag serve` killed (SIGKILL) in the middle of an upload, then started again: the same upload
completes, nothing stored is lost or duplicated, and the store agrees with the manifest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import httpx
import pytest

from tests.conftest import ROOT
from tests.integration.conftest import free_port, run_cli, start_server, wait_until_stored
from tests.integration.server_pass import fresh_store

SAMPLES = ROOT / "sample_docs"


def start(env: dict, port: int) -> subprocess.Popen:
    return start_server("serve", port, "/healthz", env)


def upload(url: str, timeout: float = 600) -> httpx.Response:
    files = [("files", (p.name, p.read_bytes())) for p in sorted(SAMPLES.iterdir())]
    return httpx.post(f"{url}/v1/collections/default/documents", files=files, timeout=timeout)


def stored(env: dict) -> dict[str, int]:
    result = run_cli("ingest", "list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    rows = rows.get("files", rows) if isinstance(rows, dict) else rows
    return {row["file"].rsplit("/", 1)[-1]: row["chunks"] for row in rows}


@pytest.mark.server_pass_redundant(
    "test_crash_safety.py kills `ingest` mid-write: the same journal and store calls"
)
def test_sigkill_mid_upload_then_restart_loses_and_duplicates_nothing(tmp_path):
    # small write steps: the files are committed one after another, so the kill can fall between
    env = dict(os.environ, RAG_HOME=str(tmp_path / "home"), RAG_INGEST_BATCH_CHUNKS="4")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start(env, port)
    outcome: list[object] = []
    sender = threading.Thread(target=lambda: outcome.append(_try(lambda: upload(url))))
    sender.start()
    stored_now = wait_until_stored(tmp_path / "home")  # saved, and being embedded
    assert stored_now < SAMPLE_FILES, "the upload was stored before it could be cut off"
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=30)
    sender.join(timeout=60)
    assert outcome and isinstance(outcome[0], Exception), "the upload should have been cut off"

    server = start(env, port)
    try:
        again = upload(url)
        assert again.status_code == 200, again.text
    finally:
        server.terminate()
        server.wait(timeout=30)
    check = run_cli("ingest", "check", "--json", env=env)
    report = json.loads(check.stdout)
    assert report["clean"] and report["store_chunks"] == report["chunks"], report

    fresh_store()  # a Chroma server holds one store for every RAG_HOME
    clean = dict(os.environ, RAG_HOME=str(tmp_path / "clean"))
    port = free_port()
    server = start(clean, port)
    try:
        assert upload(f"http://127.0.0.1:{port}").status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert stored(env) == stored(clean)


SAMPLE_FILES = len([p for p in SAMPLES.iterdir() if p.is_file()])


def _try(call):
    try:
        return call()
    except Exception as exc:  # the connection dies with the server
        return exc
