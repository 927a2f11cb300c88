"""The answer view and the Library page in-process (AppTest) with fake models: citation badges
match the numbered cards, a refusal says so, removing a document removes it from answers."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from rag.app import build_app
from rag.settings import load_settings
from tests.conftest import FakeLLM
from ui.cards import badged


def draw_ask(app) -> None:
    from ui.ask import main

    main(app)


def draw_library(app) -> None:
    from ui.library import main

    main(app)


@pytest.fixture
def library(rag_home, monkeypatch, fake_embedder, tmp_path):
    monkeypatch.setenv("RAG_REFUSE_BELOW", "-1")
    monkeypatch.setenv("RAG_REFUSE_UNLESS_SIMILAR", "-1")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "leave.md").write_text(
        "# Leave\n\nThe office opens at nine. Employees get 25 days of paid annual leave. "
        "Parking is free.\n"
    )
    (folder / "robot.md").write_text("# Robot\n\nThe K2 robot charges in 55 minutes.\n")
    (folder / "rent.md").write_text("# Rent\n\nRent is due on the first day of the month.\n")
    return folder


def run(script, app) -> AppTest:
    test = AppTest.from_function(script, kwargs={"app": app}, default_timeout=60)
    test.run()
    assert not test.exception, test.exception
    return test


def cards(test: AppTest) -> dict[int, str]:
    """Card number -> the card's header markdown, in the order drawn."""
    found: dict[int, str] = {}
    for md in test.markdown:
        match = re.match(r":blue-badge\[(\d+)\] \*\*", md.value)
        if match:
            found[int(match.group(1))] = md.value
    return found


def test_badges_in_the_answer_are_the_numbers_of_their_cards(library, fake_embedder):
    llm = FakeLLM()
    app = build_app(load_settings(), embedder=fake_embedder, llm=llm)
    app.ingestor().ingest([library])
    sources = app.engine.retrieve("annual leave days robot rent", top_k=3).sources
    llm.enqueue("Leave is 25 days [2]; the robot charges in 55 minutes [1].")
    test = run(draw_ask, app)
    test.chat_input[0].set_value("annual leave days robot rent").run()
    assert not test.exception, test.exception
    answer = next(md.value for md in test.markdown if "Leave is 25 days" in md.value)
    assert re.findall(r":blue-badge\[(\d+)\]", answer) == ["2", "1"]
    drawn = cards(test)
    assert list(drawn)[:2] == [1, 2]  # cited cards first, in source order
    for number in (1, 2):
        assert sources[number - 1].file_name in drawn[number]  # badge n is source n's card
    also = [e for e in test.expander if e.label.startswith("Also retrieved")]
    assert also and set(drawn) - {1, 2} and "(" in also[0].label


def test_a_marker_beyond_the_sources_is_not_a_badge():
    drawn = badged("See [1] and [9].", n_sources=2)
    assert ":blue-badge[1]" in drawn and ":blue-badge[9]" not in drawn and "9" in drawn


def test_a_refusal_says_not_in_your_documents_and_shows_the_closest(library, fake_embedder):
    llm = FakeLLM()
    strict = load_settings(refuse_below=0.99, refuse_unless_similar=0.99)
    app = build_app(strict, embedder=fake_embedder, llm=llm)
    app.ingestor().ingest([library])
    test = run(draw_ask, app)
    test.chat_input[0].set_value("What is the boiling point of tungsten?").run()
    assert not test.exception, test.exception
    assert any("Not in your documents" in w.value for w in test.warning)
    assert any("Why: no passage is about what the question asks" in w.value for w in test.warning)
    closest = [e for e in test.expander if e.label.startswith("Closest passages")]
    assert closest and cards(test)
    assert llm.prompts == []  # no made-up answer: the model was not asked


def asked(library, embedder, reply: str) -> AppTest:
    """The Ask page after one leave question, answered with `reply`."""
    app = build_app(load_settings(), embedder=embedder, llm=FakeLLM(reply=reply))
    app.ingestor().ingest([library])
    test = run(draw_ask, app)
    test.chat_input[0].set_value("How many days of paid annual leave?").run()
    assert not test.exception, test.exception
    return test


def test_the_evidence_sentence_is_highlighted(library, fake_embedder):
    test = asked(library, fake_embedder, "Employees get 25 days of paid annual leave [1].")
    lit = [md.value for md in test.markdown if ":orange-background[" in md.value]
    assert lit and any("25 days of paid annual leave" in md for md in lit)
    assert not any(":orange-background[The office opens" in md for md in lit)


def test_removing_a_document_in_the_library_removes_it_from_answers(library, fake_embedder):
    app = build_app(load_settings(), embedder=fake_embedder, llm=FakeLLM())
    app.ingestor().ingest([library])
    test = run(draw_library, app)
    rows = [md.value for md in test.markdown if "leave.md" in md.value]
    assert rows
    target = str(library / "leave.md")
    test.button(key=f"remove-{target}").click().run()
    test.button(key="confirm-yes").click().run()
    assert not test.exception, test.exception
    assert target not in [r.path for r in app.engine.library()]
    answer = app.engine.ask("paid annual leave days", top_k=3)
    assert all(s.file_name != "leave.md" for s in answer.sources)


def draw_settings(app) -> None:
    from ui.settings_page import main

    main(app)


def test_settings_apply_to_the_next_question_without_reloading(library, fake_embedder):
    llm = FakeLLM()
    app = build_app(load_settings(), embedder=fake_embedder, llm=llm)
    app.ingestor().ingest([library])
    settings = run(draw_settings, app)
    assert settings.slider[0].label == "Passages per answer"
    assert any("context 4096 tokens" in md.value for md in settings.markdown)
    test = run(draw_ask, app)
    test.session_state["tuning"] = {**settings.session_state["tuning"], "top_k": 2}
    test.chat_input[0].set_value("annual leave days robot rent").run()
    assert not test.exception, test.exception
    assert len(cards(test)) == 2
    assert app.models.llm is llm  # the same model: nothing was loaded again


def test_an_answer_citing_nothing_gets_badges_by_matching_and_says_so(library, fake_embedder):
    test = asked(library, fake_embedder, "Employees get 25 days of paid annual leave.")
    answer = next(md.value for md in test.markdown if md.value.startswith("Employees get 25"))
    number = int(re.findall(r":blue-badge\[(\d+)\]", answer)[0])
    assert "leave.md" in cards(test)[number]
    assert any("The model cited no source" in c.value for c in test.caption)
