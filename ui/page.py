"""The page: a sidebar (collection, path filter, counts) and three pages, Ask, Library and
Settings. `main(app)` draws it for an App: ui/app.py (the script Streamlit runs) hands it the
shared one; tests hand it one with fake models. Pages use the App's public methods only."""

from __future__ import annotations

import streamlit as st

from rag.app import App, build_app
from rag.errors import UserError
from rag.settings import Settings
from ui import ask, library, login, settings_page, state
from ui.safe_markdown import escape_text


@st.cache_resource(show_spinner="Loading…")
def shared_app(settings_json: str) -> App:
    """One App (so one embedding model and one LLM) per configuration, shared by all sessions."""
    return build_app(Settings.model_validate_json(settings_json))


def main(app: App) -> None:
    st.set_page_config(page_title="Ask your documents", page_icon="📄", layout="wide")
    if not login.signed_in(app):  # off loopback: the password first, nothing else until then
        return
    pages = [
        st.Page(
            lambda: ask.main(app),
            title="Ask",
            icon=":material/forum:",
            url_path="ask",
            default=True,
        ),
        st.Page(
            lambda: library.main(app),
            title="Library",
            icon=":material/folder_open:",
            url_path="library",
        ),
        st.Page(
            lambda: settings_page.main(app),
            title="Settings",
            icon=":material/tune:",
            url_path="settings",
        ),
    ]
    current = st.navigation(pages)
    sidebar(app)
    current.run()


def sidebar(app: App) -> None:
    with st.sidebar:
        try:
            names = app.engine.collections()
        except UserError as exc:
            st.error(escape_text(str(exc)))
            names = []
        chosen = state.collection(app)
        options = sorted(set(names) | {app.settings.collection, chosen})
        st.session_state["collection"] = st.selectbox(
            "Collection", options, index=options.index(chosen)
        )
        st.text_input(
            "Only files matching",
            key="where",
            placeholder="e.g. *.pdf or */contracts/*",
            help="A glob on the file path; leave empty to search everything.",
        )
        try:
            stats = app.engine.stats(st.session_state["collection"])
        except UserError as exc:
            st.error(escape_text(str(exc)))
            return
        st.caption(f"{plural(stats['files'], 'document')} · {plural(stats['chunks'], 'chunk')}")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
