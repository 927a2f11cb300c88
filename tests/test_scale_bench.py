"""bench/scale.py at a tiny size: its builder writes a consistent library through the product's
layers, and its measurements run on it (fake embedder; the real figures are in docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from bench import scale, scale_build
from rag import store
from rag.manifest import reading
from tests.conftest import SAMPLES


def test_builder_writes_a_library_the_product_reads_and_changes(app, fake_embedder):
    pool = scale_build.make_pool(
        app.settings, fake_embedder, scale_build.document_files(SAMPLES), 40
    )
    assert len(pool.texts) == 40 and pool.vectors.shape == (40, fake_embedder.dims)

    built = scale_build.build_library(app, pool, 300, big=100, show=False)

    assert built["documents"] == 3 and built["big_chunks"] == 100
    assert app.engine.stats() == {"collection": "default", "files": 3, "chunks": 300}
    collection = app.store.collection("default", create=False)
    pages = list(store.pages(collection, ("documents",)))
    ids = [chunk_id for page in pages for chunk_id in page.ids]
    texts = [text for page in pages for text in page.texts]
    assert len(set(ids)) == 300
    assert all(scale_build.MIN_CHARS - 1 <= len(t) <= scale_build.MAX_CHARS for t in texts)
    with reading(app.settings.home, "default") as manifest:
        assert manifest.all_chunk_ids() == set(ids)
        assert manifest.pending() == []  # every journal intent was closed
        big = manifest.get(built["big_path"])
        assert big is not None and big.chunks == 100
    # the keyword index holds every chunk: a passage's own words find it
    index = app.keywords.load("default", collection)
    assert ids[0] in {hit for hit, _ in index.search(texts[0], 300)}
    # the dense side finds a chunk from its own vector
    probe = store.chunks_by_id(collection, [ids[5]])[ids[5]]
    assert store.nearest(collection, probe.embedding, 1)[0].id == ids[5]

    removed, _ = app.ingestor().remove([built["big_path"]])
    assert removed == 1 and store.count_chunks(collection) == 200
    scale_build.rewrite_document(app, pool, scale_build.SynthDoc(0, 100))
    assert store.all_ids(collection) == set(ids)  # written back identically
    assert app.engine.stats()["chunks"] == 300

    result = scale.measure(app, pool, built, ["What is the battery swap mode?"] * 4)
    assert result["chunks_after"] == 300 and result["removed_chunks"] == 100
    assert result["add100_chunks"] > 50
    assert app.engine.stats()["chunks"] == 300  # both added notes were removed again
    for key in (
        "retrieve_p95_ms",
        "retrieve_library_p95_ms",
        "remove_s",
        "add100_s",
        "add100_next_s",
        "list_ms",
        "count_ms",
        "disk_mb",
    ):
        assert result[key] > 0, key


def test_a_built_library_records_the_backend_of_its_pool(app, fake_embedder, tmp_path):
    pool = scale_build.make_pool(
        app.settings, fake_embedder, scale_build.document_files(SAMPLES), 20
    )
    pool.backend = "onnx-int8"  # as if embedded by the default backend
    pool.save(tmp_path / "pool")
    kept = scale_build.Pool.load(tmp_path / "pool")
    assert kept.backend == "onnx-int8"

    scale_build.build_library(app, kept, 40, big=10, show=False)
    collection = app.store.collection("default", create=False)
    # an ingest with that backend adds to it; one with another is refused
    assert store.recorded_backend(collection) == "onnx-int8"
    store.check_backend(collection, "default", "onnx-int8")
    with pytest.raises(store.BackendMismatchError):
        store.check_backend(collection, "default", "torch")
