"""An answer and its sources as a person checks them: citation badges that match numbered cards,
the supporting sentence highlighted in each card, a relevance label, the page or the passage in
its section, and the original file. Everything drawn from documents or the model is escaped."""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from rag.answer import Answer, SourceRef
from rag.app import App
from rag.errors import UserError
from rag.evidence import marked, relevance
from ui.safe_markdown import escape_text, safe_markdown

NOT_IN_DOCUMENTS = "Not in your documents"
STOPPED = "Stopped before the end; the text so far is kept."
RELEVANCE_COLOURS = {"strong": "green", "partial": "orange", "weak": "gray"}
# `[1]` or `[1, 2]` as safe_markdown escapes it.
ESCAPED_CITATION = re.compile(r"\\\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\\\]")


def badge(number: int) -> str:
    return f":blue-badge[{number}]"


def badged(text: str, n_sources: int) -> str:
    """The answer as safe markdown, each citation [n] of a real source drawn as badge n."""

    def replace(match: re.Match) -> str:
        numbers = [int(n) for n in match.group(1).split(",")]
        if not all(1 <= n <= n_sources for n in numbers):
            return match.group(0)  # not one of the sources: left as the model wrote it
        return " ".join(badge(n) for n in numbers)

    return ESCAPED_CITATION.sub(replace, safe_markdown(text))


def show_answer(app: App, turn: dict, collection: str, key: str) -> None:
    """The answer text (or the refusal notice) and its source cards."""
    answer: Answer | None = turn.get("answer")
    if answer is None or turn.get("stopped"):
        # Cut short by Stop or by another question. Streamlit may draw the next run before
        # the interrupted one has finished closing its answer: its text so far is kept.
        st.caption(STOPPED)
    if answer is None:
        st.markdown(safe_markdown(turn["content"]))
        return
    if answer.refused:
        why = f" Why: {escape_text(answer.refusal_reason)}." if answer.refusal_reason else ""
        st.warning(
            f"**{NOT_IN_DOCUMENTS}.**{why} The closest passages are below; none of them says this."
        )
    else:
        st.markdown(badged(answer.text, len(answer.sources)))
        if answer.attributed:
            st.caption(
                "The model cited no source; each badge marks the passage its sentence matches."
            )
    evidence = turn.get("evidence") or {}
    numbered = list(enumerate(answer.sources, start=1))
    cited = [(n, s) for n, s in numbered if n in answer.cited]
    others = [(n, s) for n, s in numbered if n not in answer.cited]
    if answer.refused:
        cited, others = [], numbered
    for number, source in cited:
        source_card(app, number, source, evidence.get(number, []), collection, f"{key}-{number}")
    if others:
        label = "Closest passages" if answer.refused or not cited else "Also retrieved"
        with st.expander(f"{label} ({len(others)})", expanded=answer.refused or not cited):
            for number, source in others:
                source_card(
                    app, number, source, evidence.get(number, []), collection, f"{key}-{number}"
                )
    timings = answer.timings
    if timings.get("total_s"):
        speed = f" · {timings['tokens_per_s']:.1f} tokens/s" if "tokens_per_s" in timings else ""
        st.caption(f"Answered in {timings['total_s']:.1f} s{speed}")


def source_card(
    app: App, number: int, source: SourceRef, spans: list, collection: str, key: str
) -> None:
    with st.container(border=True, key=f"card-{key}"):
        label = relevance(source.score, app.settings)
        where = escape_text(source.file_name)
        if source.page:
            where += f" · page {source.page}"
        if source.heading:
            where += f" · {escape_text(source.heading)}"
        colour = RELEVANCE_COLOURS[label]
        st.markdown(
            f"{badge(number)} **{where}** :{colour}-badge[{label} match]",
            help=f"Similarity {source.score:.3f} (cosine; the labels follow the calibrated "
            "refusal thresholds)",
        )
        st.markdown(highlighted(source.text, spans))
        pdf = source.page is not None and source.file.lower().endswith(".pdf")
        left, right = st.columns(2)
        show = left.toggle("Show page" if pdf else "Show in context", key=f"show-{key}")
        original = Path(source.file)
        if original.is_file():
            right.download_button(
                "Download file",
                data=lambda: original.read_bytes(),
                file_name=original.name,
                key=f"download-{key}",
                on_click="ignore",
            )
        if show:
            show_context(app, source, collection, pdf)


def highlighted(text: str, spans: list) -> str:
    """The passage as markdown with its evidence sentences on a yellow background."""
    parts = []
    for piece, lit in marked(text, [tuple(s) for s in spans]):
        flat = " ".join(piece.split())
        if not flat:
            parts.append(" ")
            continue
        escaped = escape_text(flat)
        lead = " " if piece[:1].isspace() else ""
        trail = " " if piece[-1:].isspace() else ""
        parts.append(lead + (f":orange-background[{escaped}]" if lit else escaped) + trail)
    return "".join(parts).strip() or escape_text(text)


def show_context(app: App, source: SourceRef, collection: str, pdf: bool) -> None:
    try:
        if pdf:
            from rag.preview import pdf_page_image

            preview = pdf_page_image(source.file, int(source.page or 1), source.text)
            st.image(
                preview.png,
                width=min(preview.width, 720),
                caption=f"Page {source.page} of {source.file_name}"
                + ("" if preview.boxes else " (the passage could not be located on the page)"),
            )
            return
        parts = app.engine.section(source, collection)
        for text in parts:
            body = highlighted(text, [(0, len(text))] if text == source.text else [])
            st.markdown(body)
    except UserError as exc:
        st.warning(escape_text(str(exc)))
