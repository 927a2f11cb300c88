"""Writers exclude each other, readers never undo a writer, and every damaged part is found,
named and mended (`ingest check --repair`), with the fake embedder and a real embedded Chroma."""

from __future__ import annotations

import json
import os
import threading

import pytest

from ingest.check import CheckReport
from rag import store
from rag.app import build_app
from rag.keyword import KeywordIndexes
from rag.locks import CollectionBusyError, writer_lock
from rag.manifest import Manifest, ManifestError, UnknownCollectionError, manifest_path
from rag.store import Store


@pytest.fixture
def library(tmp_path):
    folder = tmp_path / "library"
    folder.mkdir()
    for n in range(5):
        paragraphs = [
            f"Note {n} paragraph {k} mentions token{n}x{k} and river{n}." for k in range(40)
        ]
        (folder / f"note{n}.md").write_text(f"# Note {n}\n\n" + "\n\n".join(paragraphs))
    return folder


@pytest.fixture
def ingestor(settings, fake_embedder):
    return build_app(settings, embedder=fake_embedder).ingestor()


def kinds(report: CheckReport) -> set[str]:
    return {p["kind"] for p in report.problems}


def consistent(settings, name="default") -> None:
    """Manifest ids == store ids == keyword-index ids."""
    collection = Store(settings).collection(name)
    manifest = Manifest(settings.home, name, readonly=True)
    live = manifest.all_chunk_ids()
    manifest.close()
    assert store.all_ids(collection) == live
    assert set(KeywordIndexes(settings).read(name).ids()) == live


def test_a_second_writer_fails_with_no_wait_and_waits_otherwise(ingestor, settings, library):
    ingestor.ingest([library])
    with writer_lock(settings, "default", purpose="test writer"):
        with pytest.raises(CollectionBusyError, match="test writer"):
            ingestor.remove([library / "note0.md"], wait=False)
        with pytest.raises(CollectionBusyError):
            ingestor.ingest([library], wait=False)
        told: list[str] = []
        waiter = threading.Thread(
            target=lambda: ingestor.remove([library / "note0.md"], on_wait=told.append)
        )
        waiter.start()
        waiter.join(timeout=2)
        assert waiter.is_alive(), "the second writer did not wait for the lock"
        assert told and "waiting for" in told[0]
    waiter.join(timeout=60)
    assert not waiter.is_alive()
    assert str(library / "note0.md") not in {r.path for r in ingestor.records()}
    consistent(settings)


def test_commands_during_an_ingest_never_delete_its_chunks(settings, fake_embedder, library):
    """The reported data loss: a second command ran recovery on a live writer's journal."""
    real_upsert = store.upsert_nodes
    written, resume = threading.Event(), threading.Event()

    def slow_upsert(collection, nodes):
        ids = real_upsert(collection, nodes)
        written.set()  # chunks are in the store, the manifest does not know them yet
        resume.wait(timeout=60)
        return ids

    small_batches = settings.model_copy(update={"ingest_batch_chunks": 4})
    writer = build_app(small_batches, embedder=fake_embedder).ingestor()
    other = build_app(settings, embedder=fake_embedder).ingestor()
    store.upsert_nodes = slow_upsert
    try:
        run = threading.Thread(target=writer.ingest, args=([library],))
        run.start()
        assert written.wait(timeout=60)
        with pytest.raises(CollectionBusyError):
            other.remove(["/some/path/not/stored"], wait=False)
        other.records()  # a reader: sees the last committed state, changes nothing
        manifest = Manifest(settings.home, "default", readonly=True)
        assert manifest.pending(), "the writer's intent is still open"
        manifest.close()
        resume.set()
        run.join(timeout=120)
    finally:
        store.upsert_nodes = real_upsert
        resume.set()
    removed, _ = other.remove(["/some/path/not/stored"])
    assert removed == 0
    report = other.check()
    assert report.clean, report.problems
    assert report.files == 5 and report.chunks == report.store_chunks >= 5
    consistent(settings)


def test_check_reports_and_repairs_every_kind_of_damage(ingestor, settings, fake_embedder, library):
    ingestor.ingest([library])
    assert ingestor.check().clean
    collection = Store(settings).collection()
    manifest = Manifest(settings.home, "default")
    note1 = manifest.get(str(library / "note1.md"))
    ids1 = manifest.content(note1.content_key)[0]
    collection.delete(ids=ids1[:2])  # missing chunks
    collection.upsert(  # an orphan
        ids=["ffffffffffffffffffffffff-00000"],
        embeddings=[[0.1] * 256],
        documents=["orphan"],
        metadatas=[{"file": "/nowhere.md"}],
    )
    with manifest.transaction() as db:  # a content row no file uses
        manifest.put_content(db, "deadbeefdeadbeefdeadbeef", "0" * 64, ["x-00000"], "/gone.md")
    manifest.close()
    for path in KeywordIndexes(settings).folder("default").rglob("meta.json"):
        path.write_text("{not json")

    ingestor = build_app(settings, embedder=fake_embedder).ingestor()  # reads the damage afresh
    found = ingestor.check()
    assert not found.clean
    assert kinds(found) == {"missing", "orphans", "stale", "keyword"}, found.problems
    missing = [p for p in found.problems if p["kind"] == "missing"]
    assert missing[0]["file"] == str(library / "note1.md") and missing[0]["count"] == 2

    fixed = ingestor.check(repair=True)
    assert fixed.clean, fixed.problems
    assert any("embedded 1 file" in line for line in fixed.repaired), fixed.repaired
    consistent(settings)
    assert set(ids1) <= store.all_ids(Store(settings).collection())


def test_ingest_embeds_again_a_file_whose_chunks_vanished(ingestor, settings, library):
    ingestor.ingest([library])
    manifest = Manifest(settings.home, "default", readonly=True)
    record = manifest.get(str(library / "note3.md"))
    ids = manifest.content(record.content_key)[0]
    manifest.close()
    Store(settings).collection().delete(ids=ids)
    report = ingestor.ingest([library])  # the bytes did not change
    assert report.files == 1 and report.unchanged == 4, report.to_json()
    consistent(settings)


def test_a_garbled_manifest_is_named_and_rebuilt_from_the_store(ingestor, settings, library):
    ingestor.ingest([library])
    path = manifest_path(settings.home, "default")
    for extra in ("-wal", "-shm"):
        if os.path.exists(f"{path}{extra}"):
            os.remove(f"{path}{extra}")
    path.write_bytes(b"this is not a database " * 200)
    with pytest.raises(ManifestError, match=str(path)) as raised:
        ingestor.records()
    assert "ingest check --repair" in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(ManifestError, match=str(path)):
        ingestor.ingest([library])
    assert kinds(ingestor.check()) == {"manifest"}
    fixed = ingestor.check(repair=True)
    assert fixed.clean, fixed.problems
    assert fixed.files == 5 and "rebuilt the manifest" in fixed.repaired[0]
    again = ingestor.ingest([library])
    assert again.files == 0 and again.unchanged == 5, again.to_json()
    consistent(settings)


def test_readers_do_not_create_collections(ingestor, settings, library):
    ingestor.ingest([library])
    with pytest.raises(UnknownCollectionError, match="typo"):
        ingestor.records("typo")
    assert not manifest_path(settings.home, "typo").exists()
    assert "typo" not in Store(settings).names()


def test_check_json_shape(ingestor, library):
    ingestor.ingest([library])
    data = ingestor.check().to_json()
    assert json.loads(json.dumps(data))["clean"] is True
    assert {"collection", "clean", "files", "chunks", "store_chunks", "problems"} <= set(data)


def test_an_embedding_failure_midway_through_a_file_leaves_no_orphans(settings, library):
    from tests.conftest import FakeEmbedding

    class FailsOnSecondSlice(FakeEmbedding):
        calls: int = 0

        def _get_text_embeddings(self, texts):
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("out of memory")
            return [self._vector(t) for t in texts]

    small = settings.model_copy(update={"ingest_batch_chunks": 1})
    flaky = FailsOnSecondSlice(model_name="fake-hash", embed_batch_size=16)
    big = library / "big.md"
    big.write_text("# Big\n\n" + "\n\n".join(f"Part {k} about lakes{k}." * 20 for k in range(30)))
    report = build_app(small, embedder=flaky).ingestor().ingest([big])
    assert [f["error"] for f in report.failed] == ["could not embed (out of memory)"]
    steady = FakeEmbedding(model_name="fake-hash", embed_batch_size=16)
    sound = build_app(small, embedder=steady).ingestor()
    assert sound.check().clean  # the slice stored before the failure was undone
    again = sound.ingest([big])
    assert again.files == 1 and again.chunks > 1
    consistent(settings)


def test_a_manifest_still_being_created_reads_as_empty_not_damaged(tmp_path):
    """The first writer creates the file, then its tables in one transaction: a reader in
    between sees an empty collection, never "damaged" or a missing table."""
    import sqlite3

    from rag.manifest import ManifestError, manifest_path, reading

    path = manifest_path(tmp_path, "default")
    path.parent.mkdir(parents=True)
    sqlite3.connect(path).close()  # the file exists, no table yet
    with reading(tmp_path, "default") as manifest:
        assert manifest is None
    writer = Manifest(tmp_path, "default")  # creates every table at once
    with reading(tmp_path, "default") as manifest:
        assert manifest is not None and manifest.records() == []
        assert manifest.contents_of([]) == ([], set())
    writer.close()
    path.write_bytes(b"not a database at all, not even close" * 100)
    with pytest.raises(ManifestError, match="damaged"), reading(tmp_path, "default"):
        pass
