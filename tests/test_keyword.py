from rag import keyword
from rag.keyword import KeywordIndexes, tokenize
from rag.manifest import Manifest
from rag.store import Store


def test_tokenize_keeps_identifiers_and_their_parts():
    tokens = tokenize("Error E-214 in /var/log/syslog; call unixepoch() or SQLITE_MAX_COLUMN")
    assert "e-214" in tokens and "214" in tokens
    assert "var/log/syslog" in tokens and "syslog" in tokens
    assert "sqlite_max_column" in tokens and "unixepoch" in tokens


TEXTS = {
    "a": "The flag QX-7731 enables turbo mode.",
    "b": "Turbo mode is off by default.",
    "c": "Unrelated text about gardens and plants.",
}


def put(collection, ids):
    collection.upsert(
        ids=ids,
        embeddings=[[1.0, float(i)] for i in range(len(ids))],
        documents=[TEXTS.get(i, f"Chunk {i} mentions the word zephyr.") for i in ids],
        metadatas=[{"file": f"/{i}.md"} for i in ids],
    )


def test_index_search_filters_and_coverage(settings):
    collection = Store(settings).collection("kw-test")
    put(collection, ["a", "b", "c"])
    index = KeywordIndexes(settings).build("kw-test", collection)
    assert [chunk_id for chunk_id, _ in index.search("what is QX-7731?", 3)][0] == "a"
    assert [c for c, _ in index.search("turbo mode", 3, allowed={"b"})] == ["b"]
    assert index.search("turbo mode", 3, allowed=set()) == []
    assert index.search("volcano", 3) == []
    found = index.coverage("flag QX-7731 turbo", ["The flag QX-7731 enables turbo mode."])
    assert found == 1.0
    partly = index.coverage("flag QX-7731 volcano", ["The flag QX-7731 enables turbo mode."])
    assert 0.3 < partly < 1.0
    assert index.coverage("volcano eruption 1815", ["Turbo mode is off by default."]) == 0.0
    assert index.idf("turbo") < index.idf("gardens")  # in two chunks against one
    reloaded = KeywordIndexes(settings).load("kw-test", collection)
    assert set(reloaded.ids()) == {"a", "b", "c"} and reloaded.idf("turbo") == index.idf("turbo")


def test_a_wide_filter_keeps_ranking_within_the_allowed_chunks(settings, monkeypatch):
    collection = Store(settings).collection("kw-wide")
    put(collection, ["a", "b", "c"] + [f"z{i}" for i in range(30)])
    index = KeywordIndexes(settings).build("kw-wide", collection)
    monkeypatch.setattr(keyword, "FILTER_IN_QUERY", 2)  # take the rank-then-filter path
    allowed = {"b"} | {f"z{i}" for i in range(5)}
    hits = [c for c, _ in index.search("turbo zephyr", 3, allowed)]
    assert hits[0] == "b" and len(hits) == 3 and set(hits) <= allowed


def test_update_applies_the_manifest_log_without_a_rebuild(settings):
    """Adds and removals recorded in the manifest reach the index incrementally: the same
    generation folder, new segments and tombstones, never a full build."""
    collection = Store(settings).collection("kw-log")
    indexes = KeywordIndexes(settings)
    manifest = Manifest(settings.home, "kw-log")
    put(collection, ["a", "b"])
    with manifest.transaction() as db:
        manifest.put_content(db, "k1", "0" * 64, ["a", "b"], "/one.md")
    assert indexes.update("kw-log", collection, manifest) == "built"  # no index yet
    generation = (indexes.folder("kw-log") / "CURRENT").read_text()
    assert indexes.update("kw-log", collection, manifest) == "kept"

    put(collection, ["c"])
    with manifest.transaction() as db:
        manifest.put_content(db, "k2", "0" * 64, ["c"], "/two.md")
        manifest.intend_in(db, "delete", ["a"])
    collection.delete(ids=["a"])
    assert indexes.update("kw-log", collection, manifest) == "updated"
    assert (indexes.folder("kw-log") / "CURRENT").read_text() == generation
    assert manifest.keyword_log_end() is None  # applied, then forgotten
    fresh = KeywordIndexes(settings).read("kw-log")  # another process sees the commit
    assert set(fresh.ids()) == {"b", "c"}
    assert fresh.search("QX-7731", 3) == [] and fresh.search("gardens", 3)[0][0] == "c"

    # a chunk stored again (a changed file, same ids) replaces its old copy
    collection.upsert(ids=["c"], embeddings=[[1.0, 0.0]], documents=["Now about volcanoes."])
    with manifest.transaction() as db:
        manifest.put_content(db, "k2", "0" * 64, ["c"], "/two.md")
    assert indexes.update("kw-log", collection, manifest) == "updated"
    index = indexes.read("kw-log")
    assert index.size == 2 and index.search("gardens", 3) == []
    assert index.search("volcanoes", 3)[0][0] == "c"
    manifest.close()


def test_an_index_out_of_step_with_the_store_is_rebuilt(settings):
    collection = Store(settings).collection("kw-step")
    indexes = KeywordIndexes(settings)
    manifest = Manifest(settings.home, "kw-step")
    put(collection, ["a", "b", "c"])
    indexes.build("kw-step", collection)
    collection.delete(ids=["c"])  # the store changed behind the index (no log entry)
    # a reader never rewrites it (a writer may be mid-run); the next writer's update does
    assert set(KeywordIndexes(settings).load("kw-step", collection).ids()) == {"a", "b", "c"}
    assert indexes.update("kw-step", collection, manifest) == "rebuilt"
    assert set(KeywordIndexes(settings).read("kw-step").ids()) == {"a", "b"}
    manifest.close()


def small_collection(settings, name="kw-damaged"):
    collection = Store(settings).collection(name)
    put(collection, ["a", "c"])
    return collection


def garble(folder):
    """Overwrite every file of the saved index with junk, as a bad disk or a stray tool would."""
    for path in folder.rglob("*"):
        if path.is_file() and path.name != "CURRENT":
            path.write_bytes(b"\x00garbage{" * 7)


def test_damaged_index_is_named_and_rebuilt(settings):
    collection = small_collection(settings)
    KeywordIndexes(settings).build("kw-damaged", collection)
    garble(KeywordIndexes(settings).folder("kw-damaged"))
    try:
        KeywordIndexes(settings).read("kw-damaged")
    except keyword.KeywordIndexError as problem:
        assert str(KeywordIndexes(settings).folder("kw-damaged")) in str(problem)
    else:
        raise AssertionError("a garbled index was read without complaint")
    # a question still works: the index is rebuilt (and saved: no writer is busy)
    hits = KeywordIndexes(settings).load("kw-damaged", collection).search("QX-7731", 2)
    assert hits and hits[0][0] == "a"
    assert set(KeywordIndexes(settings).read("kw-damaged").ids()) == {"a", "c"}


def test_an_index_in_the_older_format_is_rebuilt(settings):
    collection = small_collection(settings, "kw-old")
    folder = KeywordIndexes(settings).folder("kw-old")
    (folder / "g1").mkdir(parents=True)
    (folder / "g1" / "ids.json").write_text('["a", "c"]')  # the layout before tantivy
    (folder / "CURRENT").write_text("g1")
    manifest = Manifest(settings.home, "kw-old")
    assert KeywordIndexes(settings).update("kw-old", collection, manifest) == "rebuilt"
    assert not (folder / "g1").exists()
    assert KeywordIndexes(settings).read("kw-old").search("QX-7731", 2)[0][0] == "a"
    manifest.close()


def test_reader_does_not_save_while_a_writer_holds_the_lock(settings):
    from rag.locks import writer_lock

    collection = small_collection(settings, "kw-busy")
    with writer_lock(settings, "kw-busy"):
        index = KeywordIndexes(settings).load("kw-busy", collection)  # no saved index yet
        assert set(index.ids()) == {"a", "c"}
        assert not (KeywordIndexes(settings).folder("kw-busy") / "CURRENT").exists()


def test_update_rebuilds_a_damaged_index(settings):
    collection = small_collection(settings, "kw-refresh")
    KeywordIndexes(settings).build("kw-refresh", collection)
    garble(KeywordIndexes(settings).folder("kw-refresh"))
    manifest = Manifest(settings.home, "kw-refresh")
    assert KeywordIndexes(settings).update("kw-refresh", collection, manifest) == "rebuilt"
    assert set(KeywordIndexes(settings).read("kw-refresh").ids()) == {"a", "c"}
    manifest.close()
