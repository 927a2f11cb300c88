"""SIGKILL `ingest` at several moments, re-run it, and get exactly what a clean run stores."""

import json
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.conftest import BIN
from tests.integration.conftest import run_cli
from tests.integration.server_pass import fresh_store

pytestmark = pytest.mark.integration


def make_library(folder):
    folder.mkdir()
    for n in range(24):
        lines = [
            f"Section {n}.{k}: the gauge number {n * 100 + k} belongs to unit {n}."
            for k in range(30)
        ]
        (folder / f"doc{n:02d}.md").write_text(f"# Document {n}\n\n" + "\n\n".join(lines))


def state(home, env=None):
    """{file: sorted chunk ids} from the store, checked against the manifest."""
    code = (
        "import json,sys;from rag.settings import load_settings;from rag import store;"
        "from rag.store import Store;from rag.manifest import Manifest;"
        "s=load_settings();c=Store(s).collection();"
        "out={};[out.setdefault(m['file'],[]).append(i) for i,m in store.metadata_where(c)];"
        "m=Manifest(s.home,'default');"
        "man={r.path:r.chunks for r in m.records() if r.status=='stored'};"
        "print(json.dumps({'chroma':{k:sorted(v) for k,v in out.items()},'manifest':man,"
        "'live':sorted(m.all_chunk_ids()),'ids':sorted(store.all_ids(c)),'pending':len(m.pending())}))"
    )
    env = dict(env or os.environ, RAG_HOME=str(home))
    result = subprocess.run(
        [str(BIN / "python"), "-c", code], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stored_count(home) -> int:
    path = home / "manifests" / "default.sqlite3"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM files WHERE status='stored'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigkill_at_any_moment_then_rerun_equals_a_clean_run(tmp_path):
    library = tmp_path / "library"
    make_library(library)
    base = dict(
        os.environ, RAG_CHUNK_SIZE="64", RAG_CHUNK_OVERLAP="8", RAG_INGEST_BATCH_CHUNKS="40"
    )

    clean_home = tmp_path / "clean"
    clean = run_cli("ingest", str(library), "--json", env=dict(base, RAG_HOME=str(clean_home)))
    assert clean.returncode == 0, clean.stderr
    expected = state(clean_home)
    assert len(expected["chroma"]) == 24
    fresh_store(base)  # a Chroma server holds one store for every RAG_HOME

    home = tmp_path / "killed"
    env = dict(base, RAG_HOME=str(home))
    kills = 0
    for threshold in (1, 6, 12, 18):  # kill while batches are being written
        process = subprocess.Popen(
            [str(BIN / "ingest"), str(library), "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if stored_count(home) >= threshold:
                break
            time.sleep(0.05)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 2, "ingest finished before it could be killed"

    final = run_cli("ingest", str(library), "--json", env=env)
    assert final.returncode == 0, final.stderr
    after = state(home)
    assert after["pending"] == 0
    assert after["chroma"] == expected["chroma"]
    assert after["manifest"] == expected["manifest"]
    assert after["ids"] == after["live"] == expected["ids"]
    again = json.loads(run_cli("ingest", str(library), "--json", env=env).stdout)
    assert again["chunks"] == 0 and again["unchanged"] == 24
