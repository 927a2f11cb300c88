"""The three-part page in a real browser: Library uploads, Ask with citation badges and source cards,
the page preview, removal from the Library, and a refusal, with every non-loopback request refused.

`rag ui` runs on an empty RAG_HOME with the real embedded embedder; the language model is a stub
on loopback that always answers citing [1], so which card carries badge 1 is decided by retrieval
alone. Screenshots of each step go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, SAMPLES
from tests.integration.conftest import (
    CHROMIUM,
    launch_chromium,
    open_ask_page,
    stub_env,
    stub_llm,
    ui_server,
)

pytestmark = pytest.mark.integration
ARTIFACTS = ROOT / "tests" / "artifacts"
ANSWER = "Employees get 25 days of paid annual leave [1]."
LEAVE = "How many days of paid annual leave do employees get?"
OFF_TOPIC = "What is the boiling point of tungsten?"
PDF, MARKDOWN = "employee-handbook.pdf", "panduan-keselamatan.md"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
WAIT = 180_000  # ms: the first question loads the embedder on two busy cores


def local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname in LOOPBACK


@pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="Debian chromium is not installed (apt-get install chromium)",
)
def test_library_upload_ask_preview_remove_and_refuse(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    uploads = tmp_path / "to-upload"
    uploads.mkdir()
    for name in (PDF, MARKDOWN):
        shutil.copy(SAMPLES / name, uploads / name)
    ARTIFACTS.mkdir(exist_ok=True)
    outside: list[str] = []
    step = iter(range(1, 100))

    def shot(page, name: str) -> None:
        page.screenshot(
            path=str(ARTIFACTS / f"ui-pages-{next(step):02d}-{name}.png"), full_page=True
        )

    def refuse_outside(route) -> None:
        if local(route.request.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    def refuse_outside_socket(socket) -> None:
        if local(socket.url):
            socket.connect_to_server()
        else:
            outside.append(socket.url)
            socket.close()

    with (
        stub_llm(ANSWER, delay=0.15) as model_url,
        ui_server(stub_env(tmp_path / "home", model_url)) as server,
        sync_playwright() as p,
    ):
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1400, "height": 1600})
        context.route("**/*", refuse_outside)
        context.route_web_socket("**/*", refuse_outside_socket)
        page = context.new_page()
        nav = page.locator('[data-testid="stSidebarNav"]')

        def go(title: str) -> None:
            nav.get_by_role("link", name=title).click()
            expect(page.get_by_role("heading", name=title, exact=False).first).to_be_visible(
                timeout=60_000
            )

        def ask(question: str, turn: int):
            """Ask on the Ask page; the answer is the assistant turn at index `turn`."""
            box = page.get_by_placeholder("Ask a question about your documents")
            box.fill(question)
            box.press("Enter")
            cards = page.locator(f'[class*="st-key-card-t{turn}-"]')
            expect(cards.first).to_be_attached(timeout=WAIT)
            expect(page.get_by_role("button", name="Stop")).to_have_count(0, timeout=60_000)
            return cards

        # 1. The Library page: a PDF and a Markdown file uploaded at once.
        page.goto(server.url, timeout=120_000)
        expect(nav).to_be_visible(timeout=120_000)
        go("Library")
        page.locator(".st-key-library-upload input[type=file]").set_input_files(
            [str(uploads / PDF), str(uploads / MARKDOWN)]
        )
        expect(page.get_by_text("Stored 2 file(s)")).to_be_visible(timeout=WAIT)
        shot(page, "library-stored")
        rows = page.locator('[class*="st-key-doc-"]')
        expect(rows).to_have_count(2, timeout=30_000)
        expect(rows.filter(has_text=PDF)).to_have_count(1)
        expect(rows.filter(has_text=MARKDOWN)).to_have_count(1)
        shot(page, "library-uploaded")

        # 2. A question the documents cannot answer: refused before the model, closest passages.
        go("Ask")
        refused = ask(OFF_TOPIC, turn=1)
        expect(page.get_by_text("Not in your documents")).to_be_visible()
        expect(page.get_by_text("Closest passages (")).to_be_visible()
        assert refused.count() >= 1
        expect(page.locator('[data-testid="stChatMessage"]').nth(1)).not_to_contain_text(
            "Employees"
        )
        shot(page, "ask-refused")

        # 3. The leave question: the answer streams in, badge 1 matches the handbook's card.
        box = page.get_by_placeholder("Ask a question about your documents")
        box.fill(LEAVE)
        box.press("Enter")
        latest = page.locator('[data-testid="stChatMessage"]').nth(3)
        page.wait_for_function(  # part of the answer is drawn before the rest has come
            """(el) => { const t = el.innerText;
                         return t.includes('Employees') && !t.includes('annual leave'); }""",
            arg=latest.element_handle(timeout=WAIT),
            polling="raf",
            timeout=WAIT,
        )
        shot(page, "ask-streaming")
        card = page.locator(".st-key-card-t3-1")
        expect(card).to_be_visible(timeout=WAIT)
        expect(latest.locator("span.stMarkdownBadge", has_text="1").first).to_be_visible()
        expect(latest).to_contain_text("Employees get 25 days of paid annual leave")
        expect(card.locator("span.stMarkdownBadge").first).to_have_text("1")
        expect(card).to_contain_text(PDF)
        evidence = card.locator("span.stMarkdownColoredBackground")
        expect(evidence.first).to_be_visible(timeout=60_000)
        assert evidence.first.inner_text().strip(), "the highlighted sentence is empty"
        shot(page, "ask-answered")

        # 4. "Show page" draws the cited PDF page as an image.
        card.get_by_text("Show page").click()
        image = card.locator('[data-testid="stImage"] img')
        expect(image).to_be_visible(timeout=60_000)
        page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 100", arg=image.element_handle()
        )
        expect(card).to_contain_text(f"of {PDF}")
        shot(page, "ask-page-preview")

        # 5. Remove the handbook in the Library (with confirmation).
        go("Library")
        row = page.locator('[class*="st-key-doc-"]', has_text=PDF)
        row.get_by_role("button", name="Remove").click()
        page.get_by_role("button", name="Yes, remove").click()
        expect(page.locator('[class*="st-key-doc-"]')).to_have_count(1, timeout=60_000)
        expect(page.locator('[class*="st-key-doc-"]', has_text=PDF)).to_have_count(0)
        shot(page, "library-removed")

        # 6. The same question again: no card of the new answer names the handbook.
        go("Ask")
        after = ask(LEAVE, turn=5)
        # Every card, also those in a folded "Also retrieved (n)" (drawn once it is opened).
        folded = (
            page.locator('[data-testid="stChatMessage"]')
            .nth(5)
            .locator('[data-testid="stExpander"]')
        )
        if folded.count():
            summary = folded.locator("summary")
            if folded.locator("details").get_attribute("open") is None:
                summary.click()
            hidden = int(re.search(r"\((\d+)\)", summary.inner_text()).group(1))
            expect(folded.locator('[class*="st-key-card-"]')).to_have_count(hidden)
        texts = after.all_text_contents()
        assert texts, "the new answer shows no source cards"
        assert not [t for t in texts if PDF in t], f"a card still names {PDF}: {texts}"
        assert any(MARKDOWN in t for t in texts), texts
        shot(page, "ask-after-removal")
        context.close()
        browser.close()
    assert outside == [], f"the page tried to reach beyond loopback: {outside}"
    assert "Traceback" not in server.output, server.output


LONG_ANSWER = " ".join(["Employees get 25 days of paid annual leave [1]."] * 8)


@pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="Debian chromium is not installed (apt-get install chromium)",
)
@pytest.mark.store_independent  # what the page keeps of a stopped answer
def test_an_answer_cut_short_by_stop_or_a_new_question_is_kept(sample_home, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    with (
        stub_llm(LONG_ANSWER, delay=0.2) as model_url,
        ui_server(stub_env(home, model_url)) as server,
        sync_playwright() as p,
    ):
        browser = launch_chromium(p)
        page, box = open_ask_page(browser, server)
        messages = page.locator('[data-testid="stChatMessage"]')

        def started(index: int) -> None:  # some words of the answer are on the page
            expect(messages.nth(index)).to_contain_text("Employees get", timeout=WAIT)

        box.fill(LEAVE)
        box.press("Enter")
        started(1)
        box.fill("And how many of them can be carried over?")  # asked while the first streams
        box.press("Enter")
        started(3)
        expect(page.get_by_role("button", name="Stop")).to_have_count(0, timeout=WAIT)
        first, second = messages.nth(1), messages.nth(3)
        expect(first).to_contain_text("Stopped before the end")
        expect(second).not_to_contain_text("Stopped before the end")
        box.fill("How much notice do I need to give for a leave request?")
        box.press("Enter")
        started(5)
        page.get_by_role("button", name="Stop").click()
        expect(messages.nth(5)).to_contain_text("Stopped before the end", timeout=60_000)
        expect(page.get_by_role("button", name="Stop")).to_have_count(0)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui-pages-kept-answers.png"), full_page=True)
        assert len(LONG_ANSWER) > len(first.inner_text().split("Stopped")[0]) > 0
        browser.close()
    assert "Traceback" not in server.output, server.output
