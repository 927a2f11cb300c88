"""Evidence for a reader: which sentence of each source supports the answer, and how good a match
each source is.

The sentences are chosen with the embedding model already loaded (no extra model, no network):
each source's sentences are compared with what the answer says on that source's authority — the
answer's sentences that cite it — or with the question when the answer cites nothing from it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from dataclasses import replace

from rag.answer import CITATION_RE, Answer, cited_numbers
from rag.settings import Settings

# A sentence this much (in cosine) below its source's best is still marked when per_source > 1.
MARGIN = 0.05
# Shorter pieces (headings, "Page 3", table labels) are candidates only when a source has nothing longer.
MIN_WORDS = 4

# Words that end with a full stop without ending the sentence (English and Indonesian).
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs cf fig figs no nos nr approx ca vol pp ed eds e.g i.e a.m p.m "
    "jl bpk sdr yth hlm tel tlp tgl kec kab".split()
)
# Western terminals need whitespace (or the end) after them, so "3.5", "v1.2" and "example.com" stay
# whole; closing quotes and brackets stay with their sentence.
WESTERN_END = re.compile(r"[.!?;]+[\"'\u2019\u201d)\]\u00bb]*(?=\s|$)")
# Chinese and Japanese terminals need no space after them.
CJK_END = re.compile(r"[\u3002\uff01\uff1f\uff1b]+[\u300d\u300f\u201d\u2019\uff09]*")
# A line that starts a list item, a table row, a heading or a quote starts a new piece.
ITEM_START = re.compile(
    r"\s*(?:[-*+\u2022\u00b7\u25aa\u25e6\u2023\u2013\u2014]\s|\d{1,3}[.)](?:\s|$)|[a-z][.)]\s|\||#{1,6}\s|>)"
)
# A line at least this long that runs on without punctuation is a wrapped paragraph line.
WRAPPED_LINE = 40
LEADING_MARKERS = re.compile(r"\s*(?:\[\d{1,3}(?:\s*,\s*\d{1,3})*\]\s*)+")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text`, in order, trimmed, without empty pieces.

    Sentences end at . ! ? ; (followed by a space), at 。！？；, at blank lines, and at line breaks that
    start a list item, a table row or a heading, or that end a short line (a title). A line break
    inside a wrapped paragraph does not end a sentence; nor do decimals or common abbreviations.
    """
    cuts = {0, len(text)}
    cuts.update(_line_cuts(text))
    for match in WESTERN_END.finditer(text):
        if _ends_sentence(text, match.start(), match.end()):
            cuts.add(match.end())
    cuts.update(match.end() for match in CJK_END.finditer(text))
    spans = []
    ordered = sorted(cuts)
    for start, end in itertools.pairwise(ordered):
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end and re.search(r"\w", text[start:end]):
            spans.append((start, end))
    return spans


def _line_cuts(text: str) -> list[int]:
    cuts = []
    previous = ""
    position = 0
    for line in text.splitlines(keepends=True):
        if position and _hard_break(previous, line):
            cuts.append(position)
        previous = line
        position += len(line)
    return cuts


def _hard_break(previous: str, line: str) -> bool:
    before, after = previous.strip(), line.strip()
    if not before or not after or ITEM_START.match(line):
        return True
    if after[0].islower():
        return False  # the sentence goes on ("... UK public\nholidays.")
    if before[-1] in ".!?:;\u3002\uff01\uff1f\uff1a\uff1b":
        return True
    return len(before) < WRAPPED_LINE or not (before[-1].isalnum() or before[-1] in ",-")


def _ends_sentence(text: str, start: int, end: int) -> bool:
    if text[start] != ".":
        return True  # ! ? ;
    if text[end : end + 40].lstrip()[:1].islower():
        return False  # "e.g. the", "approx. three", "wait... then"
    if text[start : start + 2] == "..":
        return True
    line_start = text.rfind("\n", 0, start) + 1
    words = text[line_start:start].split()
    if not words:
        return False
    word = words[-1].lstrip("([\"'")
    if word.lower() in ABBREVIATIONS or (len(word) == 1 and word.isupper()):
        return False  # "Dr. Tan", "J. Smith"
    # "2. Annual leave" at the start of a line is a list number, not a sentence
    return not (len(words) == 1 and (word.isdigit() or (len(word) == 1 and word.isalpha())))


def claims_by_source(answer: Answer) -> dict[int, str]:
    """For each source number the answer cites: the answer's sentences citing it, markers removed."""
    claims: dict[int, list[str]] = defaultdict(list)
    count = len(answer.sources)
    bodies: list[str] = []
    for start, end in sentence_spans(answer.text):
        piece = answer.text[start:end]
        lead = LEADING_MARKERS.match(piece)
        if lead and bodies:  # "... 22 days. [1] Next sentence": [1] belongs to the sentence before
            for number in _numbers(lead.group(), count):
                claims[number].append(bodies[-1])
            piece = piece[lead.end() :]
        body = " ".join(CITATION_RE.sub(" ", piece).split())
        body = re.sub(r"\s+([.,;:!?])", r"\1", body)
        bodies.append(body)
        for number in _numbers(piece, count):
            claims[number].append(body)
    return {
        number: " ".join(dict.fromkeys(b for b in texts if re.search(r"\w", b)))
        for number, texts in claims.items()
    }


def _numbers(text: str, count: int) -> list[int]:
    numbers = []
    for match in CITATION_RE.finditer(text):
        numbers.extend(int(n) for n in match.group(1).split(","))
    return [n for n in dict.fromkeys(numbers) if 1 <= n <= count]


def highlight(
    embedder, answer: Answer, question: str, per_source: int = 1
) -> dict[int, list[tuple[int, int]]]:
    """For every source number n: the span(s) in sources[n-1].text that best support the answer.

    A cited source is compared with the answer's sentences citing it; an uncited source, or any
    source of a refused answer or of one citing nothing, with the question. One batch embeds the
    sentences of all sources; `per_source` > 1 adds sentences within MARGIN of the source's best.
    """
    claims = {} if answer.refused else claims_by_source(answer)
    targets = {n: claims.get(n) or question for n in range(1, len(answer.sources) + 1)}
    candidates: dict[int, list[tuple[int, int]]] = {}
    texts: list[str] = []
    for n, source in enumerate(answer.sources, start=1):
        spans = sentence_spans(source.text)
        long_enough = [s for s in spans if len(source.text[s[0] : s[1]].split()) >= MIN_WORDS]
        candidates[n] = long_enough or spans
        texts.extend(" ".join(source.text[a:b].split()) for a, b in candidates[n])
    result: dict[int, list[tuple[int, int]]] = {n: [] for n in targets}
    wanted = {t for n, t in targets.items() if candidates[n] and re.search(r"\w", t)}
    if not wanted:
        return result
    queries = {target: embedder.get_query_embedding(target) for target in sorted(wanted)}
    unique = list(dict.fromkeys(texts))  # neighbouring chunks overlap: embed each sentence once
    by_text = dict(zip(unique, embedder.get_text_embedding_batch(unique), strict=True))
    vectors = iter(by_text[text] for text in texts)
    for n, spans in candidates.items():
        scored = [(cosine(queries.get(targets[n]), next(vectors)), span) for span in spans]
        if not scored or targets[n] not in queries:
            continue
        scored.sort(key=lambda item: -item[0])
        best = scored[0][0]
        chosen = [span for score, span in scored[: max(per_source, 1)] if score >= best - MARGIN]
        result[n] = sorted(chosen)
    return result


# How close (cosine, all-MiniLM-L6-v2) an answer sentence must be to a passage sentence for
# `attribute` to cite that passage: paraphrases of one fact score about 0.5-0.9, unrelated
# sentences on the same topic mostly below 0.4.
MIN_SUPPORT = 0.45


def attribute(embedder, answer: Answer, min_support: float = MIN_SUPPORT) -> Answer:
    """An answer that cites nothing, with [n] added after each of its sentences that a passage
    the model was given supports (the passage holding the closest sentence, when close enough).

    Small models often answer from the passages without citing them; matching lets a reader see
    where each sentence comes from. The Answer says so (`attributed`). Answers that cite, refusals
    and answers without passages come back unchanged.
    """
    used = answer.sources[: answer.chunks_used]
    if answer.refused or answer.cited or not used:
        return answer
    claims = [
        (start, end)
        for start, end in sentence_spans(answer.text)
        if len(answer.text[start:end].split()) >= MIN_WORDS
    ]
    if not claims:
        return answer
    owners: list[int] = []
    texts: list[str] = []
    for n, source in enumerate(used, start=1):
        for a, b in sentence_spans(source.text):
            owners.append(n)
            texts.append(" ".join(source.text[a:b].split()))
    if not texts:
        return answer
    vectors = embedder.get_text_embedding_batch(texts)
    text = answer.text
    for start, end in reversed(claims):  # from the end, so earlier offsets stay valid
        claim = embedder.get_query_embedding(" ".join(text[start:end].split()))
        score, n = max((cosine(claim, v), owner) for v, owner in zip(vectors, owners, strict=True))
        if score < min_support:
            continue
        cut = end - 1 if text[end - 1] in ".!?;:" else end
        text = f"{text[:cut]} [{n}]{text[cut:]}"
    cited = cited_numbers(text, len(used))
    if not cited:
        return answer
    return replace(answer, text=text, cited=cited, attributed=True)


def cosine(a, b) -> float:
    if a is None:
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def relevance(score: float, settings: Settings) -> str:
    """ "strong", "partial" or "weak" match for a source's retrieval score (cosine).

    The thresholds are the calibrated refusal thresholds (docs/quality.md): at or above
    refuse_unless_similar a passage answers on its own ("strong"); at or above refuse_below it is
    close enough to be used ("partial"); below that it is "weak".
    """
    if score >= settings.refuse_unless_similar:
        return "strong"
    if score >= settings.refuse_below:
        return "partial"
    return "weak"


def marked(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    """`text` cut into (piece, highlighted) runs; spans are clipped, sorted and merged first."""
    merged: list[list[int]] = []
    for start, end in sorted((max(0, a), min(len(text), b)) for a, b in spans):
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    runs: list[tuple[str, bool]] = []
    position = 0
    for start, end in merged:
        if start > position:
            runs.append((text[position:start], False))
        runs.append((text[start:end], True))
        position = end
    if position < len(text):
        runs.append((text[position:], False))
    return runs
