"""Follow-up or new topic, with the real embedding model on sample_docs: a new topic is searched on
its own, a follow-up together with the earlier question (rag.followup)."""

import pytest

from rag.app import build_app
from rag.followup import search_query
from rag.settings import load_settings

pytestmark = pytest.mark.integration

LEAVE = "How many days of paid annual leave do employees get?"
ROBOT = "Berapa kecepatan maksimum robot K2 di zona pejalan kaki?"

# (earlier question, question, the file that answers the question)
NEW_TOPICS = [
    (
        "What does error code E-402 mean?",
        "How long is the probation period?",
        "onboarding-checklist.md",
    ),
    (
        "Berapa lama pelatihan operator K2?",
        "What is the mileage rate for using my own car?",
        "employee-handbook.pdf",
    ),
    (
        "What is the learning budget per year?",
        "Apa arti lampu status biru berdenyut?",
        "panduan-keselamatan.md",
    ),
    (
        "When was firmware 3.0.0 released?",
        "Berapa jarak yang harus dijaga pengemudi forklift di belakang robot?",
        "panduan-keselamatan.md",
    ),
]
FOLLOW_UPS = [
    (LEAVE, "And how many of them can be carried over?", "employee-handbook.pdf"),
    (ROBOT, "Dan di zona pengisian dan perawatan?", "panduan-keselamatan.md"),
    ("What is the maximum payload of the K2?", "And how much can it tow?", "k2-robot-specs.docx"),
    ("What is the docking accuracy of the K2?", "And its noise level?", "k2-robot-specs.docx"),
    (
        "How long is the probation period?",
        "Who holds the review meeting for it?",
        "onboarding-checklist.md",
    ),
    (
        "Berapa jarak aman minimal dari robot yang sedang bergerak?",
        "Bagaimana dengan stasiun pengisian daya?",
        "panduan-keselamatan.md",
    ),
]


@pytest.fixture(scope="module")
def searches(sample_home):
    """A search over sample_docs with the real embedding model, counting its calls."""
    engine = build_app(load_settings(home=sample_home)).engine
    calls: list[str] = []

    def search(query: str):
        calls.append(query)
        return engine.retrieve(query)

    search.calls = calls
    return search


def files(result) -> list[str]:
    return [source.file.rsplit("/", 1)[-1] for source in result.retrieval.sources]


def test_a_new_topic_is_searched_on_its_own(searches):
    result = search_query(ROBOT, [LEAVE], searches)
    assert not result.follows_up and result.query == ROBOT
    assert files(result)[0] == "panduan-keselamatan.md", files(result)
    assert "employee-handbook.pdf" not in files(result)[:3], files(result)


@pytest.mark.parametrize(("earlier", "question", "answer_file"), NEW_TOPICS)
def test_more_new_topics_in_either_language(searches, earlier, question, answer_file):
    result = search_query(question, [earlier], searches)
    assert not result.follows_up
    assert files(result)[0] == answer_file, files(result)


@pytest.mark.parametrize(("earlier", "question", "answer_file"), FOLLOW_UPS)
def test_a_follow_up_finds_the_earlier_topic(searches, earlier, question, answer_file):
    result = search_query(question, [LEAVE, earlier], searches)
    assert result.follows_up and result.query == f"{earlier} {question}"
    assert files(result)[0] == answer_file, files(result)
    assert not result.retrieval.refused


def test_searches_once_for_a_first_question_and_twice_for_a_later_one(searches):
    searches.calls.clear()
    search_query(LEAVE, [], searches)
    assert searches.calls == [LEAVE]
    search_query(ROBOT, [LEAVE], searches)
    assert searches.calls == [LEAVE, ROBOT, f"{LEAVE} {ROBOT}"]
