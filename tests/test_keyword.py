from rag import keyword, store
from rag.keyword import tokenize


def test_tokenize_keeps_identifiers_and_their_parts():
    tokens = tokenize("Error E-214 in /var/log/syslog; call unixepoch() or SQLITE_MAX_COLUMN")
    assert "e-214" in tokens and "214" in tokens
    assert "var/log/syslog" in tokens and "syslog" in tokens
    assert "sqlite_max_column" in tokens and "unixepoch" in tokens


def test_index_search_filters_and_coverage(settings, tmp_path):
    collection = store.get_collection(settings, "kw-test")
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
    index = keyword.build(settings, "kw-test", collection)
    assert [chunk_id for chunk_id, _ in index.search("what is QX-7731?", 3)][0] == "a"
    assert [c for c, _ in index.search("turbo mode", 3, allowed={"b"})] == ["b"]
    found = index.coverage("flag QX-7731 turbo", ["The flag QX-7731 enables turbo mode."])
    assert found == 1.0
    partly = index.coverage("flag QX-7731 volcano", ["The flag QX-7731 enables turbo mode."])
    assert 0.3 < partly < 1.0
    assert index.coverage("volcano eruption 1815", ["Turbo mode is off by default."]) == 0.0
    reloaded = keyword.load(settings, "kw-test", collection)
    assert reloaded.ids == ["a", "b", "c"] and reloaded.doc_freq == index.doc_freq
    collection.delete(ids=["c"])  # the store changed behind the index: it is rebuilt
    assert keyword.load(settings, "kw-test", collection).ids == ["a", "b"]
