"""Start the Streamlit server for ui/app.py, bound to loopback unless configured otherwise."""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import math
import os
import sys
import threading
from pathlib import Path

from rag.offline import disable_streamlit_address_lookups
from rag.settings import Settings
from rag.ui_password import (
    PASSWORD_FILE_ENV,
    REQUIRE_PASSWORD_ENV,
    SET_HINT,
    UiPasswordError,
    has_password,
    password_path,
    read_password_file,
    store_password,
)


def app_path() -> Path:
    """Location of ui/app.py, found without importing the ui package."""
    spec = importlib.util.find_spec("ui")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the ui package is not installed; reinstall with `pip install -e .`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "app.py"


# Addresses that mean "every interface"; the page is then reached as localhost on this machine.
WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def streamlit_command(settings: Settings, host: str | None, port: int | None) -> list[str]:
    host = host or settings.ui_host
    return [
        sys.executable,
        "-m",
        "rag.ui_launch",  # Streamlit's own CLI, without its address lookups (see __main__ below)
        "run",
        str(app_path()),
        "--server.address",
        host,
        # Set, so that Streamlit prints this URL instead of looking up the machine's addresses.
        "--browser.serverAddress",
        "localhost" if host in WILDCARD_HOSTS else host,
        "--server.port",
        str(port or settings.ui_port),
        # Streamlit refuses larger uploads itself; follow the product's per-file limit (whole MB).
        "--server.maxUploadSize",
        str(max(1, math.ceil(settings.max_file_mb))),
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


def launch_ui(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    password_file: Path | None = None,
) -> int:
    """Replace this process with the Streamlit server; the page reads the same RAG_* settings.
    Off loopback the page asks for the stored password, and without one the server does not start."""
    host, port = host or settings.ui_host, port or settings.ui_port
    if password_file is not None:
        stored = store_password(settings.home, read_password_file(password_file))
        print(f"password for the page stored (hashed) in {stored}", flush=True)
    env = dict(os.environ)
    env["RAG_HOME"] = str(settings.home)
    env["RAG_COLLECTION"] = settings.collection
    env.pop(REQUIRE_PASSWORD_ENV, None)
    env.pop(PASSWORD_FILE_ENV, None)
    if not is_loopback(host):
        if not has_password(settings.home):
            raise UiPasswordError(
                f"--host {host} makes the page reachable from the network, and no password is "
                f"stored; {SET_HINT} (or use --host 127.0.0.1)"
            )
        env[REQUIRE_PASSWORD_ENV] = "1"
        env[PASSWORD_FILE_ENV] = str(password_path(settings.home))
    command = streamlit_command(settings, host, port)
    print(f"Serving on http://{host}:{port}  (Ctrl+C to stop)", flush=True)
    if not is_loopback(host):
        print(
            f"warning: the page on {host}:{port} is reachable from the network; it asks for the "
            "password, which travels unencrypted (plain HTTP) "
            "(use --host 127.0.0.1 to keep it local)",
            file=sys.stderr,
            flush=True,
        )
    os.execve(sys.executable, command, env)
    return 0  # pragma: no cover - execve does not return


def warm_up() -> None:
    """While the server starts: import the page's modules and open the store, so the first
    visitor's page is drawn at once (models still load on the first question only)."""
    try:
        importlib.import_module("ui.page")
        from rag.settings import load_settings
        from rag.store import Store

        Store(load_settings()).names()
    except Exception:  # the page itself reports what is wrong, in one line
        pass


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (no name lookup: names other than
    localhost count as reachable from the network)."""
    if host == "localhost" or host.startswith("unix://"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(argv: list[str]) -> None:
    """The server process: Streamlit's command line, with its address lookups switched off."""
    from streamlit.web.cli import main

    disable_streamlit_address_lookups()
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    sys.argv = ["streamlit", *argv]
    main(prog_name="streamlit")


if __name__ == "__main__":
    serve(sys.argv[1:])
