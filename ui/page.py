"""The browser page: ask questions, read streamed answers with sources, add documents.

`main(app)` draws the page for an App (ui/app.py, the script Streamlit runs, hands it the shared
one; tests hand it one with fake models). The page uses the engine's and the ingestor's public
methods only."""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from ingest.loaders import supported_suffixes
from rag.answer import Answer
from rag.app import App, build_app
from rag.errors import UserError
from rag.settings import Settings
from ui.safe_markdown import escape_text, safe_markdown
from ui.transcript import conversation_markdown, source_line
from ui.uploads import store_upload, upload_limit_mb


@st.cache_resource(show_spinner="Loading models…")
def shared_app(settings_json: str) -> App:
    """One App (so one embedding model and one LLM) per configuration, shared by all sessions."""
    return build_app(Settings.model_validate_json(settings_json))


def main(app: App) -> None:
    st.set_page_config(page_title="Ask your documents", page_icon="📄", layout="wide")
    collection = sidebar(app)
    st.title("Ask your documents")
    st.caption("Answers come only from your documents, with the file and page of every source.")
    history = st.session_state.setdefault("history", {}).setdefault(collection, [])
    # Answers and questions are shown through safe_markdown: a document can make the model write
    # images and links, and the reader's browser must not fetch or follow them.
    for turn in history:
        with st.chat_message(turn["role"]):
            st.markdown(safe_markdown(turn["content"]))
            if turn.get("answer") is not None:
                show_sources(turn["answer"])
    question = st.chat_input("Ask a question about your documents")
    if question:
        history.append({"role": "user", "content": question})
        with st.chat_message("user"):
            st.markdown(safe_markdown(question))
        earlier = [turn["content"] for turn in history[:-1] if turn["role"] == "user"]
        with st.chat_message("assistant"):
            answer = answer_question(app, earlier, question, collection)
        if answer is not None:
            history.append({"role": "assistant", "content": answer.text, "answer": answer})
    if any(turn["role"] == "assistant" for turn in history):
        st.sidebar.download_button(
            "Download conversation",
            data=conversation_markdown(history, collection),
            file_name=f"conversation-{collection}.md",
            mime="text/markdown",
            on_click="ignore",
            help="The questions, answers and sources as a Markdown file; links and images "
            "in it are plain text.",
        )


def answer_question(app: App, earlier: list[str], question: str, collection: str) -> Answer | None:
    try:
        with st.spinner("Searching your documents…"):
            stream = app.engine.stream(
                question,
                history=earlier,
                collection=collection,
                where=st.session_state.get("where"),
            )
        # Any click reruns the page, which ends this run: the stream is closed below, so the
        # model stops generating and the next question gets it at once.
        with stream:
            st.button("Stop", key=f"stop-{len(st.session_state['history'].get(collection, []))}")
            waiting = st.empty()
            ahead = app.engine.queue_length if stream.uses_model else 0
            if ahead:
                waiting.info(
                    f"{ahead} question(s) ahead of yours; your answer starts when they finish."
                )
            show_stream(stream, st.empty(), waiting)
    except UserError as exc:
        st.warning(escape_text(str(exc)))
        return None
    answer = stream.answer
    if answer is not None:
        show_sources(answer)
    return answer


def show_stream(pieces, placeholder, waiting, every_s: float = 0.05) -> str:
    """Draw the answer as it grows, always through safe_markdown (st.write_stream would draw
    the model's raw markdown); the waiting notice goes when the first piece arrives."""
    text = ""
    drawn = 0.0
    for number, piece in enumerate(pieces):
        if number == 0:
            waiting.empty()
        text += piece
        if time.monotonic() - drawn >= every_s:
            placeholder.markdown(safe_markdown(text))
            drawn = time.monotonic()
    placeholder.markdown(safe_markdown(text))
    return text


def show_sources(answer: Answer) -> None:
    if not answer.sources:
        return
    timing = answer.timings.get("total_s")
    label = f"Sources ({len(answer.sources)})" + (f" · {timing:.1f}s" if timing else "")
    with st.expander(label, expanded=True):
        for number, source in enumerate(answer.sources, start=1):
            cited = " ✓ cited" if number in answer.cited else ""
            # File names, paths and headings come from documents: escaped, never markdown.
            st.markdown(f"**{source_line(number, answer)}**{cited} · score {source.score:.2f}")
            heading = f" — {source.heading}" if source.heading else ""
            st.caption(escape_text(source.file + heading))
            snippet = " ".join(source.text.split())
            st.text(snippet[:400] + ("…" if len(snippet) > 400 else ""))


def sidebar(app: App) -> str:
    with st.sidebar:
        st.header("Library")
        names = safe_collections(app)
        default = app.settings.collection
        options = sorted(set(names) | {default})
        collection = st.selectbox("Collection", options, index=options.index(default))
        counts = st.container()
        st.text_input(
            "Only files matching",
            key="where",
            placeholder="e.g. *.pdf or */contracts/*",
            help="A glob on the file path; leave empty to search everything.",
        )
        st.subheader("Add documents")
        limit = upload_limit_mb(app.settings.max_file_mb, st.get_option("server.maxUploadSize"))
        uploads = st.file_uploader(
            f"Files are stored on this machine only; up to {limit} MB per file",
            type=[s.lstrip(".") for s in supported_suffixes()],
            accept_multiple_files=True,
            max_upload_size=limit,
            help=f"A file over {limit} MB is refused by the browser before it is sent "
            "(RAG_MAX_FILE_MB sets the limit).",
        )
        done = st.session_state.setdefault("ingested_uploads", set())
        fresh = [u for u in uploads or [] if (collection, u.file_id) not in done]
        if fresh:
            add_uploads(app, fresh, collection)
            done.update((collection, u.file_id) for u in fresh)
        stats = collection_stats(app, collection)
        col1, col2 = counts.columns(2)  # drawn above the uploader, counted after any upload
        col1.metric("Documents", stats["files"])
        col2.metric("Chunks", stats["chunks"])
    return collection


def collection_stats(app: App, collection: str) -> dict:
    """Documents (from the manifest) and chunks (one count): cheap enough for every run."""
    try:
        return app.engine.stats(collection)
    except UserError as exc:
        st.error(escape_text(str(exc)))
        return {"collection": collection, "files": 0, "chunks": 0}


def safe_collections(app: App) -> list[str]:
    try:
        return app.engine.collections()
    except UserError as exc:
        st.error(escape_text(str(exc)))
        return []


def add_uploads(app: App, uploads, collection: str) -> None:
    """Save the uploaded files under RAG_HOME/uploads (one folder per content, so uploads never
    overwrite each other) and ingest them, with a progress bar."""
    root = app.settings.home / "uploads"
    folder = root / collection
    folder.mkdir(parents=True, exist_ok=True)
    stored = [store_upload(folder, upload.name, bytes(upload.getbuffer())) for upload in uploads]
    for item in stored:
        st.caption(escape_text(item.message(root)))
    # Already-stored copies are passed too: an earlier upload cut short still gets embedded.
    paths = sorted({item.path.resolve() for item in stored})
    bar = st.progress(0.0, text="Reading and embedding…")
    done = 0

    def progress(path: Path, outcome: str, chunks: int) -> None:
        nonlocal done
        done += 1
        bar.progress(min(1.0, done / len(paths)), text=escape_text(f"{outcome}: {path.name}"))

    def waiting(message: str) -> None:  # another command holds the collection's writer lock
        bar.progress(0.0, text=escape_text(message[:1].upper() + message[1:]))

    report = app.ingestor().ingest(
        paths, collection, progress=progress, files=paths, on_wait=waiting
    )
    bar.empty()
    st.success(
        f"Stored {report.files} file(s), {report.chunks} chunks ({report.unchanged} unchanged)."
    )
    for item in report.skipped:
        st.info(escape_text(f"Skipped {Path(item['file']).name}: {item['reason']}"))
    for item in report.failed:
        st.error(escape_text(f"Could not add {Path(item['file']).name}: {item['error']}"))
