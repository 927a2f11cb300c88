"""What one browser session keeps between reruns and pages: the collection in use, the
conversation per collection, and the question settings chosen on the Settings page."""

from __future__ import annotations

from typing import Any

import streamlit as st

from rag.app import App


def collection(app: App) -> str:
    """The collection this session works with (chosen in the sidebar)."""
    return st.session_state.setdefault("collection", app.settings.collection)


def history(name: str) -> list[dict]:
    """The conversation with one collection: user turns and assistant turns (answer, evidence)."""
    return st.session_state.setdefault("history", {}).setdefault(name, [])


def tuning(app: App) -> dict[str, Any]:
    """The Settings page's values for this session (defaults: the configured settings)."""
    s = app.settings
    return st.session_state.setdefault(
        "tuning",
        {
            "top_k": s.top_k,
            "retrieval_mode": s.retrieval_mode,
            "max_chunks_per_file": s.max_chunks_per_file,
            "max_answer_tokens": s.max_answer_tokens,
            "temperature": s.temperature,
            "evidence": True,
        },
    )


def ask_options(app: App) -> dict[str, Any]:
    """Options for engine.stream from this session's settings."""
    values = dict(tuning(app))
    values.pop("evidence")
    top_k = values.pop("top_k")
    where = st.session_state.get("where") or None
    return {"top_k": top_k, "where": where, "tuning": values}
