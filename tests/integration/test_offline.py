"""The product works with no network at all: inside a network namespace that has only loopback,
`ingest`, `rag ask` (the embedded model), `rag serve` (upload, ask, the OpenAI route with the
official client) and `rag ui` (one question asked in headless Chromium) all succeed. Run as a
script, this module is the probe run inside the namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.embedded_only  # a namespace with no network reaches no server


def test_ingest_ask_and_serve_work_with_only_loopback(tmp_path):
    from tests.integration.conftest import network_namespaces_work, run_in_namespace

    if not network_namespaces_work():
        pytest.skip("network namespaces are not available here (unshare --net)")
    env = dict(os.environ, RAG_HOME=str(tmp_path / "home"))
    result = run_in_namespace(__file__, str(tmp_path), env=env, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    steps = ("no route out", "ingest ok", "ask ok", "upload ok", "api ask ok", "openai ok", "ui ok")
    for step in steps:
        assert step in result.stdout, output[-4000:]
    assert "Traceback" not in output, output[-4000:]


# --- the probe, run inside the namespace ---------------------------------------------------


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    bin_dir = Path(sys.executable).parent
    return subprocess.run(
        [str(bin_dir / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=600, **kwargs
    )


def probe(scratch: Path) -> None:
    import socket

    import httpx
    import openai

    sys.path.insert(0, str(ROOT))
    from tests.integration.conftest import free_port, wait_for_http

    try:  # the namespace really has no way out
        socket.create_connection(("1.1.1.1", 53), timeout=3).close()
        raise SystemExit("a connection left the namespace")
    except OSError:
        print("no route out", flush=True)
    docs = scratch / "docs"
    docs.mkdir()
    for name in ("employee-handbook.pdf", "release-notes.md"):
        (docs / name).write_bytes((ROOT / "sample_docs" / name).read_bytes())
    ingested = run("ingest", str(docs), "--json")
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["files"] == 2
    print("ingest ok", flush=True)
    asked = run("rag", "ask", "How many days of paid annual leave do employees get?", "--json")
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["sources"], asked.stdout
    print("ask ok", flush=True)

    made = run("rag", "keys", "create", "--collection", "default", "--json")
    key = json.loads(made.stdout)["key"]
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "rag"), "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/healthz", timeout=120, process=server)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
        upload = (
            "onboarding-checklist.md",
            (ROOT / "sample_docs" / "onboarding-checklist.md").read_bytes(),
        )
        report = client.post("/v1/collections/default/documents", files={"files": upload})
        assert report.status_code == 200 and report.json()["files"] == 1, report.text
        print("upload ok", flush=True)
        answer = client.post(
            "/v1/collections/default/ask", json={"question": "Who is my onboarding buddy?"}
        )
        assert answer.status_code == 200 and answer.json()["sources"], answer.text
        print("api ask ok", flush=True)
        chat = openai.OpenAI(base_url=f"{url}/v1", api_key=key, timeout=600)
        completion = chat.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "How long is the leave year?"}]
        )
        assert completion.model_extra["rag"]["sources"]
        print("openai ok", flush=True)
    finally:
        server.terminate()
        print(server.communicate(timeout=30)[0], flush=True)
    ask_in_the_browser()


def ask_in_the_browser() -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.integration.conftest import launch_chromium, open_ask_page, ui_server

    with ui_server(dict(os.environ)) as server, sync_playwright() as p:
        browser = launch_chromium(p)
        page, box = open_ask_page(browser, server)
        box.fill("How many days of paid annual leave do employees get?")
        box.press("Enter")
        cards = page.locator("[class*='st-key-card-']")
        expect(cards.first).to_be_attached(timeout=300_000)
        expect(page.get_by_role("button", name="Stop")).to_have_count(0, timeout=300_000)
        browser.close()
    print("ui ok", flush=True)


if __name__ == "__main__":
    probe(Path(sys.argv[1]))
