"""Helpers for tests that run the real parts: processes, servers, the browser."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import BIN, SAMPLES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def run_cli(*argv: str, env: dict | None = None, offline: bool = False, timeout: int = 600):
    """Run one of our console scripts; `offline` cuts the network off (loopback only) when possible."""
    command = [str(BIN / argv[0]), *argv[1:]]
    if offline and network_namespaces_work():
        command = ["unshare", "--net", "--", *command]
    return subprocess.run(
        command, capture_output=True, text=True, env=env or dict(os.environ), timeout=timeout
    )


def network_namespaces_work() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--net", "--", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def sample_home(tmp_path_factory) -> Path:
    """A RAG_HOME holding sample_docs/, ingested once with the real embedded model."""
    home = tmp_path_factory.mktemp("sample-home")
    env = dict(os.environ, RAG_HOME=str(home))
    result = run_cli("ingest", str(SAMPLES), "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["files"] == len([p for p in SAMPLES.iterdir() if p.is_file()]), report
    return home


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def launch_chromium(playwright):
    """Debian's Chromium, headless, with no background connections (never a downloaded browser)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)


@dataclass
class UiServer:
    """A running `rag ui`: its address, and what it printed once stopped."""

    port: int
    url: str
    output: str = ""


@contextmanager
def ui_server(env: dict) -> Iterator[UiServer]:
    """`rag ui` on a free loopback port, answering before the block starts, stopped after it."""
    port = free_port()
    server = UiServer(port, f"http://127.0.0.1:{port}/")
    process = subprocess.Popen(
        [str(BIN / "rag"), "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_http(f"{server.url}_stcore/health", timeout=120, process=process)
        yield server
    finally:
        process.terminate()
        server.output = process.communicate(timeout=30)[0]
