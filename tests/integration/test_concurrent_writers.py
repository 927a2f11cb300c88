"""Commands run while an ingest is writing: nothing it stores is lost, readers never error.

The reported loss: while `ingest` was between "chunks written to Chroma" and "manifest updated",
any `ingest remove` (even of a path never stored) ran recovery and deleted those chunks.
"""

import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN
from tests.integration.conftest import run_cli, wait_until_stored

pytestmark = pytest.mark.integration

WORDS = (
    "river mountain engine valve pressure turbine sensor cable harbor lantern meadow quartz "
    "signal timber vessel orbit gravel beacon copper furnace"
).split()


def make_library(tmp_path, seed=0, home="home", scale=1, **settings):
    """Twenty reports in folders a/ and b/ (14 paragraphs each, times `scale`), and the
    environment of a RAG_HOME beside them."""
    folder = tmp_path / "library"
    rng = random.Random(seed)
    for part in ("a", "b"):
        (folder / part).mkdir(parents=True, exist_ok=True)
        for n in range(10):
            paragraphs = [
                f"Paragraph {k} of report {part}{n}: code {part}{n}q{k}z. "
                + " ".join(rng.choice(WORDS) for _ in range(45))
                for k in range(14 * scale)
            ]
            (folder / part / f"report{n:02d}.txt").write_text("\n\n".join(paragraphs))
    return folder, dict(os.environ, RAG_HOME=str(tmp_path / home), **settings)


def start(*argv, env):
    return subprocess.Popen(
        [str(BIN / argv[0]), *argv[1:]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def while_running(process, command, env, limit=40):
    """Run `command` again and again until `process` ends; every run must succeed."""
    runs = []
    while process.poll() is None and len(runs) < limit:
        result = run_cli(*command, env=env)
        runs.append(result)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and "Error finding id" not in result.stderr
    return runs


def check(env):
    result = run_cli("ingest", "check", "--json", env=env)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["clean"], report
    return report


def stored(env):
    return {
        r["file"]: r["chunks"]
        for r in json.loads(run_cli("ingest", "list", "--json", env=env).stdout)
    }


def test_removes_and_questions_during_ingests_lose_nothing(tmp_path):
    # long enough to be caught writing, in small steps
    library, env = make_library(
        tmp_path, scale=3, RAG_CHUNK_SIZE="96", RAG_INGEST_BATCH_CHUNKS="16"
    )

    # 1. a remove of a path never stored, over and over, while the first ingest writes
    ingest = start("ingest", str(library), "--json", env=env)
    assert wait_until_stored(Path(env["RAG_HOME"])) < 20  # batches are being written
    removes = while_running(ingest, ["ingest", "remove", "/some/path/not/stored"], env)
    out, err = ingest.communicate(timeout=600)
    assert ingest.returncode == 0, err
    report = json.loads(out)
    assert report["files"] == 20
    assert removes, "the ingest ended before a second command could run"
    files = stored(env)
    assert len(files) == 20 and all(count > 0 for count in files.values()), files
    assert check(env)["chunks"] == report["chunks"]

    # 2. questions while half the files change and are embedded again
    for path in sorted((library / "a").iterdir())[:5]:
        path.write_text(path.read_text().replace("Paragraph", "Revised paragraph"))
    ingest = start("ingest", str(library), "--json", env=env)
    asks = while_running(ingest, ["rag", "ask", "What is code b3q7z about?", "--json"], env, 3)
    out, err = ingest.communicate(timeout=600)
    assert ingest.returncode == 0, err
    assert json.loads(out)["files"] == 5
    for result in asks:
        assert json.loads(result.stdout)["sources"], "an answer with no sources"
    check(env)

    # 3. questions while a folder is removed (its chunks deleted)
    remove = start("ingest", "remove", str(library / "a"), env=env)
    asks = while_running(remove, ["rag", "ask", "What is code b3q7z about?", "--json"], env, 2)
    remove.communicate(timeout=600)
    assert remove.returncode == 0
    for result in asks:
        files = [source["file"] for source in json.loads(result.stdout)["sources"]]
        assert any(f.endswith("/b/report03.txt") for f in files), files  # the code's report
    assert len(stored(env)) == 10
    check(env)


def test_two_first_ingests_on_a_new_home_both_succeed(tmp_path):
    library, env = make_library(tmp_path, seed=1, home="brand-new")
    first = start("ingest", str(library / "a"), "--json", env=env)
    second = start("ingest", str(library / "b"), "--json", env=env)
    results = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0, results[0][1]
    assert second.returncode == 0, results[1][1]
    assert len(stored(env)) == 20
    check(env)


@pytest.mark.store_independent  # the writer lock lives in RAG_HOME
def test_no_wait_refuses_with_one_line_while_another_writer_runs(tmp_path):
    library, env = make_library(tmp_path, seed=2)
    ingest = start("ingest", str(library), "--json", env=env)
    deadline = time.monotonic() + 120
    refused = None
    while ingest.poll() is None and time.monotonic() < deadline:
        result = run_cli("ingest", "remove", str(library / "a"), "--no-wait", env=env)
        if result.returncode == 75:
            refused = result
            break
    ingest.communicate(timeout=600)
    assert refused is not None, "never saw the writer lock held"
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "is being changed by" in lines[0] and "--no-wait" in lines[0]
    assert len(stored(env)) == 20  # the refused remove changed nothing
