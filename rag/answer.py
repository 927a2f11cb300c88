"""Prompt building, context budget, citations and the Answer type."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.answerability import Sentence

# Kept constant and first, so the model's KV cache reuses it across questions.
SYSTEM_PROMPT = (
    "You are a careful assistant that answers questions using only the numbered sources "
    "provided by the user. Cite the sources you use with their numbers in square brackets, "
    "like [1] or [2]. If the sources do not contain the answer, reply exactly: "
    '"The documents do not contain the answer." Do not use outside knowledge. '
    "Answer in the language of the question, briefly."
)
REFUSAL_TEXT = "The documents do not contain the answer."
# Phrases that mean the model declined; checked case-insensitively.
REFUSAL_PATTERNS = [
    r"documents? do(?:es)? not contain",
    r"documents? don'?t contain",
    r"sources? do(?:es)? not contain",
    r"not (?:mentioned|found|provided|included) in the (?:documents|sources|context)",
    r"(?:cannot|can't|could not|couldn't) find (?:the answer|any information|this)",
    r"dokumen tidak (?:memuat|berisi|mengandung)",
]
# Why an answer was refused when the evidence checks let the question through.
MODEL_REFUSED = "the model found no answer in the passages"
NOTHING_GIVEN = "no passage fitted in the model's context"
CITATION_RE = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


@dataclass
class SourceRef:
    """One retrieved passage: where it comes from, how well it matched, and its text."""

    file: str
    page: int | None
    score: float
    text: str
    title: str = ""
    heading: str = ""
    chunk_id: str = ""

    @property
    def file_name(self) -> str:
        return Path(self.file).name

    def label(self) -> str:
        return f"{self.file_name}, page {self.page}" if self.page else self.file_name

    def public(self) -> dict:
        """The JSON shape: file, page, score, text (and title/heading when known)."""
        data = asdict(self)
        data.pop("chunk_id")
        data["score"] = round(float(self.score), 4)
        return data


@dataclass
class Answer:
    """A finished answer with its sources (best first) and where the time went."""

    text: str
    sources: list[SourceRef]
    refused: bool
    timings: dict[str, float] = field(default_factory=dict)
    cited: list[int] = field(default_factory=list)
    chunks_used: int = 0
    attributed: bool = False  # the citations were added by matching, not written by the model
    refusal_reason: str | None = None  # one line: why the documents were judged not to answer
    prompt_tokens: int = 0  # what the model read before answering (not in the JSON shape)
    completion_tokens: int = 0  # what the model wrote (not in the JSON shape)

    def to_json(self) -> dict:
        return {
            "answer": self.text,
            "sources": [s.public() for s in self.sources],
            "refused": self.refused,
            "refusal_reason": self.refusal_reason,
            "cited": self.cited,
            "chunks_used": self.chunks_used,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def format_context(sources: list[SourceRef]) -> str:
    blocks = []
    for number, source in enumerate(sources, start=1):
        where = source.label()
        if source.heading:
            where += f" — {source.heading}"
        blocks.append(f"[{number}] ({where})\n{source.text.strip()}")
    return "\n\n".join(blocks)


def build_messages(question: str, sources: list[SourceRef]) -> list[dict[str, str]]:
    """System prompt first (constant), then the numbered context, then the question."""
    user = f"Sources:\n\n{format_context(sources)}\n\nQuestion: {question.strip()}"
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user},
    ]


def fit_sources(
    question: str,
    sources: list[SourceRef],
    count_tokens: Callable[[str], int],
    budget: int,
) -> list[SourceRef]:
    """Keep the best-ranked sources whose prompt fits `budget` tokens; drop the worst first."""
    kept = list(sources)
    while kept:
        messages = build_messages(question, kept)
        if sum(count_tokens(m["content"]) + 8 for m in messages) <= budget:
            return kept
        kept.pop()
    return kept


def trim_sources(
    sources: list[SourceRef], sentences: Sequence[Sentence], margin: float
) -> list[SourceRef]:
    """Each passage cut to the sentences that carry the evidence, for a shorter prompt: those whose
    support (similarity to the question plus the share of its words around them) is within
    `margin` of the best sentence of all passages, and each passage's own best, each with the
    sentence before and after it; cut runs are marked with "…". A passage whose sentences were
    not read is kept whole. The sources shown to the reader are not changed."""
    from rag.evidence import sentence_spans

    if not sentences:
        return sources
    best = max(s.support for s in sentences)
    trimmed = []
    for number, source in enumerate(sources):
        mine = [s for s in sentences if s.source == number]
        if not mine or len(mine) < len(sentence_spans(source.text)):
            trimmed.append(source)
            continue
        top = max(range(len(mine)), key=lambda i: mine[i].support)
        keep = {i for i, s in enumerate(mine) if s.support >= best - margin} | {top}
        keep = {j for i in keep for j in (i - 1, i, i + 1) if 0 <= j < len(mine)}
        runs: list[list[int]] = []
        for i in sorted(keep):
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        pieces = [source.text[mine[run[0]].span[0] : mine[run[-1]].span[1]] for run in runs]
        text = " … ".join(pieces)
        if runs[0][0] > 0:
            text = "… " + text
        if runs[-1][-1] < len(mine) - 1:
            text += " …"
        trimmed.append(replace(source, text=text))
    return trimmed


def cited_numbers(text: str, n_sources: int) -> list[int]:
    """Distinct source numbers cited as [n] or [n, m], in order of first use, within range."""
    seen: list[int] = []
    for group in CITATION_RE.findall(text):
        for part in group.split(","):
            number = int(part)
            if 1 <= number <= n_sources and number not in seen:
                seen.append(number)
    return seen


def is_refusal(text: str) -> bool:
    lowered = text.lower()
    return not lowered.strip() or any(re.search(p, lowered) for p in REFUSAL_PATTERNS)
