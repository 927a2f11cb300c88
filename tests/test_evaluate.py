"""Metric computations on a hand-made case whose answers are known."""

import json

import pytest

from rag.evaluate import (
    METRIC_KEYS,
    Outcome,
    Question,
    QuestionFileError,
    gold_rank,
    keywords_found,
    load_questions,
    metrics,
    path_matches,
    report,
)


def q(qid, gold, kind="fact", language="en", keywords=("42",)):
    return Question(qid, f"question {qid}?", list(keywords), gold, language, kind)


def outcome(
    question, retrieved, refused=False, answer=None, cited=(), retrieve_s=0.1, generate_s=None
):
    return Outcome(question, retrieved, refused, retrieve_s, answer, list(cited), generate_s)


def test_path_matching_is_on_component_boundaries():
    assert path_matches("/data/docs/sqlite/faq.html", "docs/sqlite/faq.html")
    assert path_matches("C:\\data\\docs\\faq.html", "docs/faq.html")
    assert not path_matches("/data/mydocs/faq.html", "docs/faq.html")


def test_gold_rank_file_and_page_level():
    retrieved = [("/x/a.pdf", 3), ("/x/b.html", None), ("/x/a.pdf", 7)]
    gold = [("a.pdf", 7)]
    assert gold_rank(retrieved, gold, pages=False) == 1
    assert gold_rank(retrieved, gold, pages=True) == 3
    assert gold_rank(retrieved, [("c.md", None)], pages=False) is None
    assert (
        gold_rank([("/x/b.html", None)] * 12 + [("/x/c.md", None)], [("c.md", None)], pages=False)
        is None
    )


def test_metrics_on_a_known_case():
    q1, q2, q3, q4 = (
        q("1", [("a.md", None)]),
        q("2", [("b.pdf", 4)]),
        q("3", [("c.md", None)]),
        q("4", [("d.md", None)]),
    )
    u1, u2 = q("u1", [], kind="unanswerable"), q("u2", [], kind="unanswerable")
    outcomes = [
        outcome(q1, [("/d/a.md", None)]),  # rank 1
        outcome(
            q2, [("/d/x.md", None), ("/d/b.pdf", 9), ("/d/b.pdf", 4)]
        ),  # file rank 2, page rank 3
        outcome(q3, [("/d/x.md", None)] * 4 + [("/d/c.md", None)]),  # rank 5
        outcome(q4, [("/d/x.md", None)] * 10, refused=True),  # missed, falsely refused
        outcome(u1, [("/d/a.md", None)], refused=True),
        outcome(u2, [("/d/a.md", None)], refused=False),
    ]
    m = metrics(outcomes)
    assert m["hit@1"] == 0.25
    assert m["hit@3"] == 0.5
    assert m["hit@5"] == 0.75
    assert m["mrr@10"] == round((1 + 1 / 2 + 1 / 5) / 4, 4)
    assert m["page_hit@5"] == 0.75
    assert m["page_mrr@10"] == round((1 + 1 / 3 + 1 / 5) / 4, 4)
    assert m["refusal_rate"] == 0.5
    assert m["false_refusal_rate"] == 0.25
    assert m["keyword_accuracy"] is None and m["generate_p50_s"] is None
    assert set(METRIC_KEYS) <= set(m)


def test_keyword_and_citation_accuracy_and_latency():
    q1, q2 = (
        q("1", [("a.md", None)], keywords=["100 points"]),
        q("2", [("b.md", None)], keywords=["alpha", "beta"]),
    )
    outcomes = [
        outcome(
            q1,
            [("/d/a.md", None)],
            answer="It samples 100  Points [1].",
            cited=[("/d/a.md", None)],
            generate_s=2.0,
        ),
        outcome(
            q2,
            [("/d/b.md", None)],
            answer="only alpha",
            cited=[("/d/a.md", None)],
            generate_s=4.0,
            retrieve_s=0.3,
        ),
    ]
    m = metrics(outcomes)
    assert m["keyword_accuracy"] == 0.5
    assert m["citation_accuracy"] == 0.5
    assert m["generate_p50_s"] in (2.0, 4.0) and m["generate_p95_s"] == 4.0
    assert m["retrieve_p95_s"] == 0.3
    assert keywords_found("Use `git rm --cached`", ["git rm --cached"])


def test_report_groups_by_language_and_kind():
    outcomes = [
        outcome(q("1", [("a.md", None)], language="id"), [("/d/a.md", None)]),
        outcome(q("2", [("a.md", None)], kind="number"), []),
    ]
    data = report(outcomes)
    assert set(data) == {"overall", "refused_by", "by_language", "by_kind", "questions"}
    assert data["by_language"]["id"]["hit@1"] == 1.0 and data["by_language"]["en"]["hit@1"] == 0.0
    assert data["questions"][1]["rank"] is None and data["questions"][0]["rank"] == 1


def test_load_questions_reads_the_devset_schema(tmp_path):
    path = tmp_path / "q.jsonl"
    rows = [
        {
            "id": "a",
            "question": "Q?",
            "answer_keywords": ["k"],
            "source_file": "docs/a.pdf",
            "page": 3,
            "language": "en",
            "kind": "number",
        },
        {
            "id": "b",
            "question": "Q2?",
            "answer_keywords": ["k", "l"],
            "source_file": "docs/a.md",
            "page": None,
            "source_files": ["docs/a.md", "docs/b.pdf"],
            "pages": [None, 7],
            "language": "en",
            "kind": "multi-hop",
        },
        {
            "id": "c",
            "question": "Q3?",
            "answer_keywords": [],
            "source_file": None,
            "page": None,
            "language": "id",
            "kind": "unanswerable",
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    questions = load_questions(path)
    assert questions[0].gold == [("docs/a.pdf", 3)]
    assert questions[1].gold == [("docs/a.md", None), ("docs/b.pdf", 7)]
    assert not questions[2].answerable and questions[2].gold == []
    path.write_text('{"id": "x"}\n')
    with pytest.raises(QuestionFileError, match=":1: not a valid question"):
        load_questions(path)
