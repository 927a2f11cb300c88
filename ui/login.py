"""The password form shown first when `rag ui` listens on an address other than loopback."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from rag.app import App
from rag.errors import UserError
from rag.ui_password import (
    PASSWORD_FILE_ENV,
    REQUIRE_PASSWORD_ENV,
    password_path,
    throttle_for,
    verify_password,
)
from ui.safe_markdown import escape_text

SIGNED_IN = "signed_in"


def signed_in(app: App) -> bool:
    """True when the page may be drawn: no password is asked for, or this session gave it.
    Otherwise draws the form (and nothing else)."""
    if os.environ.get(REQUIRE_PASSWORD_ENV) != "1" or st.session_state.get(SIGNED_IN):
        return True
    stored = Path(os.environ.get(PASSWORD_FILE_ENV) or password_path(app.settings.home))
    st.title("Sign in")
    with st.form("sign-in", clear_on_submit=True):
        attempt = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return False
    throttle = throttle_for(stored)
    address = st.context.ip_address  # None for a browser on this machine
    address = address if isinstance(address, str) and address else "local"
    wait = throttle.wait_s(address)
    if wait:
        st.error(f"Too many wrong passwords; try again in {wait} s.")
        return False
    try:
        accepted = verify_password(stored, attempt)
    except UserError as exc:
        st.error(escape_text(str(exc)))
        return False
    if not accepted:
        throttle.failed(address)
        st.error("Wrong password.")
        return False
    throttle.succeeded(address)
    st.session_state[SIGNED_IN] = True
    st.rerun()
    return True  # pragma: no cover - st.rerun does not return
