"""How soon the page is usable: `rag ui` against a bare Streamlit page, on the same machine.

For each side, in a fresh server: seconds from starting the server until headless Chromium shows
the page's first control (the Ask box, or the bare page's text input), and the same for a second
page load in the running server (what a person sees when opening the page later; models are not
loaded by opening the page, only by the first question). Prints a table and writes JSON.

    .venv/bin/python bench/ui_start.py [--home RAG_HOME] [--runs 3] [--out bench/ui_start.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.conftest import free_port, launch_chromium, wait_for_http  # noqa: E402

BIN = Path(sys.executable).parent
BARE = "import streamlit as st\nst.title('Bare page')\nst.text_input('Ask a question')\n"


def measure(command: list[str], port: int, control: str, env: dict) -> dict:
    from playwright.sync_api import expect, sync_playwright

    started = time.perf_counter()
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_stcore/health", timeout=120, process=server)
        healthy = time.perf_counter() - started
        with sync_playwright() as p:
            browser = launch_chromium(p)
            loads = []
            for _ in range(2):
                page = browser.new_page()
                opened = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
                expect(
                    page.get_by_placeholder(control).or_(page.get_by_label(control))
                ).to_be_visible(timeout=120_000)
                loads.append(time.perf_counter() - opened)
                page.close()
            browser.close()
        return {
            "server_s": healthy,
            "first_interactive_s": healthy + loads[0],
            "page_load_s": loads[1],
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="RAG_HOME to serve (default: an empty temporary one)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "ui_start.json")
    args = parser.parse_args()
    home = args.home or tempfile.mkdtemp(prefix="ui-start-")
    env = dict(os.environ, RAG_HOME=home, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    bare = Path(tempfile.mkdtemp(prefix="ui-bare-")) / "bare.py"
    bare.write_text(BARE)
    ours, theirs = [], []
    for _ in range(args.runs):
        port = free_port()
        ours.append(
            measure([str(BIN / "rag"), "ui", "--port", str(port)], port, "Ask a question", env)
        )
        port = free_port()
        command = [
            str(BIN / "streamlit"),
            "run",
            str(bare),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
        ]
        theirs.append(measure(command, port, "Ask a question", env))
    result = {}
    for key in ("server_s", "first_interactive_s", "page_load_s"):
        mine = statistics.median(r[key] for r in ours)
        bare_s = statistics.median(r[key] for r in theirs)
        result[key] = {
            "rag_ui": round(mine, 3),
            "bare_streamlit": round(bare_s, 3),
            "ratio": round(mine / bare_s, 2),
        }
    print(f"{'median of ' + str(args.runs):24} {'rag ui':>8} {'bare':>8} {'ratio':>6}")
    for key, row in result.items():
        print(f"{key:24} {row['rag_ui']:>8.2f} {row['bare_streamlit']:>8.2f} {row['ratio']:>6.2f}")
    args.out.write_text(json.dumps({"runs": args.runs, "home": home, **result}, indent=2))


if __name__ == "__main__":
    main()
