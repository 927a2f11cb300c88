"""The conversation as a Markdown file, escaped like the page so a viewer loads nothing from it."""

from __future__ import annotations

from rag.answer import Answer
from ui.safe_markdown import escape_text, safe_markdown


def source_line(number: int, answer: Answer) -> str:
    """`[n] file — page p` for source `number` (1-based), as escaped markdown. The `[n]` is
    left as typed: with a space after it and no definitions around, it cannot be a link."""
    source = answer.sources[number - 1]
    page = f" — page {source.page}" if source.page else ""
    return f"[{number}] " + escape_text(f"{source.file_name}{page}")


def conversation_markdown(history: list[dict], collection: str) -> str:
    """Every question and answer of `history`, with each answer's sources, in order."""
    parts = [f"# Conversation with {escape_text(collection)}"]
    asked = 0
    for turn in history:
        if turn["role"] == "user":
            asked += 1
            parts.append(f"## Question {asked}\n\n{safe_markdown(turn['content'])}")
            continue
        parts.append(f"### Answer\n\n{safe_markdown(turn['content'])}")
        answer: Answer | None = turn.get("answer")
        if answer is not None and answer.sources:
            lines = []
            for number, source in enumerate(answer.sources, start=1):
                cited = " (cited)" if number in answer.cited else ""
                where = escape_text(source.file)
                lines.append(f"- {source_line(number, answer)}{cited}: {where}")
            parts.append("Sources:\n\n" + "\n".join(lines))
    return "\n\n".join(parts) + "\n"
