"""Is a question a follow-up? Search it alone and joined with the earlier question; keep the join
only when it finds clearly closer passages, the more readily the shorter the question is.

Why: a follow-up ("And its default value?") leaves its subject in the earlier question, so joining
finds much closer passages than the question alone, while a new topic already finds its passages
alone and joining two subjects only dilutes the match. Scores and lengths only: no language rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.retrieve import Retrieval

# Rise of the best passage's cosine similarity that makes a question as long as the earlier one a
# follow-up. With all-MiniLM-L6-v2 on sample_docs and the development set, joining gained a median
# 0.29 (up to 0.65) on 48 follow-ups and at most 0.18 on 76 changes of topic (median -0.05).
# Another embedding model has another cosine scale: pass `min_gain` to recalibrate.
MIN_GAIN = 0.2


@dataclass
class FollowUp:
    """The retrieval to answer from, the query that found it, and whether the earlier question was
    joined to it (the prompt then shows the model that question too)."""

    retrieval: Retrieval
    query: str
    follows_up: bool


def search_query(
    question: str,
    earlier: Sequence[str],
    retrieve: Callable[[str], Retrieval],
    min_gain: float = MIN_GAIN,
) -> FollowUp:
    """Retrieve for `question`, joined with the last of the `earlier` questions (oldest first) when
    it follows up on it. One retrieval without an earlier question, two with one."""
    alone = retrieve(question)
    previous = next((q.strip() for q in reversed(earlier) if q.strip()), "")
    if not previous or not question.strip():
        return FollowUp(alone, question, False)
    query = joined_query(previous, question)
    together = retrieve(query)
    if follows_up(question, previous, alone, together, min_gain):
        return FollowUp(together, query, True)
    return FollowUp(alone, question, False)


def joined_query(previous: str, question: str) -> str:
    return f"{previous.strip()} {question.strip()}"


def follows_up(
    question: str,
    previous: str,
    alone: Retrieval,
    together: Retrieval,
    min_gain: float = MIN_GAIN,
) -> bool:
    """True when joining raises the best similarity by at least `min_gain`, scaled down by the
    question's length relative to the earlier one (in characters, so any script counts alike)."""
    gain = together.best_score - alone.best_score
    if gain <= 0:
        return False
    return gain >= min_gain * relative_length(question, previous)


def relative_length(question: str, previous: str) -> float:
    """The question's length as a share of the earlier question's, at most 1."""
    mine, theirs = len(" ".join(question.split())), len(" ".join(previous.split()))
    return min(1.0, mine / theirs) if theirs else 1.0
