"""What the Library page needs from the writer side: page counts, cancelling a run, re-reading a
file, and creating and deleting collections."""

import json
import shutil
import sqlite3

import pytest

from ingest.report import FileOutcome
from rag import store
from rag.errors import UserError
from rag.locks import CollectionBusyError, writer_lock
from rag.manifest import Manifest, UnknownCollectionError, list_collections, manifest_path
from tests.conftest import DATA, FakeEmbedding


class CountingEmbedding(FakeEmbedding):
    """The fake embedder, counting the texts it embedded."""

    embedded: int = 0

    def _get_text_embedding(self, text: str) -> list[float]:
        self.embedded += 1
        return super()._get_text_embedding(text)


@pytest.fixture
def counting_app(settings):
    from rag.app import build_app

    built = build_app(settings, embedder=CountingEmbedding(model_name="fake-hash"))
    yield built
    built.close()


def write_docs(folder, count: int) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"doc{n}.md"
        path.write_text(f"# Document {n}\n\nDocument number {n} talks about topic{n} at length.\n")
        paths.append(path)
    return paths


def store_files(app, name="default") -> set[str]:
    return {m["file"] for _, m in store.metadata_where(app.store.collection(name))}


# --- pages ------------------------------------------------------------------------------------


def test_pages_are_recorded_for_paged_documents_only(app, tmp_path):
    shutil.copy(DATA / "three-pages.pdf", tmp_path / "three-pages.pdf")
    shutil.copy(DATA / "notes.md", tmp_path / "notes.md")
    app.ingestor().ingest([tmp_path])
    pages = {r.path.rsplit("/", 1)[1]: r.pages for r in app.ingestor().records()}
    assert pages == {"three-pages.pdf": 3, "notes.md": None}
    listed = {
        r.public()["file"].rsplit("/", 1)[1]: r.public()["pages"] for r in app.ingestor().records()
    }
    assert listed == pages


def test_moved_file_keeps_its_page_count(app, tmp_path):
    (tmp_path / "a").mkdir()
    shutil.copy(DATA / "three-pages.pdf", tmp_path / "a" / "report.pdf")
    app.ingestor().ingest([tmp_path], sync=True)
    (tmp_path / "a" / "report.pdf").rename(tmp_path / "a" / "renamed.pdf")
    report = app.ingestor().ingest([tmp_path], sync=True)
    assert report.moved == 1
    [record] = app.ingestor().records()
    assert (record.path.endswith("renamed.pdf"), record.pages) == (True, 3)


def test_manifest_without_pages_column_is_read_then_upgraded(app, settings, tmp_path):
    shutil.copy(DATA / "three-pages.pdf", tmp_path / "three-pages.pdf")
    app.ingestor().ingest([tmp_path])
    path = manifest_path(settings.home, "default")
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE files DROP COLUMN pages")  # as a manifest made before pages were kept
    db.commit()
    db.close()

    reader = Manifest(settings.home, "default", readonly=True)
    try:
        [record] = reader.records()
    finally:
        reader.close()
    assert (record.pages, record.chunks > 0, record.status) == (None, True, "stored")
    assert app.ingestor().records()[0].pages is None

    again = app.ingestor().ingest([tmp_path], force=True)  # a writer adds the column
    assert again.files == 1
    assert app.ingestor().records()[0].pages == 3


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_after_first_file_keeps_it_and_a_later_run_stores_the_rest(app, tmp_path):
    docs = write_docs(tmp_path / "docs", 4)
    seen: list[tuple[str, FileOutcome, int]] = []

    def progress(path, outcome, chunks):
        seen.append((str(path), outcome, chunks))

    report = app.ingestor().ingest(
        [tmp_path / "docs"], progress=progress, should_stop=lambda: len(seen) >= 1
    )
    assert report.cancelled
    assert report.to_json()["cancelled"] is True
    assert (report.files, report.unchanged, report.failed, report.skipped) == (1, 0, [], [])
    assert seen == [(str(docs[0]), FileOutcome.STORED, report.chunks)]
    assert [r.path for r in app.ingestor().records()] == [str(docs[0])]
    assert store_files(app) == {str(docs[0])}
    assert app.ingestor().check().clean
    # the keyword index holds what was stored
    assert app.keywords.read("default").size == report.chunks

    rest = app.ingestor().ingest([tmp_path / "docs"])
    assert not rest.cancelled
    assert rest.to_json()["cancelled"] is False
    assert (rest.files, rest.unchanged) == (3, 1)
    assert [r.path for r in app.ingestor().records()] == [str(d) for d in docs]
    assert store_files(app) == {str(d) for d in docs}
    assert app.ingestor().check().clean


def test_cancel_leaves_copies_of_unreached_files_unrecorded(app, tmp_path):
    docs = write_docs(tmp_path / "docs", 2)
    shutil.copy(docs[1], tmp_path / "docs" / "zz-copy.md")  # twin of a file never parsed
    seen = []
    report = app.ingestor().ingest(
        [tmp_path / "docs"],
        progress=lambda path, outcome, chunks: seen.append(path),
        should_stop=lambda: bool(seen),
    )
    assert report.cancelled
    assert (report.files, report.moved, report.skipped, report.failed) == (1, 0, [], [])
    assert [r.path for r in app.ingestor().records()] == [str(docs[0])]


# --- re-read ----------------------------------------------------------------------------------


def test_force_reads_and_embeds_an_unchanged_file_again(counting_app, tmp_path):
    [doc] = write_docs(tmp_path / "docs", 1)
    ingestor = counting_app.ingestor()
    first = ingestor.ingest([doc])
    [before] = ingestor.records()
    embedded = counting_app.models.embedder.embedded
    assert embedded >= first.chunks > 0

    plain = ingestor.ingest([doc])
    assert (plain.files, plain.unchanged) == (0, 1)
    assert counting_app.models.embedder.embedded == embedded

    forced = ingestor.ingest([doc], force=True)
    assert (forced.files, forced.chunks, forced.unchanged) == (1, first.chunks, 0)
    assert counting_app.models.embedder.embedded == embedded + first.chunks
    [after] = ingestor.records()
    assert after.ingested_at > before.ingested_at
    assert after.chunks == before.chunks
    assert store.count_chunks(counting_app.store.collection()) == before.chunks
    check = ingestor.check()
    assert check.clean, check.problems


# --- collections ------------------------------------------------------------------------------


def test_create_and_delete_collection_round_trip(app, settings, tmp_path):
    ingestor = app.ingestor()
    ingestor.create_collection("papers")
    assert "papers" in list_collections(settings.home)
    assert "papers" in app.store.names()
    assert ingestor.records("papers") == []
    assert ingestor.check("papers").clean

    with pytest.raises(UserError, match="already exists"):
        ingestor.create_collection("papers")
    with pytest.raises(UserError, match="not valid") as bad:
        ingestor.create_collection("no")
    assert "\n" not in str(bad.value)

    docs = write_docs(tmp_path / "docs", 2)
    first = ingestor.ingest([tmp_path / "docs"], "papers")
    assert first.files == 2
    assert app.keywords.folder("papers").is_dir()

    ingestor.delete_collection("papers")
    assert "papers" not in list_collections(settings.home)
    assert "papers" not in app.store.names()
    assert not app.keywords.folder("papers").exists()
    leftovers = [p.name for p in (settings.home / "manifests").iterdir() if "papers" in p.name]
    assert leftovers == []
    with pytest.raises(UnknownCollectionError):
        ingestor.records("papers")
    with pytest.raises(UnknownCollectionError):
        ingestor.delete_collection("papers")

    again = ingestor.ingest([tmp_path / "docs"], "papers")  # starts clean: everything is new
    assert (again.files, again.chunks, again.unchanged, again.moved) == (2, first.chunks, 0, 0)
    assert store_files(app, "papers") == {str(d) for d in docs}
    assert ingestor.check("papers").clean


def test_deleting_one_collection_leaves_the_others(app, tmp_path):
    docs = write_docs(tmp_path / "docs", 1)
    app.ingestor().ingest(docs, "keep-me")
    app.ingestor().ingest(docs, "drop-me")
    app.ingestor().delete_collection("drop-me")
    assert [r.path for r in app.ingestor().records("keep-me")] == [str(docs[0])]
    assert store_files(app, "keep-me") == {str(docs[0])}
    assert app.ingestor().check("keep-me").clean


def test_deleting_a_busy_collection_without_waiting_fails_and_keeps_it(app, settings, tmp_path):
    docs = write_docs(tmp_path / "docs", 1)
    app.ingestor().ingest(docs, "busy")
    with writer_lock(settings, "busy", purpose="test writer"):
        with pytest.raises(CollectionBusyError, match="test writer"):
            app.ingestor().delete_collection("busy", wait=False)
    assert [r.path for r in app.ingestor().records("busy")] == [str(docs[0])]
    assert store_files(app, "busy") == {str(docs[0])}


def test_ingest_list_json_has_pages(app, tmp_path, capsys):
    import ingest.cli

    shutil.copy(DATA / "three-pages.pdf", tmp_path / "three-pages.pdf")
    shutil.copy(DATA / "notes.md", tmp_path / "notes.md")
    assert ingest.cli.main([str(tmp_path), "--json"], app=app) == 0
    capsys.readouterr()
    assert ingest.cli.main(["list", "--json"], app=app) == 0
    listed = {
        item["file"].rsplit("/", 1)[1]: item["pages"]
        for item in json.loads(capsys.readouterr().out)
    }
    assert listed == {"three-pages.pdf": 3, "notes.md": None}
