"""Switch off every network feature of the libraries we use, before they are imported."""

import os

# Each variable silences one library's downloads or telemetry. They are forced (not setdefault)
# so that a user's shell cannot turn the product into something that phones home.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "CHROMA_TELEMETRY": "False",
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    "STREAMLIT_SERVER_HEADLESS": "true",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


# Library chatter that has no place on our terminal or in our JSON; a user may turn it back on.
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def enforce_offline() -> None:
    """Set the environment so that no library reaches the network on its own."""
    os.environ.update(OFFLINE_ENV)
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


# Streamlit looks up the machine's addresses (a UDP connect to 8.8.8.8, then an HTTP request to
# checkip.amazonaws.com) to print "Network/External URL" at start-up and whenever a WebSocket
# arrives from another origin. `browser.serverAddress` (set by rag.ui_launch) covers start-up;
# the origin check has no setting short of switching CORS protection off, so the lookups are
# replaced, in the server process only, by "unknown" - which Streamlit already handles.
STREAMLIT_LOOKUPS = ("get_internal_ip", "get_external_ip")


def disable_streamlit_address_lookups() -> None:
    """Make Streamlit's own address lookups answer "unknown" instead of asking the network."""
    from streamlit import net_util

    for name in STREAMLIT_LOOKUPS:
        if hasattr(net_util, name):
            setattr(net_util, name, _unknown_address)


def _unknown_address() -> None:
    return None
