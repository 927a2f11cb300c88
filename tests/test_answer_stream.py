"""The answer stream owns its generation: pieces, text(), answer, close() that frees the model."""

from __future__ import annotations

import threading

import pytest

from rag.app import build_app
from rag.engine import EmptyQuestionError
from tests.conftest import FakeLLM


@pytest.fixture
def docs(app, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "leave.md").write_text("# Leave\n\nEmployees receive 22 days of paid annual leave.\n")
    (folder / "robot.md").write_text("# Robot\n\nThe K2 robot charges in 55 minutes on its dock.\n")
    app.ingestor().ingest([folder])
    return folder


def test_pieces_then_text_then_answer(app, fake_llm, docs):
    fake_llm.enqueue("Twenty two days [1].")
    stream = app.engine.stream("How many days of annual leave?")
    assert stream.answer is None and stream.sources  # sources are known before the answer
    first = next(iter(stream))
    assert first == "Twenty "
    assert stream.text() == "Twenty two days [1]."  # the rest is generated, nothing lost
    assert stream.answer.text == "Twenty two days [1]." and stream.answer.cited == [1]
    assert list(stream) == []  # a finished stream does not replay


def test_close_mid_answer_frees_the_model_for_the_next_question(app, fake_llm, docs):
    fake_llm.enqueue("one two three four five six")
    first = app.engine.stream("annual leave days?")
    pieces = iter(first)
    assert next(pieces) == "one "
    assert fake_llm.lock.locked() and app.engine.queue_length == 1
    first.close()
    assert not fake_llm.lock.locked() and app.engine.queue_length == 0
    first.close()  # safe twice
    assert first.answer is not None and first.answer.text == "one"  # what was written so far

    second = app.engine.stream("robot charging time?")
    result: list[str] = []
    worker = threading.Thread(target=lambda: result.append(second.text()))
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "the second answer waited for the closed one"
    assert result == ["The answer is in the sources [1]."]


def test_leaving_a_with_block_early_frees_the_model(app, fake_llm, docs):
    fake_llm.enqueue("alpha beta gamma")
    with app.engine.stream("annual leave days?") as stream:
        for _piece in stream:
            break
    assert not fake_llm.lock.locked()
    assert stream.answer.text == "alpha"


def test_queue_length_does_not_load_the_model(settings, fake_embedder):
    app = build_app(settings, embedder=fake_embedder)  # the real LLM would load on first use
    assert app.engine.queue_length == 0
    assert app.models._llm is None


def test_a_refused_question_never_touches_the_model(settings, fake_embedder, docs):
    strict = settings.model_copy(update={"refuse_below": 0.99})
    llm = FakeLLM()
    app = build_app(strict, embedder=fake_embedder, llm=llm)
    stream = app.engine.stream("annual leave days")
    assert stream.text() == "The documents do not contain the answer."
    assert stream.answer.refused and llm.prompts == []


def test_an_empty_question_is_a_user_error(app, docs):
    with pytest.raises(EmptyQuestionError, match="question is empty"):
        app.engine.stream("   ")


def test_prepare_builds_the_prompt_without_generating(app, fake_llm, docs):
    prepared = app.engine.prepare("How long does the robot charge?")
    assert prepared.messages[0]["role"] == "system"
    assert "55 minutes" in prepared.messages[1]["content"]
    assert prepared.used and not prepared.follows_up
    assert fake_llm.prompts == []
