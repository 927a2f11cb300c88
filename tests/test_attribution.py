"""Answers that cite nothing get [n] where a sentence matches a passage the model was given."""

from __future__ import annotations

from rag.answer import Answer, SourceRef
from rag.evidence import attribute


def sources() -> list[SourceRef]:
    return [
        SourceRef("/d/leave.md", None, 0.8, "Employees get 25 days of paid annual leave."),
        SourceRef("/d/robot.md", None, 0.7, "The K2 robot charges in 55 minutes on its dock."),
        SourceRef("/d/rent.md", None, 0.2, "Rent is due on the first day of the month."),
    ]


def test_each_matching_sentence_cites_its_passage(fake_embedder):
    answer = Answer(
        "Employees get 25 days of paid annual leave. The K2 robot charges in 55 minutes.",
        sources(),
        refused=False,
        chunks_used=2,
    )
    cited = attribute(fake_embedder, answer)
    assert cited.text == (
        "Employees get 25 days of paid annual leave [1]. The K2 robot charges in 55 minutes [2]."
    )
    assert cited.cited == [1, 2] and cited.attributed
    assert answer.cited == [] and not answer.attributed  # the original is left as it was


def test_only_passages_the_model_saw_are_cited(fake_embedder):
    answer = Answer("Rent is due on the first day of the month.", sources(), False, chunks_used=2)
    assert attribute(fake_embedder, answer) is answer  # source 3 was not in the prompt


def test_unrelated_sentences_cited_answers_and_refusals_are_left_alone(fake_embedder):
    unrelated = Answer("Trains are lovely in the autumn sunshine.", sources(), False, chunks_used=3)
    assert attribute(fake_embedder, unrelated) is unrelated
    cited = Answer("Leave is 25 days [2].", sources(), False, cited=[2], chunks_used=3)
    assert attribute(fake_embedder, cited) is cited
    refused = Answer("Employees get 25 days of paid annual leave.", sources(), True, chunks_used=3)
    assert attribute(fake_embedder, refused) is refused
