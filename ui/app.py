"""The script Streamlit runs (`rag ui`): the page for the App of this configuration."""

import streamlit as st

from rag.errors import UserError
from rag.logs import configure_logging
from rag.settings import load_settings
from ui.page import main, shared_app
from ui.safe_markdown import escape_text

try:
    settings = load_settings()
    configure_logging(settings)
    app = shared_app(settings.model_dump_json())
except UserError as exc:
    st.error(escape_text(str(exc)))
    st.stop()
main(app)
