"""No telemetry: Chroma, Streamlit and Hugging Face are each told not to report, and no
reporting client is made while the product ingests, searches and serves its page."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import json, os, sys
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "0"     # a user's shell asking for telemetry...
os.environ["ANONYMIZED_TELEMETRY"] = "True"
import rag.cli                                    # ...is overruled on import
from rag.app import build_app
from rag.settings import load_settings
from rag.ui_launch import streamlit_command
from tests.conftest import FakeEmbedding, FakeLLM
app = build_app(load_settings(), embedder=FakeEmbedding(), llm=FakeLLM())
folder = sys.argv[1]
app.ingestor().ingest([folder])
app.engine.ask("What is in the notes?")
client = app.store.client()
from chromadb.telemetry.product import ProductTelemetryClient
telemetry = client._system.instance(ProductTelemetryClient)
command = streamlit_command(app.settings, "127.0.0.1", 8501)
print(json.dumps({
    "env": {k: os.environ.get(k) for k in (
        "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_OFFLINE", "ANONYMIZED_TELEMETRY", "DO_NOT_TRACK",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS")},
    "chroma_anonymized_telemetry": client.get_settings().anonymized_telemetry,
    "chroma_telemetry_class": type(telemetry).__module__ + "." + type(telemetry).__name__,
    "streamlit_usage_stats": command[command.index("--browser.gatherUsageStats") + 1],
    "reporting_modules": sorted(m for m in sys.modules if m.split(".")[0] in (
        "posthog", "sentry_sdk", "segment", "analytics", "mixpanel", "amplitude")),
}))
"""


def test_no_library_reports_usage(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.md").write_text("# Notes\n\nThe meeting moved to Thursday.\n")
    env = {"RAG_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["env"] == {
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    assert seen["chroma_anonymized_telemetry"] is False
    # Chroma's product telemetry component is its no-op implementation in this version
    assert seen["chroma_telemetry_class"] == "chromadb.telemetry.product.posthog.Posthog"
    assert seen["streamlit_usage_stats"] == "false"
    assert seen["reporting_modules"] == []
