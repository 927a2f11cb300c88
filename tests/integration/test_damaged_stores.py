"""Each damaged part of RAG_HOME is detected, named with its path, and rebuilt (the keyword
index, automatically) or repaired by `ingest check --repair` — as a user meets it, through the
commands, with the real models and store."""

import json
import os

import pytest

from tests.integration.conftest import run_cli

pytestmark = pytest.mark.integration


def make_library(folder):
    folder.mkdir()
    for n in range(4):
        body = "\n\n".join(
            f"Unit {n} section {k}: the calibration code for pump P{n}{k:02d} is C-{n}{k:02d}7."
            for k in range(12)
        )
        (folder / f"pump{n}.md").write_text(f"# Pump {n} manual\n\n{body}\n")


def garble(path):
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.seek(size // 3)
        handle.write(b"\xa5" * (size // 3))


def one_line_error(result, *needles):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def home(tmp_path):
    library = tmp_path / "library"
    make_library(library)
    env = dict(os.environ, RAG_HOME=str(tmp_path / "home"))
    result = run_cli("ingest", str(library), "--json", env=env)
    assert result.returncode == 0, result.stderr
    return tmp_path / "home", library, env


def ask(env):
    return run_cli("rag", "ask", "What is the calibration code for pump P205?", "--json", env=env)


@pytest.mark.server_pass_redundant(
    "the manifest test below reads every chunk back from the store the same way"
)
def test_garbled_keyword_index_is_rebuilt(home):
    root, library, env = home
    for path in (root / "keyword" / "default").rglob("*"):
        if path.is_file() and path.name != "CURRENT":
            path.write_bytes(b"\x00not an index")
    answered = ask(env)
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["sources"][0]["file"].endswith("pump2.md")
    checked = run_cli("ingest", "check", "--json", env=env)
    assert checked.returncode == 0, checked.stdout  # the question saved a rebuilt index
    for path in (root / "keyword" / "default").rglob("meta.json"):
        path.write_text("[")
    again = run_cli("ingest", str(library), "--json", env=env)  # a writer rebuilds it too
    assert again.returncode == 0, again.stderr
    assert json.loads(run_cli("ingest", "check", "--json", env=env).stdout)["clean"] is True


@pytest.mark.embedded_only  # garbles the embedded store's SQLite file
def test_garbled_store_is_named_and_rebuilt_from_the_files(home):
    root, library, env = home
    garble(root / "chroma" / "chroma.sqlite3")
    store_path = str(root / "chroma")
    one_line_error(ask(env), store_path, "ingest check --repair")
    added = run_cli("ingest", str(library), env=env)
    assert added.returncode == 2
    one_line_error(added, store_path, "damaged")
    checked = run_cli("ingest", "check", "--json", env=env)
    assert checked.returncode == 1
    assert [p["kind"] for p in json.loads(checked.stdout)["problems"]] == ["store"]
    repaired = run_cli("ingest", "check", "--repair", "--json", env=env)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    report = json.loads(repaired.stdout)
    assert report["clean"] and report["files"] == 4 and report["store_chunks"] == report["chunks"]
    assert list(root.glob("chroma.damaged-*"))
    answered = ask(env)
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["sources"][0]["file"].endswith("pump2.md")


def test_garbled_manifest_is_named_and_rebuilt_from_the_store(home):
    root, library, env = home
    manifest = root / "manifests" / "default.sqlite3"
    for extra in ("-wal", "-shm"):
        if os.path.exists(f"{manifest}{extra}"):
            os.remove(f"{manifest}{extra}")
    manifest.write_bytes(b"garbage " * 512)
    listed = run_cli("ingest", "list", env=env)
    assert listed.returncode == 2
    one_line_error(listed, str(manifest), "ingest check --repair")
    added = run_cli("ingest", str(library), env=env)
    assert added.returncode == 2  # a store error, not "some files failed"
    one_line_error(added, str(manifest))
    repaired = run_cli("ingest", "check", "--repair", "--json", env=env)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert json.loads(repaired.stdout)["files"] == 4
    again = json.loads(run_cli("ingest", str(library), "--json", env=env).stdout)
    assert again["unchanged"] == 4 and again["chunks"] == 0
