"""The optional CrossEncoder reranker, with a tiny cross-encoder made on the spot."""

import pytest

from rag.app import build_app
from rag.models import CrossEncoderReranker, ModelError, load_reranker
from rag.settings import load_settings
from tests.conftest import FakeLLM

pytestmark = [pytest.mark.integration, pytest.mark.store_independent]


class WordOverlapCrossEncoder:
    """Stands in for a CrossEncoder: scores a (question, passage) pair by shared words."""

    def predict(self, pairs, show_progress_bar=False):
        return [len(set(q.lower().split()) & set(p.lower().split())) for q, p in pairs]


def test_reranker_orders_candidates_by_cross_encoder_score(settings, fake_embedder):
    from rag.answer import SourceRef

    sources = [
        SourceRef(f"/d/{n}.md", None, 0.5, text)
        for n, text in enumerate(["nothing shared", "alpha beta", "alpha beta gamma"])
    ]
    ranked = CrossEncoderReranker(WordOverlapCrossEncoder()).rerank("alpha beta gamma", sources)
    assert [s.file for s in ranked] == ["/d/2.md", "/d/1.md", "/d/0.md"]


@pytest.fixture
def tiny_cross_encoder(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    settings = load_settings()
    tokenizer = AutoTokenizer.from_pretrained(settings.embed_model, local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    folder = tmp_path / "tiny-cross-encoder"
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_engine_uses_a_local_cross_encoder_from_settings(
    settings, fake_embedder, tiny_cross_encoder, tmp_path
):
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(6):
        (docs / f"d{n}.md").write_text(f"# Doc {n}\n\nPassage number {n} about leave days.\n")
    build_app(settings, embedder=fake_embedder).ingestor().ingest([docs])
    configured = settings.model_copy(update={"rerank_model": str(tiny_cross_encoder)})
    engine = build_app(configured, embedder=fake_embedder, llm=FakeLLM()).engine
    sources = engine.retrieve("leave days", top_k=3).sources
    assert len(sources) == 3
    assert isinstance(engine.models.reranker, CrossEncoderReranker)


def test_missing_reranker_folder_is_a_clear_error(settings, tmp_path):
    with pytest.raises(ModelError, match="RAG_RERANK_MODEL: .* not found"):
        load_reranker(settings.model_copy(update={"rerank_model": str(tmp_path / "none")}))
