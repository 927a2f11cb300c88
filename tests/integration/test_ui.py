"""The Streamlit page: through AppTest in-process, and through a real server in headless Chromium."""

import os
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT
from tests.integration.conftest import CHROMIUM, launch_chromium, ui_server

pytestmark = pytest.mark.integration
APP = str(ROOT / "ui" / "app.py")


def test_app_loads_shows_counts_and_answers_with_sources(sample_home, monkeypatch):
    monkeypatch.setenv("RAG_HOME", str(sample_home))
    app = AppTest.from_file(APP, default_timeout=300)
    app.run()
    assert not app.exception
    counts = [c.value for c in app.sidebar.caption]
    assert any(re.fullmatch(r"7 documents · \d+ chunks", c) for c in counts), counts
    app.chat_input[0].set_value("What does error code E-214 mean?").run()
    assert not app.exception
    assistant = [m for m in app.chat_message if m.name == "assistant"]
    assert assistant, "no answer was shown"
    texts = [re.sub(r"\\(.)", r"\1", md.value) for md in assistant[-1].markdown]  # unescape
    assert texts[0].strip(), "the answer is empty"
    assert any(t.startswith(":blue-badge[1] **support-faq.html") for t in texts), texts


def test_app_on_empty_store_says_how_to_add_documents(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_HOME", str(tmp_path))
    app = AppTest.from_file(APP, default_timeout=300)
    app.run()
    assert not app.exception
    assert any("holds no documents yet" in i.value for i in app.info)
    assert [b.label for b in app.button] == ["Add the sample documents"]
    assert app.file_uploader, "no upload area on an empty collection"


@pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="Debian chromium is not installed (apt-get install chromium)",
)
@pytest.mark.server_pass_redundant(
    "test_ui_pages.py uploads, asks, previews and removes through the page in Chromium"
)
def test_real_server_in_headless_chromium(sample_home, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    home = tmp_path / "home"
    shutil.copytree(sample_home, home)  # uploads must not change the shared store
    env = dict(os.environ, RAG_HOME=str(home), RAG_MAX_FILE_MB="1")
    with ui_server(env) as server, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        page.goto(server.url, timeout=120_000)
        box = page.get_by_placeholder("Ask a question about your documents")
        expect(box).to_be_visible(timeout=120_000)
        box.fill("How many days of paid annual leave do employees get?")
        box.press("Enter")
        sources = page.get_by_text("employee-handbook.pdf · page 2").first
        expect(sources).to_be_visible(timeout=240_000)
        page.screenshot(
            path=os.environ.get("UI_SCREENSHOT", str(tmp_path / "ui.png")), full_page=True
        )
        page.get_by_role("link", name="Library").click()
        upload = tmp_path / "uploaded-note.md"
        upload.write_text("# Visitor policy\n\nVisitors sign in at the kiosk in lobby C7.\n")
        page.locator("input[type=file]").set_input_files(str(upload))
        expect(page.get_by_text("Stored 1 file(s)").first).to_be_visible(timeout=120_000)
        expect(page.get_by_text(re.compile(r"^8 documents")).first).to_be_visible(timeout=30_000)
        # Over the limit: the browser refuses it before sending (a red chip, the reason on
        # hover), so the label states the limit up front.
        big = tmp_path / "too-big.txt"
        big.write_text("word " * 300_000)  # 1.5 MB
        expect(page.get_by_text("up to 1 MB per file")).to_be_visible()
        page.locator("input[type=file]").set_input_files(str(big))
        refused = page.locator('[data-testid="stFileChip"][aria-invalid="true"]')
        expect(refused).to_have_count(1, timeout=30_000)
        expect(refused).to_contain_text("too-big.txt")
        page.get_by_role("link", name="Ask").click()
        box = page.get_by_placeholder("Ask a question about your documents")
        box.fill("Where do visitors sign in?")
        box.press("Enter")
        expect(page.get_by_text("uploaded-note.md").first).to_be_visible(timeout=240_000)
        browser.close()
    assert f"Serving on {server.url.rstrip('/')}" in server.output
    assert "Traceback" not in server.output
