"""A store written in the older layout (schema 1: llama-index node copies in every chunk's
metadata) is upgraded in place when it is opened: by a question, or by the next ingest."""

from __future__ import annotations

import shutil
import sqlite3
import tarfile

import pytest

from rag import store
from rag.app import build_app
from rag.manifest import SCHEMA_VERSION, Manifest
from rag.settings import load_settings
from tests.conftest import DATA

# the old layout is the embedded store's files
pytestmark = pytest.mark.embedded_only

OLD_STORE = DATA / "stores" / "schema1.tar.gz"  # two files and a copy, ingested by schema 1
OLD_DOCS = "/tmp/v1fix/docs"  # where those files were when they were ingested


@pytest.fixture
def old_home(tmp_path, monkeypatch):
    with tarfile.open(OLD_STORE) as archive:
        archive.extractall(tmp_path, filter="data")
    home = tmp_path / "home"
    monkeypatch.setenv("RAG_HOME", str(home))
    monkeypatch.setenv(
        "RAG_EMBED_BACKEND", "torch"
    )  # it was embedded with torch, the only backend then
    return home


def chunk_keys(settings) -> set[str]:
    app = build_app(settings)
    try:
        return {key for _, meta in store.metadata_where(app.store.collection()) for key in meta}
    finally:
        app.close()


def version(home) -> int:
    manifest = Manifest(home, "default", readonly=True)
    try:
        return manifest.schema_version()
    finally:
        manifest.close()


def test_the_fixture_is_really_the_old_layout(old_home):
    with sqlite3.connect(old_home / "manifests" / "default.sqlite3") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "meta" not in tables
    assert "_node_content" in chunk_keys(load_settings())


def test_a_question_upgrades_an_old_store_and_is_answered_from_it(old_home):
    settings = load_settings()
    assert version(old_home) == 1
    app = build_app(settings)
    retrieval = app.engine.retrieve("What does the markdown section two say?")
    assert retrieval.sources and retrieval.sources[0].file.startswith(OLD_DOCS)
    stats = app.engine.stats()
    assert stats == {"collection": "default", "files": 3, "chunks": 5}
    app.close()
    assert version(old_home) == SCHEMA_VERSION
    keys = chunk_keys(settings)
    assert not keys & set(store.FRAMEWORK_FIELDS)
    assert {"file", "file_name", "sha256", "chunk_index"} <= keys <= set(store.CHUNK_FIELDS)


def test_a_path_filter_works_on_an_old_store(old_home):
    app = build_app(load_settings())
    sources = app.engine.retrieve("page", where="*.pdf").sources
    assert sources and {s.file_name for s in sources} == {"three-pages.pdf"}
    assert {s.page for s in sources} <= {1, 2, 3}


def test_the_next_ingest_upgrades_it_and_keeps_what_is_stored(old_home, tmp_path):
    docs = tmp_path / "new"
    docs.mkdir()
    shutil.copy(DATA / "plain.txt", docs / "plain.txt")
    app = build_app(load_settings())
    report = app.ingestor().ingest([docs])
    assert report.files == 1 and not report.failed
    assert version(old_home) == SCHEMA_VERSION
    assert "_node_content" not in chunk_keys(load_settings())
    assert app.engine.stats()["files"] == 4  # the three old documents are still there


def test_an_old_store_asked_with_the_default_backend_says_how_to_move_it(old_home, monkeypatch):
    """Embedded by torch before backends were recorded: with the default (ONNX) backend a
    question is refused in one line naming `ingest reembed`, not answered from mixed vectors."""
    from rag.store import BackendMismatchError

    monkeypatch.setenv("RAG_EMBED_BACKEND", "onnx")
    app = build_app(load_settings())
    with pytest.raises(
        BackendMismatchError, match="embedded with torch.*ingest reembed -c default"
    ):
        app.engine.retrieve("What does the markdown section two say?")
    app.close()
