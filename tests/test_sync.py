"""The index mirrors the library: unchanged, edited, renamed, copied, deleted and removed files."""

import os

import pytest

from ingest.loaders import load_file
from ingest.sync import recover, remove_records
from rag import store
from rag.app import build_app
from rag.manifest import Manifest
from rag.store import Store


@pytest.fixture
def library(tmp_path):
    folder = tmp_path / "library"
    (folder / "sub").mkdir(parents=True)
    for n in range(4):
        (folder / f"note{n}.md").write_text(f"# Note {n}\n\nThis note talks about topic{n} only.\n")
    (folder / "sub" / "deep.txt").write_text("A deep file about submarines.")
    return folder


@pytest.fixture
def ingestor(settings, fake_embedder):
    return build_app(settings, embedder=fake_embedder).ingestor()


def snapshot(settings, name="default"):
    """{file: chunk count} as Chroma sees it, and as the manifest sees it."""
    collection = Store(settings).collection(name)
    in_chroma: dict[str, int] = {}
    for _, meta in store.metadata_where(collection):
        in_chroma[meta["file"]] = in_chroma.get(meta["file"], 0) + 1
    manifest = Manifest(settings.home, name)
    in_manifest = {r.path: r.chunks for r in manifest.records() if r.status == "stored"}
    live = manifest.all_chunk_ids()
    manifest.close()
    assert store.all_ids(collection) == live, "store and manifest disagree"
    return in_chroma, in_manifest


def test_unchanged_folder_stores_nothing(ingestor, library):
    first = ingestor.ingest([library])
    again = ingestor.ingest([library])
    assert first.files == 5 and again.files == 0 and again.chunks == 0
    assert again.unchanged == 5


def test_touched_but_identical_file_is_not_reembedded(ingestor, library):
    ingestor.ingest([library])
    os.utime(library / "note1.md", ns=(1, 1))
    report = ingestor.ingest([library])
    assert report.files == 0 and report.unchanged == 5


def test_edit_delete_rename_then_sync_mirrors_the_folder(ingestor, settings, library):
    ingestor.ingest([library])
    (library / "note0.md").write_text(
        "# Note 0\n\nRewritten: now about volcanoes.\n\n## More\n\nLava.\n"
    )
    (library / "note1.md").unlink()
    (library / "note2.md").rename(library / "sub" / "renamed.md")
    report = ingestor.ingest([library], sync=True)
    assert (report.files, report.moved, report.removed) == (1, 1, 1)
    in_chroma, in_manifest = snapshot(settings)
    expected = {str(p) for p in library.rglob("*") if p.is_file()}
    assert set(in_chroma) == set(in_manifest) == expected
    assert in_chroma == in_manifest
    collection = Store(settings).collection()
    texts = " ".join(collection.get(include=["documents"])["documents"])
    assert "volcanoes" in texts and "topic0" not in texts and "topic1" not in texts
    assert "topic2" in texts  # the renamed note was kept, not embedded again


def test_rename_without_sync_moves_the_citation(ingestor, settings, library, fake_llm):
    ingestor.ingest([library])
    (library / "note3.md").rename(library / "moved.md")
    report = ingestor.ingest([library])
    assert report.moved == 1 and report.files == 0
    answer = build_app(settings, embedder=ingestor.embedder, llm=fake_llm).engine.ask(
        "topic3", top_k=1
    )
    assert answer.sources[0].file == str(library / "moved.md")
    in_chroma, in_manifest = snapshot(settings)
    assert str(library / "note3.md") not in in_manifest


def test_same_content_twice_is_stored_once_and_cites_the_newest(ingestor, settings, library):
    (library / "copy.md").write_bytes((library / "note0.md").read_bytes())
    report = ingestor.ingest([library])
    assert report.files == 5 and report.moved == 1
    _, in_manifest = snapshot(settings)
    assert in_manifest[str(library / "copy.md")] == in_manifest[str(library / "note0.md")]
    collection = Store(settings).collection()
    files = [m["file"] for _, m in store.metadata_where(collection)]
    assert files.count(str(library / "copy.md")) + files.count(str(library / "note0.md")) == 1
    ingestor.remove([library / "copy.md"])
    in_chroma, _ = snapshot(settings)
    assert in_chroma[str(library / "note0.md")] == 1  # still stored, cited from the remaining path


def test_remove_a_folder_and_sync_ignores_other_folders(ingestor, settings, library, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("kept text")
    ingestor.ingest([library, other])
    removed, paths = ingestor.remove([library / "sub"])
    assert removed == 1 and paths == [str(library / "sub" / "deep.txt")]
    (library / "note0.md").unlink()
    ingestor.ingest([library], sync=True)
    in_chroma, in_manifest = snapshot(settings)
    assert str(other / "keep.txt") in in_chroma
    assert str(library / "note0.md") not in in_manifest


def test_failed_files_are_listed_and_reported_again_without_reparsing(ingestor, library):
    (library / "bad.txt").write_bytes(b"\x00\x01binary")
    first = ingestor.ingest([library])
    second = ingestor.ingest([library])
    assert [f["file"] for f in first.failed] == [f["file"] for f in second.failed]
    records = {r.path: r for r in ingestor.records()}
    assert records[str(library / "bad.txt")].status == "failed"
    assert "binary" in records[str(library / "bad.txt")].error


def test_recover_undoes_a_half_written_batch(ingestor, settings, library):
    ingestor.ingest([library])
    collection = Store(settings).collection()
    before = store.all_ids(collection)
    manifest = Manifest(settings.home, "default")
    note = library / "note0.md"
    node = ingestor.chunker.chunk(note, load_file(note), "x", key="orphan")[0]
    node.embedding = ingestor.embedder.get_text_embedding("x")
    manifest.intend("add", [node.node_id])
    store.upsert_nodes(collection, [node])  # the process "dies" here, before the manifest commit
    assert store.all_ids(collection) == before | {node.node_id}
    assert recover(manifest, collection) == 1
    assert store.all_ids(collection) == before and manifest.pending() == []
    manifest.close()


def test_a_deletion_cut_short_is_finished_by_the_next_writer(
    ingestor, settings, library, monkeypatch
):
    ingestor.ingest([library])
    collection = Store(settings).collection()
    manifest = Manifest(settings.home, "default")
    note = str(library / "note0.md")
    ids = set(manifest.content(manifest.get(note).content_key)[0])

    def stopped(collection, ids):
        raise KeyboardInterrupt  # the process is stopped just before the store deletes

    monkeypatch.setattr(store, "delete_ids", stopped)
    with pytest.raises(KeyboardInterrupt):
        remove_records(manifest, collection, [note])
    monkeypatch.undo()
    assert manifest.get(note) is None and manifest.pending()  # forgotten, deletion announced
    assert ids <= store.all_ids(collection)
    manifest.close()
    ingestor.remove(["/never/stored.md"])  # the next writer finishes the deletion
    assert not ids & store.all_ids(collection)
    in_chroma, in_manifest = snapshot(settings)
    assert note not in in_chroma and note not in in_manifest


def test_copies_in_one_run_are_linked_not_written_twice(ingestor, settings, tmp_path):
    folder = tmp_path / "dups"
    folder.mkdir()
    for name in ("a.md", "b.md", "c.md"):
        (folder / name).write_text("# Same\n\nIdentical words in three files.\n")
    report = ingestor.ingest([folder])
    assert report.files == 1 and report.moved == 2 and not report.failed
    in_chroma, in_manifest = snapshot(settings)
    assert sum(in_chroma.values()) == 1 and len(in_manifest) == 3


def test_records_under_a_folder_are_found_by_path_range(settings):
    from rag.manifest import FileRecord, Manifest

    manifest = Manifest(settings.home, "ranges")
    paths = ["/a/b", "/a/b/c.md", "/a/b/d/e.md", "/a/bc.md", "/a/b-x/f.md", "/z.md"]
    with manifest.transaction() as db:
        for path in paths:
            manifest.put_file(db, FileRecord(path, 1, 1, None, None, "sig"))
    assert [r.path for r in manifest.records(["/a/b"])] == ["/a/b", "/a/b/c.md", "/a/b/d/e.md"]
    assert [r.path for r in manifest.records(["/a/b/", "/z.md"])] == [
        "/a/b/c.md",
        "/a/b/d/e.md",
        "/z.md",
    ]
    assert [r.path for r in manifest.records(["/"])] == sorted(paths)
    assert manifest.records(["/nothing"]) == []
    manifest.close()
