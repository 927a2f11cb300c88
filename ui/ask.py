"""The Ask page: a conversation with the collection. Answers stream in; each one keeps its sources
and evidence, and an answer cut short by a new question or Stop is kept with a note."""

from __future__ import annotations

import time

import streamlit as st

from rag.app import App
from rag.errors import UserError
from ui import state
from ui.cards import badged, show_answer
from ui.library import sample_folder, start_ingest, upload_area, watch_job
from ui.safe_markdown import escape_text, safe_markdown
from ui.transcript import conversation_markdown


def main(app: App) -> None:
    collection = state.collection(app)
    st.title("Ask your documents")
    st.caption("Answers come only from your documents, with the file and page of every source.")
    history = state.history(collection)
    watch_job(app)  # an upload started here, or on the Library page, still running
    if app.engine.document_count(collection) == 0 and not history:
        empty_start(app, collection)
        return
    toolbar(history, collection)
    for number, turn in enumerate(history):
        with st.chat_message(turn["role"]):
            if turn["role"] == "user":
                st.markdown(safe_markdown(turn["content"]))
            elif turn.get("error"):
                st.warning(escape_text(turn["content"]))
            else:
                show_answer(app, turn, collection, key=f"t{number}")
    question = st.chat_input("Ask a question about your documents")
    if question:
        ask(app, history, question, collection)


def toolbar(history: list[dict], collection: str) -> None:
    if not history:
        return
    left, right = st.columns([1, 1])
    left.button(
        "New conversation",
        on_click=history.clear,
        help="Start again; the next question is not read as a follow-up.",
    )
    if any(turn.get("answer") is not None for turn in history):
        right.download_button(
            "Download conversation",
            data=lambda: conversation_markdown(history, collection),  # at click: all of it
            file_name=f"conversation-{collection}.md",
            mime="text/markdown",
            on_click="ignore",
            help="The questions, answers and sources as Markdown; links and images in it are "
            "plain text.",
        )


def ask(app: App, history: list[dict], question: str, collection: str) -> None:
    """Answer a question in the conversation. The assistant's turn is in the history from the
    start and grows with the answer, so a rerun (Stop, or another question) never loses it."""
    earlier = [turn["content"] for turn in history if turn["role"] == "user"]
    history.append({"role": "user", "content": question})
    with st.chat_message("user"):
        st.markdown(safe_markdown(question))
    turn: dict = {"role": "assistant", "content": "", "answer": None, "question": question}
    history.append(turn)
    with st.chat_message("assistant"):
        try:
            with st.spinner("Searching your documents…"):
                stream = app.engine.stream(
                    question, history=earlier, collection=collection, **state.ask_options(app)
                )
        except UserError as exc:
            turn.update(content=str(exc), error=True)
            st.warning(escape_text(str(exc)))
            return
        stop = st.empty()
        stop.button(
            "Stop", key=f"stop-{len(history)}", help="Stop the answer; the text so far is kept."
        )
        waiting = st.empty()
        ahead = app.engine.queue_length if stream.uses_model else 0
        if ahead:
            waiting.info(
                f"{ahead} question(s) ahead of yours; your answer starts when they finish."
            )
        growing = st.empty()
        try:
            with stream:
                drawn = 0.0
                for piece in stream:
                    waiting.empty()
                    turn["content"] += piece
                    if time.monotonic() - drawn >= 0.05:
                        growing.markdown(badged(turn["content"], len(stream.sources)))
                        drawn = time.monotonic()
        finally:  # also when a rerun ends this run: the answer so far is kept
            finish(app, turn, stream, question)
        stop.empty()
        growing.empty()
        show_answer(app, turn, collection, key=f"t{len(history) - 1}")


def finish(app: App, turn: dict, stream, question: str) -> None:
    answer = stream.answer
    if answer is None:
        return
    if not stream.stopped:
        try:
            answer = app.engine.attribute(answer)
        except UserError:
            pass
    turn.update(answer=answer, content=answer.text, stopped=stream.stopped)
    st.session_state["last_timings"] = answer.timings
    if state.tuning(app)["evidence"] and answer.sources and not stream.stopped:
        try:
            turn["evidence"] = app.engine.evidence(answer, question)
        except UserError:
            turn["evidence"] = {}


def empty_start(app: App, collection: str) -> None:
    """A collection with nothing in it yet: add files here, or the sample documents."""
    st.info(
        f"Collection '{collection}' holds no documents yet. Add some below (or on the Library "
        "page) and ask away."
    )
    upload_area(app, collection, key="ask-upload")
    samples = sample_folder()
    if samples is not None and st.button("Add the sample documents"):
        start_ingest(app, collection, sorted(p for p in samples.iterdir() if p.is_file()))
        st.rerun()
