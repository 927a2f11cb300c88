"""Each refusal signal on hand-made passages: one that names the thing without the asked fact,
one that states it (bag-of-words embedding, so only the checks' logic is tested)."""

from __future__ import annotations

import pytest

from rag.answer import SourceRef
from rag.answerability import focus, judge, key_terms, missing_terms, read_evidence
from rag.settings import load_settings
from tests.conftest import FakeEmbedding

EMBEDDER = FakeEmbedding()


def source(text: str, heading: str = "") -> SourceRef:
    return SourceRef(file="docs/guide.md", page=None, score=0.8, text=text, heading=heading)


def signals(question: str, *texts: str):
    return read_evidence(
        question,
        [source(t) for t in texts],
        EMBEDDER.get_query_embedding(question),
        EMBEDDER.get_text_embedding_batch,
        lambda word: 1.0,
    )


def settings(**changes):
    return load_settings().model_copy(update=changes)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many retries does the client make?", "number"),
        ("What TCP port does the daemon listen on by default?", "number"),
        ("Berapa ruang disk yang dibutuhkan?", "number"),
        ("How much does the premium plan cost per seat?", "money"),
        ("Which release first shipped the worktree command?", "version"),
        ("When was version 5.9 released?", "date"),
        ("Kapan proyek ini dimulai?", "date"),
        ("Which option turns on verbose logging?", "name"),
        ("Where does the tool keep its cache?", "name"),
        ("When writing the image to a stick, should I use a partition?", None),
        ("Why is the index rebuilt after a removal?", None),
    ],
)
def test_answer_type_from_the_wording(question, kind):
    assert focus(question).answer_type == kind


def test_default_and_quantity_are_read_from_the_question():
    asked = focus("By default, how many lines of context does diff show?")
    assert asked.wants_default and asked.quantity == ("lines", "context")
    assert "second" in focus("How long does the cache keep a password?").quantity
    assert not focus("How many lines does diff show?").wants_default


def test_key_terms_are_identifiers_versions_and_quoted_words():
    terms = key_terms(
        'Does LXQt honour SystemMaxUse=, --dry-run, PIP_TIMEOUT and "wet mode" in 3.1.1?'
    )
    assert terms == ("LXQt", "SystemMaxUse", "dry-run", "PIP_TIMEOUT", "3.1.1", "wet mode")
    assert key_terms("I'm asking what the port is, don't you know?") == ()


def test_key_terms_include_codes_and_hyphenated_words_not_plurals():
    terms = key_terms("Does error E-305 stop long-distance mode? Berkas-berkas mana?")
    assert terms == ("E-305", "long-distance")


def test_missing_terms_match_whole_versions_and_spelt_out_compounds():
    vocabulary = {
        "3",
        "1",
        "3.1.3",
        "hard",
        "drive",
        "rfc8878",
        "lxde",
        "long",
        "distance",
        "e-214",
    }
    text = "Hard Drive: 4 GB. A long range helps over distance. Error E-214. Carry-over: 5 days."
    terms = ("3.1.1", "hard-drive", "RFC", "LXQt", "long-distance", "E-305", "carried-over")
    assert missing_terms(terms, vocabulary, text) == ["3.1.1", "LXQt", "long-distance", "E-305"]


def test_key_term_check_refuses_a_question_about_an_unmentioned_identifier():
    passage = "The journal keeps logs in /var/log/journal. MaxFileSec rotates files after a month."
    asked = "What is the default of SystemMaxUse for the journal?"
    verdict = judge(signals(asked, passage), settings())
    assert verdict.refused and verdict.signal == "key_terms"
    assert "'SystemMaxUse'" in verdict.reason
    stated = "SystemMaxUse defaults to 10% of the file system size for the journal."
    assert judge(signals(asked, stated), settings()).signal != "key_terms"


def test_default_check_needs_a_sentence_stating_a_default():
    asked = "By default, how many seconds does the client wait before a timeout?"
    mentions_setting = (
        "The client wait can be changed with the timeout setting. "
        "Set it to 60 seconds before a slow upload."
    )
    states_default = "By default the client waits 15 seconds before a timeout."
    assert not signals(asked, mentions_setting).default_stated
    verdict = judge(signals(asked, mentions_setting), settings())
    assert verdict.refused and verdict.signal == "default"
    assert verdict.reason == "no passage states the default value asked for"
    assert signals(asked, states_default).default_stated
    assert not judge(signals(asked, states_default), settings(refuse_min_support=0)).refused


@pytest.mark.parametrize(
    ("asked", "without", "stated", "reason"),
    [
        (
            "Which release of the tool added the worktree command?",
            "The worktree command manages several working trees attached to one repository.",
            "The worktree command was added in release 2.5 of the tool.",
            "no passage states the asked version",
        ),
        (  # a number, but not of what is counted
            "How many lines of context does the unified format show?",
            "The unified format shows changes compactly. It was added in 1990.",
            "The unified format shows 3 lines of context around each change.",
            "no passage states the asked number",
        ),
        (
            "How much does the CarePlus plan cost per robot?",
            "CarePlus extends the warranty of each robot to 60 months.",
            "CarePlus costs EUR 1,200 per robot per year.",
            "no passage states the asked amount of money",
        ),
    ],
)
def test_answer_type_check_needs_a_value_of_the_asked_kind(asked, without, stated, reason):
    lenient = settings(refuse_min_support=0, refuse_min_typed_support=0.3)
    missing = judge(signals(asked, without), lenient)
    assert missing.refused and missing.signal == "answer_type" and missing.reason == reason
    assert signals(asked, stated).typed.text == stated
    assert not judge(signals(asked, stated), lenient).refused


def test_support_is_the_best_sentence_not_the_whole_passage():
    asked = "How do I rotate the signing keys?"
    on_topic = (
        "Signing keys live in the vault. Keys are created at install time. "
        "Rotate the signing keys with `keys rotate` once a year."
    )
    best = signals(asked, on_topic).best
    assert best.text.startswith("Rotate the signing keys")
    unrelated = "The vault lives on the first floor. Visitors sign in at reception."
    verdict = judge(signals(asked, unrelated), settings(refuse_min_support=0.5))
    assert verdict.refused and verdict.signal == "support"
    assert not judge(signals(asked, on_topic), settings(refuse_min_support=0.5)).refused


def test_checks_can_be_turned_off():
    asked = "What is the default of SystemMaxUse?"
    off = settings(
        refuse_missing_terms=False,
        refuse_unstated_default=False,
        refuse_min_typed_support=-1.0,
        refuse_min_support=-1.0,
    )
    assert not judge(signals(asked, "Nothing about it here."), off).refused


def test_no_passages_means_no_support():
    empty = read_evidence("How many days?", [], [0.0] * 256, EMBEDDER.get_text_embedding_batch, len)
    assert empty.best is None and empty.support == 0.0
    assert judge(empty, settings()).refused
