import shutil

import pytest

from ingest.pipeline import MissingPathError, discover
from rag import store
from rag.app import build_app
from rag.store import Store
from tests.conftest import DATA, SAMPLES

GOOD = [
    "book.epub",
    "notes.md",
    "page.html",
    "plain.txt",
    "sample.docx",
    "slides.pptx",
    "table.xlsx",
    "three-pages.pdf",
]
BAD = {
    "empty.txt": "skipped",
    "image.png": "skipped",
    "scanned.pdf": "skipped",
    "binary.txt": "failed",
    "corrupt.pdf": "failed",
    "encrypted.pdf": "failed",
    "latin1.txt": "failed",
}


@pytest.fixture
def ingestor(settings, fake_embedder):
    return build_app(settings, embedder=fake_embedder).ingestor()


def copy_documents(folder) -> None:
    """The test documents (not the stores kept beside them for upgrade tests)."""
    shutil.copytree(DATA, folder, ignore=shutil.ignore_patterns("stores"))


def stored_files(settings, name="default"):
    collection = Store(settings).collection(name)
    return {m["file"] for _, m in store.metadata_where(collection)}


def test_bad_files_are_reported_and_good_ones_stored(ingestor, settings, tmp_path):
    folder = tmp_path / "mixed"
    copy_documents(folder)
    seen = []
    report = ingestor.ingest([folder], progress=lambda path, outcome, chunks: seen.append(outcome))
    assert report.files == len(GOOD)
    assert stored_files(settings) == {str(folder / name) for name in GOOD}
    skipped = {item["file"].rsplit("/", 1)[1] for item in report.skipped}
    failed = {item["file"].rsplit("/", 1)[1]: item["error"] for item in report.failed}
    assert skipped == {n for n, kind in BAD.items() if kind == "skipped"}
    assert set(failed) == {n for n, kind in BAD.items() if kind == "failed"}
    assert all(reason for reason in failed.values())
    assert report.exit_code == 1
    assert len(seen) == len(GOOD) + len(BAD)
    assert report.chunks == store.count_chunks(Store(settings).collection())


def test_pdf_pages_are_stored_as_metadata(ingestor, settings):
    ingestor.ingest([DATA / "three-pages.pdf"])
    metas = [m for _, m in store.metadata_where(Store(settings).collection())]
    assert sorted({m["page"] for m in metas}) == [1, 2, 3]
    assert all(m["file"] == str((DATA / "three-pages.pdf").resolve()) for m in metas)


def test_reingest_unchanged_stores_nothing_and_changed_file_is_replaced(
    ingestor, settings, tmp_path
):
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nThe first version says seven.\n")
    first = ingestor.ingest([tmp_path])
    assert (first.files, first.unchanged) == (1, 0)
    again = ingestor.ingest([tmp_path])
    assert (again.files, again.chunks, again.unchanged) == (0, 0, 1)
    doc.write_text("# Title\n\nThe second version says eight.\n\n## More\n\nAnd more text.\n")
    changed = ingestor.ingest([tmp_path])
    assert changed.files == 1
    collection = Store(settings).collection()
    texts = collection.get(include=["documents"])["documents"]
    assert store.count_chunks(collection) == changed.chunks
    assert not any("seven" in t for t in texts)
    assert any("eight" in t for t in texts)


def test_collections_are_separate(ingestor, settings):
    ingestor.ingest([DATA / "notes.md"], collection_name="papers")
    assert stored_files(settings, "papers") == {str((DATA / "notes.md").resolve())}
    assert stored_files(settings) == set()


def test_discover_recurses_skips_hidden_and_survives_link_loops(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "deep.txt").write_text("deep")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config.txt").write_text("hidden")
    (tmp_path / "loop").symlink_to(tmp_path)
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    names = [p.name for p in discover([tmp_path])]
    assert "deep.txt" in names and "config.txt" not in names
    assert names.count("deep.txt") == 1


def test_dangling_link_and_oversized_file_fail_with_reasons(settings, fake_embedder, tmp_path):
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    (tmp_path / "big.txt").write_text("x" * 3000)
    (tmp_path / "ok.txt").write_text("fine text")
    limited = settings.model_copy(update={"max_file_mb": 0.001})
    small = build_app(limited, embedder=fake_embedder).ingestor()
    report = small.ingest([tmp_path])
    errors = {item["file"].rsplit("/", 1)[1]: item["error"] for item in report.failed}
    assert "broken symbolic link" in errors["dangling.txt"]
    assert "RAG_MAX_FILE_MB" in errors["big.txt"]
    assert report.files == 1


def test_missing_path_is_an_error_before_anything_is_stored(ingestor, settings, tmp_path):
    with pytest.raises(MissingPathError, match="nope"):
        ingestor.ingest([SAMPLES, tmp_path / "nope"])
    assert store.count_chunks(Store(settings).collection()) == 0


def test_parsing_in_worker_processes_gives_the_same_chunks(settings, fake_embedder, tmp_path):
    folder = tmp_path / "docs"
    copy_documents(folder)
    serial, parallel = (
        build_app(
            settings.model_copy(update={"ingest_workers": n}), embedder=fake_embedder
        ).ingestor()
        for n in (0, 2)
    )
    one = serial.ingest([folder])
    two = parallel.ingest([folder], collection_name="parallel")
    assert (one.files, one.chunks, len(one.failed)) == (two.files, two.chunks, len(two.failed))
    ids = {
        name: store.all_ids(Store(settings).collection(name)) for name in ("default", "parallel")
    }
    assert ids["default"] == ids["parallel"] and ids["default"]


def test_keyword_index_follows_adds_updates_and_removals(ingestor, settings, tmp_path):
    folder = tmp_path / "kw"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nThe zebra code ZX-1 lives here.\n")
    (folder / "b.md").write_text("# B\n\nThe yak code YK-2 lives here.\n")
    ingestor.ingest([folder])
    collection = Store(settings).collection()

    def top(query):
        hits = ingestor.keywords.load("default", collection).search(query, 1)
        chunk = store.chunks_by_id(collection, [hits[0][0]])[hits[0][0]] if hits else None
        return chunk.meta["file"].rsplit("/", 1)[1] if chunk else None

    assert top("ZX-1") == "a.md"
    (folder / "a.md").write_text("# A\n\nThe zebra code is now QQ-9.\n")
    ingestor.ingest([folder])
    assert top("ZX-1") is None and top("QQ-9") == "a.md"
    ingestor.remove([folder / "b.md"])
    assert top("YK-2") is None


def test_embedding_prefixes_for_e5_style_models():
    import numpy as np

    from rag.embedding import SentenceEmbedding

    class RecordingEncoder:
        backend = "recording"
        seen: list[str] = []

        def encode_passages(self, texts, batch_size):
            self.seen.extend(texts)
            return np.zeros((len(texts), 3))

        def encode_question(self, text):
            self.seen.append(text)
            return np.zeros(3)

    model = RecordingEncoder()
    embedder = SentenceEmbedding(model, "e5", 8, "query: ", "passage: ")
    embedder.get_query_embedding("how big?")
    embedder.get_text_embedding_batch(["some text", "more"])
    assert model.seen == ["query: how big?", "passage: some text", "passage: more"]
    assert embedder.backend == "recording"


def test_embedder_called_on_nodes_sets_their_embeddings_from_text_and_metadata():
    import numpy as np
    from llama_index.core.schema import TextNode

    from rag.embedding import SentenceEmbedding

    class LengthEncoder:
        backend = "length"

        def encode_passages(self, texts, batch_size):
            return np.array([[float(len(t)), 1.0] for t in texts])

    node = TextNode(text="body", metadata={"title": "T", "secret": "x" * 50})
    node.excluded_embed_metadata_keys = ["secret"]
    SentenceEmbedding(LengthEncoder(), "m", 8)([node])
    from llama_index.core.schema import MetadataMode

    assert node.embedding == [float(len(node.get_content(metadata_mode=MetadataMode.EMBED))), 1.0]
    assert node.embedding[0] < 50  # the excluded key is not embedded


def test_questions_are_encoded_on_one_thread_and_passages_on_all():
    import numpy as np
    import torch

    from rag.models import TorchEncoder

    threads: list[int] = []

    class ThreadModel:
        def encode(self, texts, **kwargs):
            threads.append(torch.get_num_threads())
            return np.zeros((len(texts), 3))

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        encoder = TorchEncoder(ThreadModel())
        encoder.encode_question("how big?")
        encoder.encode_passages(["some text"], 8)
        assert threads == [1, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
