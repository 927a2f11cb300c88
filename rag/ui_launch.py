"""Start the Streamlit server for ui/app.py, bound to loopback unless configured otherwise."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from rag.settings import Settings


def app_path() -> Path:
    """Location of ui/app.py, found without importing the ui package."""
    spec = importlib.util.find_spec("ui")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the ui package is not installed; reinstall with `pip install -e .`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "app.py"


def streamlit_command(settings: Settings, host: str | None, port: int | None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.address",
        host or settings.ui_host,
        "--server.port",
        str(port or settings.ui_port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]


def launch_ui(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    """Replace this process with the Streamlit server; the page reads the same RAG_* settings."""
    host, port = host or settings.ui_host, port or settings.ui_port
    command = streamlit_command(settings, host, port)
    env = dict(os.environ)
    env["RAG_HOME"] = str(settings.home)
    env["RAG_COLLECTION"] = settings.collection
    print(f"Serving on http://{host}:{port}  (Ctrl+C to stop)", flush=True)
    os.execve(sys.executable, command, env)
    return 0  # pragma: no cover - execve does not return
