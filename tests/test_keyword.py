from rag import keyword
from rag.keyword import KeywordIndexes, tokenize
from rag.store import Store


def test_tokenize_keeps_identifiers_and_their_parts():
    tokens = tokenize("Error E-214 in /var/log/syslog; call unixepoch() or SQLITE_MAX_COLUMN")
    assert "e-214" in tokens and "214" in tokens
    assert "var/log/syslog" in tokens and "syslog" in tokens
    assert "sqlite_max_column" in tokens and "unixepoch" in tokens


def test_index_search_filters_and_coverage(settings, tmp_path):
    collection = Store(settings).collection("kw-test")
    collection.upsert(
        ids=["a", "b", "c"],
        embeddings=[[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]],
        documents=[
            "The flag QX-7731 enables turbo mode.",
            "Turbo mode is off by default.",
            "Unrelated text about gardens and plants.",
        ],
        metadatas=[{"file": "/a.md"}, {"file": "/b.md"}, {"file": "/c.md"}],
    )
    index = KeywordIndexes(settings).build("kw-test", collection)
    assert [chunk_id for chunk_id, _ in index.search("what is QX-7731?", 3)][0] == "a"
    assert [c for c, _ in index.search("turbo mode", 3, allowed={"b"})] == ["b"]
    found = index.coverage("flag QX-7731 turbo", ["The flag QX-7731 enables turbo mode."])
    assert found == 1.0
    partly = index.coverage("flag QX-7731 volcano", ["The flag QX-7731 enables turbo mode."])
    assert 0.3 < partly < 1.0
    assert index.coverage("volcano eruption 1815", ["Turbo mode is off by default."]) == 0.0
    reloaded = KeywordIndexes(settings).load("kw-test", collection)
    assert reloaded.ids == ["a", "b", "c"] and reloaded.doc_freq == index.doc_freq
    collection.delete(ids=["c"])  # the store changed behind the index
    # a reader never rewrites it (a writer may be mid-run); the next writer's refresh does
    assert KeywordIndexes(settings).load("kw-test", collection).ids == ["a", "b", "c"]
    assert KeywordIndexes(settings).refresh("kw-test", collection) is True
    assert KeywordIndexes(settings).load("kw-test", collection).ids == ["a", "b"]
    assert KeywordIndexes(settings).refresh("kw-test", collection) is False  # in step: kept


def small_collection(settings, name="kw-damaged"):
    collection = Store(settings).collection(name)
    collection.upsert(
        ids=["a", "b"],
        embeddings=[[1.0, 0.0], [0.0, 1.0]],
        documents=["The flag QX-7731 enables turbo mode.", "Gardens and plants."],
        metadatas=[{"file": "/a.md"}, {"file": "/b.md"}],
    )
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
    # a question still works: the index is rebuilt in memory (and saved: no writer is busy)
    hits = KeywordIndexes(settings).load("kw-damaged", collection).search("QX-7731", 2)
    assert hits and hits[0][0] == "a"
    assert KeywordIndexes(settings).read("kw-damaged").ids == ["a", "b"]


def test_reader_does_not_save_while_a_writer_holds_the_lock(settings):
    from rag.locks import writer_lock

    collection = small_collection(settings, "kw-busy")
    with writer_lock(settings, "kw-busy"):
        index = KeywordIndexes(settings).load("kw-busy", collection)  # no saved index yet
        assert index.ids == ["a", "b"]
        assert not (KeywordIndexes(settings).folder("kw-busy") / "CURRENT").exists()


def test_refresh_rebuilds_a_damaged_index(settings):
    collection = small_collection(settings, "kw-refresh")
    KeywordIndexes(settings).build("kw-refresh", collection)
    garble(KeywordIndexes(settings).folder("kw-refresh"))
    assert KeywordIndexes(settings).refresh("kw-refresh", collection) is True
    assert KeywordIndexes(settings).read("kw-refresh").ids == ["a", "b"]
