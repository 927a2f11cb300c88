"""rag.followup: when the earlier question is joined to the search, with fake retrievals."""

import pytest

from rag.answer import SourceRef
from rag.followup import MIN_GAIN, FollowUp, follows_up, relative_length, search_query
from rag.retrieve import Retrieval

LEAVE = "How many days of paid annual leave do employees get?"
ROBOT = "What is the top speed of the robot in the pedestrian zone?"


def found(file: str, best: float, refused: bool = False) -> Retrieval:
    source = SourceRef(file=file, page=None, score=best, text=f"text of {file}")
    return Retrieval([source], best, 0.5, refused)


class FakeSearch:
    """Answers each query from a table, and records the queries it was asked."""

    def __init__(self, table: dict[str, Retrieval]) -> None:
        self.table = table
        self.queries: list[str] = []

    def __call__(self, query: str) -> Retrieval:
        self.queries.append(query)
        return self.table[query]


def test_first_question_is_searched_once_on_its_own():
    search = FakeSearch({LEAVE: found("handbook.pdf", 0.7)})
    result = search_query(LEAVE, [], search)
    assert result == FollowUp(search.table[LEAVE], LEAVE, False)
    assert search.queries == [LEAVE]


def test_blank_earlier_questions_count_as_none():
    search = FakeSearch({LEAVE: found("handbook.pdf", 0.7)})
    result = search_query(LEAVE, ["", "   \n"], search)
    assert not result.follows_up and result.query == LEAVE
    assert search.queries == [LEAVE]


def test_change_of_topic_is_searched_on_its_own():
    search = FakeSearch(
        {
            ROBOT: found("safety.md", 0.71),
            f"{LEAVE} {ROBOT}": found("handbook.pdf", 0.61),
        }
    )
    result = search_query(ROBOT, [LEAVE], search)
    assert not result.follows_up
    assert result.query == ROBOT
    assert result.retrieval.sources[0].file == "safety.md"
    assert search.queries == [ROBOT, f"{LEAVE} {ROBOT}"]  # one extra search, no more


def test_follow_up_is_searched_with_the_earlier_question():
    question = "And how many of them can be carried over?"
    joined = f"{LEAVE} {question}"
    search = FakeSearch(
        {question: found("faq.html", 0.20, refused=True), joined: found("handbook.pdf", 0.58)}
    )
    result = search_query(question, [ROBOT, LEAVE], search)
    assert result.follows_up
    assert result.query == joined  # the last earlier question, not older ones
    assert result.retrieval.sources[0].file == "handbook.pdf"
    assert not result.retrieval.refused


def test_refused_question_stays_refused_when_joining_barely_helps():
    question = "What is the default maximum disk space the journal may use?"
    previous = "Which RFC specifies the compression format?"
    search = FakeSearch(
        {
            question: found("journal.md", 0.45, refused=True),
            f"{previous} {question}": found("rfc.md", 0.50, refused=True),
        }
    )
    result = search_query(question, [previous], search)
    assert not result.follows_up
    assert result.retrieval.refused and result.retrieval.sources[0].file == "journal.md"


def test_joining_that_lowers_the_best_score_is_never_a_follow_up():
    search = FakeSearch({"Why?": found("a.md", 0.50), f"{LEAVE} Why?": found("b.md", 0.49)})
    assert not search_query("Why?", [LEAVE], search).follows_up


@pytest.mark.parametrize(
    ("question", "expected"),
    # Much shorter than the earlier question: a small gain is enough; as long: it is not.
    [
        ("And the GNOME one?", True),
        ("What is the top speed of the K2 robot when it carries a full load?", False),
    ],
)
def test_the_shorter_the_question_the_smaller_the_gain_it_needs(question, expected):
    previous = "How much disk space does installing the KDE Plasma desktop task take?"
    alone, together = found("a.md", 0.45), found("b.md", 0.45 + MIN_GAIN / 2)
    assert follows_up(question, previous, alone, together) is expected


def test_a_question_longer_than_the_earlier_one_needs_the_full_gain_only():
    question = "And what is its default value, and how far can it be raised at compile time?"
    previous = "What is SQLITE_MAX_COLUMN?"
    alone = found("cache.md", 0.37)
    assert follows_up(question, previous, alone, found("columns.md", 0.37 + MIN_GAIN + 0.01))
    assert not follows_up(question, previous, alone, found("columns.md", 0.37 + MIN_GAIN - 0.01))


def test_min_gain_can_be_recalibrated_for_another_model():
    question, previous = "And its default value?", "What is the column limit?"
    alone, together = found("a.md", 0.80), found("b.md", 0.85)
    assert not follows_up(question, previous, alone, together)
    assert follows_up(question, previous, alone, together, min_gain=0.05)


def test_relative_length_counts_characters_and_ignores_spacing():
    assert relative_length("ab  cd", "abcdefghijk") == pytest.approx(5 / 11)
    assert relative_length("一二三", "一二三四五六") == pytest.approx(0.5)  # any script
    assert relative_length("a much longer question", "short") == 1.0
    assert relative_length("x", "") == 1.0
