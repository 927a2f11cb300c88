"""The Library page: every document of the collection from the manifest, its chunks, removing and
re-reading documents, uploads with overall progress and Cancel, and collections.

Ingesting runs in a background thread of this session (a job), so the page stays live, Cancel
works (the job stops after the file it is reading and keeps what is stored), and questions in
other sessions go on."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import streamlit as st

from ingest.loaders import supported_suffixes
from rag.app import App
from rag.errors import UserError
from rag.manifest import FileRecord
from rag.uploads import store_upload, upload_limit_mb
from ui import state
from ui.safe_markdown import escape_text

SAMPLES = Path(__file__).resolve().parent.parent / "sample_docs"


def sample_folder() -> Path | None:
    """The sample documents shipped beside the code, when this is a checkout."""
    return SAMPLES if SAMPLES.is_dir() and any(SAMPLES.iterdir()) else None


@dataclass
class IngestJob:
    """One ingest running in the background for this session, and how far it got."""

    collection: str
    total: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    chunks: int = 0
    current: str = ""
    waiting: str = ""
    report: object = None
    error: str = ""
    notes: list[str] = field(default_factory=list)  # shown with the outcome
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def progress(self, path: Path, outcome: str, chunks: int) -> None:
        self.done += 1
        self.chunks += chunks
        self.current = f"{outcome}: {path.name}"

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate and self.done else None
        eta = f", about {left:.0f} s left" if left is not None else ""
        return (
            f"{self.done} of {self.total} files, {self.chunks} chunks, "
            f"{self.chunks / elapsed:.1f} chunks/s{eta}"
        )


def start_ingest(
    app: App, collection: str, paths: list[Path], force: bool = False, notes=()
) -> None:
    """Ingest files in the background; the page shows the job until it ends."""
    job = IngestJob(collection, len(paths), notes=list(notes))

    def work() -> None:
        try:
            job.report = app.ingestor().ingest(
                paths,
                collection,
                progress=job.progress,
                files=paths,
                force=force,
                should_stop=job.cancel.is_set,
                on_wait=lambda message: setattr(job, "waiting", message),
            )
        except UserError as exc:
            job.error = str(exc)
        except Exception as exc:  # a bug: shown as one line, the page goes on
            job.error = f"unexpected {type(exc).__name__}: {exc}"

    job.thread = threading.Thread(target=work, name="page-ingest", daemon=True)
    job.thread.start()
    st.session_state["ingest_job"] = job


def watch_job(app: App) -> None:
    """Overall progress of this session's ingest with a Cancel button; when it ends, the page is
    drawn again (fresh counts and rows) and the outcome shown once."""
    job: IngestJob | None = st.session_state.get("ingest_job")
    if job is not None:
        if job.running:
            st.button(
                "Cancel",
                key="cancel-ingest",
                on_click=job.cancel.set,
                help="Stop after the file being read; what is stored stays.",
            )
            bar = st.progress(0.0, text="Reading and embedding…")
            while job.running:
                text = job.waiting or f"{job.summary()} · {job.current}"
                bar.progress(min(1.0, job.done / max(job.total, 1)), text=escape_text(text))
                time.sleep(0.3)
        st.session_state["ingest_outcome"] = st.session_state.pop("ingest_job")
        st.rerun()
    finished: IngestJob | None = st.session_state.pop("ingest_outcome", None)
    if finished is not None:
        show_outcome(finished)


def show_outcome(job: IngestJob) -> None:
    for note in job.notes:
        st.caption(escape_text(note))
    if job.error:
        st.error(escape_text(f"Could not add the files: {job.error}"))
        return
    report = job.report
    cancelled = " Cancelled: the files not reached were left out." if report.cancelled else ""
    st.success(
        f"Stored {report.files} file(s), {report.chunks} chunks ({report.unchanged} unchanged)."
        + cancelled
    )
    for item in report.skipped:
        st.info(escape_text(f"Skipped {Path(item['file']).name}: {item['reason']}"))
    for item in report.failed:
        st.error(escape_text(f"Could not add {Path(item['file']).name}: {item['error']}"))


def upload_area(app: App, collection: str, key: str = "upload") -> None:
    """Upload many files at once; they are saved under RAG_HOME/uploads and ingested."""
    limit = upload_limit_mb(app.settings.max_file_mb, st.get_option("server.maxUploadSize"))
    uploads = st.file_uploader(
        f"Add documents: stored on this machine only, up to {limit} MB per file",
        type=[s.lstrip(".") for s in supported_suffixes()],
        accept_multiple_files=True,
        max_upload_size=limit,
        key=key,
        help=f"A file over {limit} MB is refused by the browser before it is sent "
        "(RAG_MAX_FILE_MB sets the limit).",
    )
    done = st.session_state.setdefault("ingested_uploads", set())
    fresh = [u for u in uploads or [] if (collection, u.file_id) not in done]
    if not fresh or st.session_state.get("ingest_job") is not None:
        return
    root = app.settings.home / "uploads"
    folder = root / collection
    folder.mkdir(parents=True, exist_ok=True)
    stored = [store_upload(folder, upload.name, bytes(upload.getbuffer())) for upload in fresh]
    done.update((collection, u.file_id) for u in fresh)
    # Already-stored copies are passed too: an earlier upload cut short still gets embedded.
    paths = sorted({item.path.resolve() for item in stored})
    start_ingest(app, collection, paths, notes=[item.message(root) for item in stored])
    st.rerun()


def main(app: App) -> None:
    collection = state.collection(app)
    st.title("Library")
    records = app.engine.library(collection)
    stats = app.engine.stats(collection) if records else {"files": 0, "chunks": 0}
    left, right = st.columns(2)
    left.metric("Documents", stats["files"])
    right.metric("Chunks", stats["chunks"])
    upload_area(app, collection, key="library-upload")
    watch_job(app)
    if not records:
        st.info(f"Collection '{collection}' holds no documents yet.")
    else:
        document_table(app, records, collection)
    collections_panel(app, collection)


def document_table(app: App, records: list[FileRecord], collection: str) -> None:
    query = st.text_input("Search by name", key="library-search", placeholder="part of a name")
    shown = [r for r in records if query.lower() in Path(r.path).name.lower()]
    st.caption(f"{len(shown)} of {len(records)} file(s)")
    chosen: list[str] = []
    for record in shown:
        with st.container(border=True, key=f"doc-{abs(hash(record.path))}"):
            top = st.columns([6, 1, 1, 1])
            name = Path(record.path).name
            top[0].markdown(f"**{escape_text(name)}**  \n{describe(record)}")
            top[0].caption(escape_text(record.path))
            if top[1].checkbox("Select", key=f"pick-{record.path}", label_visibility="collapsed"):
                chosen.append(record.path)
            if top[2].button(
                "Re-read",
                key=f"reread-{record.path}",
                disabled=not Path(record.path).is_file(),
                help="Read and embed the file again",
            ):
                start_ingest(app, collection, [Path(record.path)], force=True)
                st.rerun()
            if top[3].button("Remove", key=f"remove-{record.path}"):
                st.session_state["confirm_remove"] = [record.path]
            if record.status == "stored" and st.toggle("Show chunks", key=f"chunks-{record.path}"):
                for chunk in app.engine.chunks_of(record.path, collection):
                    page = chunk.meta.get("page")
                    st.caption(
                        f"chunk {chunk.meta.get('chunk_index', '')}"
                        + (f" · page {page}" if page else "")
                    )
                    st.text(" ".join(chunk.text.split())[:600])
    if chosen and st.button(f"Remove {len(chosen)} selected"):
        st.session_state["confirm_remove"] = chosen
    confirm_removal(app, collection)


def describe(record: FileRecord) -> str:
    """Format, pages, chunks, size, when, status: one escaped line."""
    kind = Path(record.path).suffix.lstrip(".").upper() or "file"
    parts = [kind]
    pages = getattr(record, "pages", None)
    if pages:
        parts.append(f"{pages} page(s)")
    if record.status == "stored":
        parts.append(f"{record.chunks} chunks")
    parts.append(f"{record.size / 1024:.0f} KB" if record.size >= 0 else "size unknown")
    parts.append("added " + datetime.fromtimestamp(record.ingested_at).strftime("%Y-%m-%d %H:%M"))
    status = {
        "stored": ":green-badge[stored]",
        "skipped": ":gray-badge[skipped]",
        "failed": ":red-badge[failed]",
    }[record.status]
    line = " · ".join(escape_text(p) for p in parts) + f" {status}"
    reason = record.error or ""
    if record.status != "stored" and reason:
        line += f" {escape_text(reason)}"
    if any("OCR" in w or "ocr" in w for w in record.warnings):
        line += " :orange-badge[OCR needed]"
    return line


def confirm_removal(app: App, collection: str) -> None:
    doomed: list[str] = st.session_state.get("confirm_remove") or []
    if not doomed:
        return
    names = ", ".join(Path(p).name for p in doomed)
    st.warning(escape_text(f"Remove {names} from '{collection}'? Its chunks are deleted."))
    yes, no = st.columns(2)
    if yes.button("Yes, remove", type="primary", key="confirm-yes"):
        try:
            removed, _ = app.ingestor().remove(doomed, collection)
            st.session_state["removed_note"] = f"Removed {removed} file(s)."
        except UserError as exc:
            st.session_state["removed_note"] = str(exc)
        st.session_state.pop("confirm_remove", None)
        st.rerun()
    if no.button("Keep", key="confirm-no"):
        st.session_state.pop("confirm_remove", None)
        st.rerun()


def collections_panel(app: App, collection: str) -> None:
    note = st.session_state.pop("removed_note", None)
    if note:
        st.toast(escape_text(note))
    with st.expander("Collections"):
        name = st.text_input(
            "New collection", key="new-collection", placeholder="letters, digits, . _ - (3 to 63)"
        )
        if st.button("Create", key="create-collection") and name:
            try:
                app.ingestor().create_collection(name)
                st.session_state["collection"] = name
                st.rerun()
            except UserError as exc:
                st.error(escape_text(str(exc)))
        if collection != app.settings.collection and st.button(
            f"Delete collection '{collection}'", key="delete-collection"
        ):
            st.session_state["confirm_delete"] = collection
        if st.session_state.get("confirm_delete") == collection:
            st.warning(escape_text(f"Delete '{collection}' and everything stored in it?"))
            if st.button("Yes, delete", type="primary", key="delete-yes"):
                try:
                    app.ingestor().delete_collection(collection, wait=False)
                    st.session_state["collection"] = app.settings.collection
                except UserError as exc:
                    st.error(escape_text(str(exc)))
                st.session_state.pop("confirm_delete", None)
                st.rerun()
