"""`rag eval`: retrieval, grounding and refusal metrics over a JSONL file of questions.

Question schema (one JSON object per line): id, question, answer_keywords, source_file (or
source_files with pages), page, language, kind ("unanswerable" questions have no source).

Matching: a retrieved passage matches a gold document when its stored path ends with the gold
path (separators normalised, on a path-component boundary). File-level metrics (hit@k, mrr@10)
use the file alone; page-level ones (page_hit@5, page_mrr@10) also need the page to be equal where
the question gives one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import UserError

METRIC_KEYS = [
    "hit@1",
    "hit@3",
    "hit@5",
    "mrr@10",
    "page_hit@5",
    "page_mrr@10",
    "keyword_accuracy",
    "citation_accuracy",
    "refusal_rate",
    "false_refusal_rate",
    "retrieve_p50_s",
    "retrieve_p95_s",
    "generate_p50_s",
    "generate_p95_s",
    "prefill_p50_s",
    "prompt_tokens_p50",
]


class QuestionFileError(UserError):
    """The questions file is missing or malformed; the message names the line."""


@dataclass
class Question:
    id: str
    question: str
    keywords: list[str]
    gold: list[tuple[str, int | None]]
    language: str
    kind: str

    @property
    def answerable(self) -> bool:
        return self.kind != "unanswerable" and bool(self.gold)


@dataclass
class Outcome:
    """What the system did for one question."""

    question: Question
    retrieved: list[tuple[str, int | None]]
    refused: bool
    retrieve_s: float
    answer: str | None = None
    cited: list[tuple[str, int | None]] = field(default_factory=list)
    generate_s: float | None = None
    prefill_s: float | None = None  # from the passages found to the answer's first token
    prompt_tokens: int | None = None
    refusal_reason: str | None = None
    check: str | None = None  # the evidence check that refused (topic, key_terms, ...)

    @property
    def rank(self) -> int | None:
        return gold_rank(self.retrieved, self.question.gold, pages=False)

    @property
    def page_rank(self) -> int | None:
        return gold_rank(self.retrieved, self.question.gold, pages=True)

    def to_json(self) -> dict:
        data = {
            "id": self.question.id,
            "language": self.question.language,
            "kind": self.question.kind,
            "rank": self.rank,
            "page_rank": self.page_rank,
            "refused": self.refused,
            "refusal_reason": self.refusal_reason,
            "retrieve_s": round(self.retrieve_s, 4),
            "top": [{"file": f, "page": p} for f, p in self.retrieved[:3]],
        }
        if self.answer is not None:
            data["answer"] = self.answer
            data["keywords_found"] = keywords_found(self.answer, self.question.keywords)
            data["generate_s"] = round(self.generate_s or 0.0, 4)
        return data


def load_questions(path: Path) -> list[Question]:
    if not path.is_file():
        raise QuestionFileError(f"questions file {path} not found")
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            files = item.get("source_files") or (
                [item["source_file"]] if item.get("source_file") else []
            )
            pages = item.get("pages") or [item.get("page")] * len(files)
            questions.append(
                Question(
                    id=str(item.get("id", number)),
                    question=item["question"],
                    keywords=list(item.get("answer_keywords") or []),
                    gold=list(zip(files, pages, strict=True)),
                    language=item.get("language", "en"),
                    kind=item.get("kind", "fact"),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise QuestionFileError(f"{path}:{number}: not a valid question ({exc})") from exc
    if not questions:
        raise QuestionFileError(f"{path} holds no questions")
    return questions


def normalise(path: str) -> str:
    return path.replace("\\", "/").strip("/")


def path_matches(stored: str, gold: str) -> bool:
    stored, gold = normalise(stored), normalise(gold)
    return stored == gold or stored.endswith("/" + gold)


def gold_rank(
    retrieved: list[tuple[str, int | None]],
    gold: list[tuple[str, int | None]],
    pages: bool,
    limit: int = 10,
) -> int | None:
    """1-based rank of the first retrieved passage matching any gold document, within `limit`."""
    for rank, (file, page) in enumerate(retrieved[:limit], start=1):
        for gold_file, gold_page in gold:
            if path_matches(file, gold_file) and (
                not pages or gold_page is None or page == gold_page
            ):
                return rank
    return None


def keywords_found(answer: str, keywords: list[str]) -> bool:
    """Every keyword occurs in the answer (case-insensitive, whitespace normalised)."""
    text = " ".join(answer.lower().split())
    return all(" ".join(k.lower().split()) in text for k in keywords)


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def metrics(outcomes: list[Outcome]) -> dict:
    """The metric object for a group of questions; None where nothing was measured."""
    answerable = [o for o in outcomes if o.question.answerable]
    unanswerable = [o for o in outcomes if not o.question.answerable]

    def share(items: Iterable[bool], total: int) -> float | None:
        return round(sum(items) / total, 4) if total else None

    n = len(answerable)
    generated = [o for o in answerable if o.answer is not None]
    retrieve_times = [o.retrieve_s for o in outcomes]
    generate_times = [o.generate_s for o in outcomes if o.generate_s is not None]
    result = {
        "questions": len(outcomes),
        "hit@1": share((o.rank is not None and o.rank <= 1 for o in answerable), n),
        "hit@3": share((o.rank is not None and o.rank <= 3 for o in answerable), n),
        "hit@5": share((o.rank is not None and o.rank <= 5 for o in answerable), n),
        "mrr@10": round(sum(1 / o.rank for o in answerable if o.rank) / n, 4) if n else None,
        "page_hit@5": share((o.page_rank is not None and o.page_rank <= 5 for o in answerable), n),
        "page_mrr@10": (
            round(sum(1 / o.page_rank for o in answerable if o.page_rank) / n, 4) if n else None
        ),
        "keyword_accuracy": share(
            (keywords_found(o.answer or "", o.question.keywords) for o in generated), len(generated)
        ),
        "citation_accuracy": share(
            (
                any(path_matches(f, g) for f, _ in o.cited for g, _ in o.question.gold)
                for o in generated
            ),
            len(generated),
        ),
        "refusal_rate": share((o.refused for o in unanswerable), len(unanswerable)),
        "false_refusal_rate": share((o.refused for o in answerable), n),
        "retrieve_p50_s": round_or_none(percentile(retrieve_times, 0.5)),
        "retrieve_p95_s": round_or_none(percentile(retrieve_times, 0.95)),
        "generate_p50_s": round_or_none(percentile(generate_times, 0.5)),
        "generate_p95_s": round_or_none(percentile(generate_times, 0.95)),
        "prefill_p50_s": round_or_none(
            percentile([o.prefill_s for o in outcomes if o.prefill_s is not None], 0.5)
        ),
        "prompt_tokens_p50": percentile(
            [o.prompt_tokens for o in outcomes if o.prompt_tokens is not None], 0.5
        ),
    }
    return result


def round_or_none(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def report(outcomes: list[Outcome]) -> dict:
    """Overall, per language and per kind metrics, and one entry per question."""

    def grouped(key: Callable[[Outcome], str]) -> dict:
        groups: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            groups.setdefault(key(outcome), []).append(outcome)
        return {name: metrics(items) for name, items in sorted(groups.items())}

    refused_by: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        if outcome.refused:
            counts = refused_by.setdefault(
                outcome.check or "model", {"unanswerable": 0, "answerable": 0}
            )
            counts["answerable" if outcome.question.answerable else "unanswerable"] += 1
    return {
        "overall": metrics(outcomes),
        "refused_by": refused_by,
        "by_language": grouped(lambda o: o.question.language),
        "by_kind": grouped(lambda o: o.question.kind),
        "questions": [o.to_json() for o in outcomes],
    }


def run(
    engine,
    questions: list[Question],
    collection: str | None,
    k: int,
    generate: bool,
    progress: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """Ask every question: retrieval (top 10 kept for ranks) and, unless told not to, generation."""
    outcomes = []
    for question in questions:
        started = time.perf_counter()
        retrieval = engine.retrieve(question.question, collection, top_k=k)
        retrieve_s = time.perf_counter() - started
        ranked = (
            retrieval
            if k >= 10
            else engine.retrieve(question.question, collection, top_k=10, assess=False)
        )
        outcome = Outcome(
            question=question,
            retrieved=[(s.file, s.page) for s in ranked.sources],
            refused=retrieval.refused,  # decided on the k passages an answer would use
            retrieve_s=retrieve_s,
            refusal_reason=retrieval.reason,
            check=retrieval.check,
        )
        if generate:
            started = time.perf_counter()
            answer = engine.ask(question.question, collection=collection, top_k=k)
            outcome.generate_s = answer.timings.get("generate_s", time.perf_counter() - started)
            outcome.answer = answer.text
            if answer.prompt_tokens:
                outcome.prompt_tokens = answer.prompt_tokens
                outcome.prefill_s = answer.timings.get("prefill_s")
            outcome.refused = answer.refused
            outcome.refusal_reason = answer.refusal_reason
            outcome.check = outcome.check if retrieval.refused else None
            outcome.cited = [
                (answer.sources[n - 1].file, answer.sources[n - 1].page) for n in answer.cited
            ]
        outcomes.append(outcome)
        if progress is not None:
            progress(len(outcomes))
    return outcomes


def format_table(result: dict) -> str:
    """A readable table: one column per group (overall, languages, kinds)."""
    columns = {"overall": result["overall"]}
    columns.update({f"lang={k}": v for k, v in result["by_language"].items()})
    columns.update({f"kind={k}": v for k, v in result["by_kind"].items()})
    names = list(columns)
    width = max(12, *(len(n) for n in names))
    lines = ["metric".ljust(20) + "".join(n.rjust(width + 1) for n in names)]
    for key in ["questions", *METRIC_KEYS]:
        row = key.ljust(20)
        for name in names:
            value = columns[name].get(key)
            row += (
                "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
            ).rjust(width + 1)
        lines.append(row)
    misses = [q for q in result["questions"] if q["rank"] is None and q["kind"] != "unanswerable"]
    if misses:
        lines.append("")
        lines.append("not in the top 10: " + ", ".join(q["id"] for q in misses))
    return "\n".join(lines)
