"""A question asks the store little: at most two Chroma calls, and no scan of every chunk for a
path filter or for the document count (those come from the manifest)."""

from __future__ import annotations

import pytest


class CountingCollection:
    """Wraps a Chroma collection and records every call made to it."""

    def __init__(self, raw) -> None:
        self._raw = raw
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, name: str):
        attribute = getattr(self._raw, name)
        if not callable(attribute):
            return attribute

        def counted(*args, **kwargs):
            self.calls.append((name, kwargs))
            return attribute(*args, **kwargs)

        return counted

    def scans(self) -> list[tuple[str, dict]]:
        """Reads of chunks not named by id: the whole collection (or a page of it)."""
        return [(n, kw) for n, kw in self.calls if n == "get" and not kw.get("ids")]


@pytest.fixture
def counted(app, tmp_path):
    folder = tmp_path / "docs"
    (folder / "contracts").mkdir(parents=True)
    (folder / "leave.md").write_text("# Leave\n\nEmployees receive 22 days of paid annual leave.\n")
    (folder / "robot.md").write_text("# Robot\n\nThe K2 robot charges in 55 minutes on its dock.\n")
    (folder / "contracts" / "rent.md").write_text("# Rent\n\nThe rent is due on the first day.\n")
    (folder / "copy-of-leave.md").write_text((folder / "leave.md").read_text())
    app.ingestor().ingest([folder])
    collection = app.store.collection()
    wrapper = CountingCollection(collection.raw)
    collection.raw = wrapper
    return wrapper


def test_a_question_makes_at_most_two_chroma_calls(app, counted):
    app.engine.ask("How long does the K2 robot take to charge?")
    assert 1 <= len(counted.calls) <= 2, counted.calls  # the wrapper is on the path
    assert [n for n, _ in counted.calls].count("count") <= 1
    assert counted.scans() == []
    counted.calls.clear()
    app.engine.ask("annual leave days", top_k=3)  # the second question: the same
    assert len(counted.calls) <= 2, counted.calls


def test_a_path_filter_does_not_scan_the_store(app, counted):
    answer = app.engine.ask("When is the rent due?", where="path:*/contracts/*")
    assert answer.sources and {s.file_name for s in answer.sources} == {"rent.md"}
    assert counted.scans() == [] and len(counted.calls) <= 2, counted.calls


def test_a_copy_matched_by_the_filter_is_shown_under_its_own_name(app, counted):
    answer = app.engine.ask("annual leave days", where="copy-of-*")
    assert answer.sources and {s.file_name for s in answer.sources} == {"copy-of-leave.md"}
    assert counted.scans() == []


def test_the_document_count_reads_the_manifest_not_the_store(app, counted):
    stats = app.engine.stats()
    assert stats["files"] == 4  # each copy of a file is a document
    assert stats["chunks"] == 3  # the copy shares its original's chunks
    assert counted.calls == []  # Chroma's count() grows with the library; the manifest's does not


def test_counts_of_a_manifest_older_than_chunk_counts_come_from_the_store(app, counted):
    import sqlite3

    from rag.manifest import manifest_path

    db = sqlite3.connect(manifest_path(app.settings.home, "default"))
    db.execute("ALTER TABLE contents DROP COLUMN chunks")  # as written before the column
    db.commit()
    db.close()
    assert app.engine.stats() == {"collection": "default", "files": 4, "chunks": 3}
    assert [n for n, _ in counted.calls] == ["count"]
