"""The Settings page: how questions are answered in this session, and the model in use.
Values apply to the next question; no model is loaded again."""

from __future__ import annotations

import streamlit as st

from rag.app import App
from rag.errors import UserError
from ui import state
from ui.safe_markdown import escape_text


def main(app: App) -> None:
    st.title("Settings")
    st.caption("For this browser session. Changing a value never reloads a model.")
    values = state.tuning(app)
    values["top_k"] = st.slider(
        "Passages per answer", 1, 20, int(values["top_k"]), help="How many passages are retrieved"
    )
    hybrid = st.toggle(
        "Hybrid search (meaning and exact words)",
        value=values["retrieval_mode"] == "hybrid",
        help="Off: search by meaning only.",
    )
    values["retrieval_mode"] = "hybrid" if hybrid else "dense"
    values["max_chunks_per_file"] = int(
        st.number_input(
            "Passages from one file at most (0: no limit)",
            min_value=0,
            max_value=20,
            value=int(values["max_chunks_per_file"]),
        )
    )
    values["max_answer_tokens"] = st.slider(
        "Answer length (tokens)", 16, 2048, int(values["max_answer_tokens"]), step=16
    )
    values["temperature"] = st.slider(
        "Temperature", 0.0, 1.5, float(values["temperature"]), step=0.05
    )
    values["evidence"] = st.toggle(
        "Highlight the evidence in each source", value=bool(values["evidence"])
    )
    st.subheader("Model")
    try:
        info = app.models.llm.describe()
    except UserError as exc:
        st.error(escape_text(str(exc)))
        return
    name = info.get("name") or info.get("model") or info.get("file", "")
    st.markdown(f"**{escape_text(str(name))}** · context {info.get('n_ctx')} tokens")
    st.caption(escape_text(str(info.get("file") or info.get("url") or "")))
    last = st.session_state.get("last_timings")
    if last:
        first = last.get("first_token_s")
        speed = last.get("tokens_per_s")
        cols = st.columns(2)
        cols[0].metric("Time to first token", f"{first:.2f} s" if first else "—")
        cols[1].metric("Speed of the last answer", f"{speed:.1f} tokens/s" if speed else "—")
    else:
        st.caption("Ask a question to see how fast the model answers.")
