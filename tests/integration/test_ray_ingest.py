"""`ingest PATH --ray ADDRESS` on a real two-node Ray cluster (loopback only) with the real
embedding model stores exactly what a local ingest stores; killed mid-run and run again, it ends
the same as a clean run."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, DATA, SAMPLES
from tests.integration.conftest import run_cli

pytest.importorskip("ray", reason="Ray is not installed (pip install .[cluster])")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.server_pass_redundant(
        "the Ray driver stores and commits as a local ingest does (test_crash_safety.py)"
    ),
]

HELPER = Path(__file__).with_name("ray_two_nodes.py")
DOCUMENTS = [
    DATA / "three-pages.pdf",
    DATA / "sample.docx",
    DATA / "notes.md",
    DATA / "corrupt.pdf",
    SAMPLES / "employee-handbook.pdf",
    SAMPLES / "k2-robot-specs.docx",
    SAMPLES / "release-notes.md",
]
DUMP = """
import dataclasses, json
from rag.manifest import Manifest
from rag.settings import load_settings
from rag.store import Store
s = load_settings()
got = Store(s).collection().get(include=["documents", "metadatas", "embeddings"])
chunks = {i: [t, m, [float(x) for x in e]] for i, t, m, e in
          zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])}
m = Manifest(s.home, "default")
records = [{**dataclasses.asdict(r), "ingested_at": None} for r in m.records()]
print(json.dumps({"chunks": chunks, "records": records, "pending": len(m.pending())}))
"""


@pytest.fixture(scope="module")
def ray_env():
    """Environment for Ray on loopback only, without usage statistics, in a folder of its own
    (short: Ray's socket paths must stay under 108 characters)."""
    folder = tempfile.mkdtemp(prefix="rag-ray-")
    env = dict(
        os.environ,
        RAY_TMPDIR=folder,
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
    )
    yield env
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(ray_env):
    """The address of a running two-node cluster; both nodes are stopped afterwards."""
    process = subprocess.Popen(
        [sys.executable, str(HELPER)],
        env=ray_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        address = process.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), "the two-node Ray cluster did not start"
        yield address
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray-library")
    for path in DOCUMENTS:
        shutil.copy(path, folder / path.name)
    shutil.copy(DATA / "notes.md", folder / "copy-of-notes.md")
    for n in range(10):
        lines = [
            f"Rule {n}.{k}: valve {n * 50 + k} opens at level {k} of unit {n}." for k in range(40)
        ]
        (folder / f"unit{n:02d}.md").write_text(f"# Unit {n}\n\n" + "\n\n".join(lines))
    return folder


def settings_env(env, home):
    # Small write batches: a killed run has stored some files and not others.
    return dict(env, RAG_HOME=str(home), RAG_INGEST_BATCH_CHUNKS="12")


@pytest.fixture(scope="module")
def local_run(library, ray_env, tmp_path_factory):
    home = tmp_path_factory.mktemp("local-home")
    result = run_cli("ingest", str(library), "--json", env=settings_env(ray_env, home))
    assert result.returncode == 1, result.stderr  # the corrupt PDF fails
    return json.loads(result.stdout), state(home)


def state(home):
    """Every chunk (text, metadata, vector) and the manifest's records, from a fresh process."""
    result = subprocess.run(
        [str(BIN / "python"), "-c", DUMP],
        env=dict(os.environ, RAG_HOME=str(home)),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_same_library(got, expected):
    """Same chunk ids, texts and metadata, the same vectors (up to float rounding of batches),
    the same manifest records (except when they were written), nothing left unfinished."""
    assert got["pending"] == expected["pending"] == 0
    assert got["records"] == expected["records"]
    assert sorted(got["chunks"]) == sorted(expected["chunks"])
    for chunk_id, (text, meta, vector) in got["chunks"].items():
        want_text, want_meta, want_vector = expected["chunks"][chunk_id]
        assert (text, meta) == (want_text, want_meta), chunk_id
        assert sum(a * b for a, b in zip(vector, want_vector, strict=True)) > 0.9999, chunk_id


def without_seconds(report):
    return {k: v for k, v in report.items() if k != "seconds"}


def test_ray_ingest_on_two_nodes_equals_a_local_ingest(
    cluster, library, local_run, ray_env, tmp_path
):
    local_report, expected = local_run
    home = tmp_path / "ray-home"
    env = settings_env(ray_env, home)
    result = run_cli("ingest", str(library), "--ray", cluster, "--json", env=env)
    assert result.returncode == 1, result.stderr
    assert without_seconds(json.loads(result.stdout)) == without_seconds(local_report)
    assert f"joined the Ray cluster at {cluster}: 2 node(s), 2 CPU(s)" in result.stderr
    assert "parsed and embedded on 2 node(s)" in result.stderr
    failed = {f["file"].rsplit("/", 1)[1]: f["error"] for f in local_report["failed"]}
    assert list(failed) == ["corrupt.pdf"] and "corrupt" in failed["corrupt.pdf"]
    assert local_report["moved"] == 1  # the copy is linked, not embedded again
    assert_same_library(state(home), expected)

    again = run_cli("ingest", str(library), "--ray", cluster, "--json", env=env)
    report = json.loads(again.stdout)
    assert report["files"] == 0 and report["unchanged"] == local_report["files"] + 1
    assert "Ray cluster" not in again.stderr  # nothing changed: the cluster is not contacted


def stored_count(home) -> int:
    path = home / "manifests" / "default.sqlite3"
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM files WHERE status='stored'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_ray_ingest_killed_mid_run_then_run_again_equals_a_clean_run(
    cluster, library, local_run, ray_env, tmp_path
):
    local_report, expected = local_run
    total = local_report["files"] + local_report["moved"]
    home = tmp_path / "killed-home"
    env = settings_env(ray_env, home)
    driver = subprocess.Popen(
        [str(BIN / "ingest"), str(library), "--ray", cluster, "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while stored_count(home) < 1 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert driver.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 0 < stored_count(home) < total  # killed between its first and its last write

    rerun = run_cli("ingest", str(library), "--ray", cluster, "--json", env=env)
    assert rerun.returncode == 1, rerun.stderr
    assert_same_library(state(home), expected)
    check = run_cli("ingest", "check", "--json", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
