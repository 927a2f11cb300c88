import pytest

from rag.answer import REFUSAL_TEXT, build_messages
from rag.app import build_app
from rag.engine import TEMPLATE_RESERVE, EmptyCollectionError, QuestionTooLongError
from rag.errors import UserError
from rag.retrieve import NoMatchingFilesError
from tests.conftest import FakeLLM


@pytest.fixture
def filled(settings, fake_embedder, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nEmployees receive 22 days of paid annual leave.\n")
    (docs / "robot.md").write_text("# Robot\n\nThe K2 robot charges in 55 minutes on its dock.\n")
    build_app(settings, embedder=fake_embedder).ingestor().ingest([docs])
    return docs


def test_ask_retrieves_best_source_first_and_cites(settings, fake_embedder, fake_llm, filled):
    engine = build_app(settings, embedder=fake_embedder, llm=fake_llm).engine
    fake_llm.enqueue("It charges in 55 minutes [1].")
    answer = engine.ask("How long does the robot take to charge on its dock?", top_k=2)
    assert answer.sources[0].file == str(filled / "robot.md")
    assert answer.sources[0].score >= answer.sources[1].score
    assert answer.text == "It charges in 55 minutes [1]."
    assert answer.cited == [1] and not answer.refused
    prompt = fake_llm.prompts[0][1]["content"]
    assert "55 minutes" in prompt and prompt.endswith("on its dock?")
    assert set(answer.timings) >= {"retrieve_s", "generate_s", "total_s"}


def test_stream_yields_pieces_then_sets_answer(settings, fake_embedder, fake_llm, filled):
    engine = build_app(settings, embedder=fake_embedder, llm=fake_llm).engine
    fake_llm.enqueue("one two three")
    stream = engine.stream("leave days?")
    pieces = list(stream)
    assert len(pieces) == 3 and "".join(pieces) == "one two three"
    assert stream.answer.text == "one two three"


def test_refusal_is_flagged(settings, fake_embedder, fake_llm, filled):
    engine = build_app(settings, embedder=fake_embedder, llm=fake_llm).engine
    fake_llm.enqueue(REFUSAL_TEXT)
    assert engine.ask("Who won the 1998 World Cup?").refused


def test_context_overflow_drops_chunks_instead_of_failing(settings, fake_embedder, filled):
    engine = build_app(settings, embedder=fake_embedder).engine
    question = "annual leave days"
    sources = engine.retrieve(question, top_k=2).sources
    one = sum(len(m["content"].split()) + 8 for m in build_messages(question, sources[:1]))
    small = FakeLLM(n_ctx=settings.max_answer_tokens + TEMPLATE_RESERVE + one + 2)
    engine = build_app(settings, embedder=fake_embedder, llm=small).engine
    answer = engine.ask(question, top_k=2)
    assert answer.chunks_used == 1
    assert len(answer.sources) == 2


def test_empty_collection_gives_clear_error(settings, fake_embedder, fake_llm):
    engine = build_app(settings, embedder=fake_embedder, llm=fake_llm).engine
    with pytest.raises(EmptyCollectionError, match="collection 'default' is empty.*ingest"):
        engine.ask("anything?")


def test_stats_counts_documents_and_chunks(settings, fake_embedder, filled):
    engine = build_app(settings, embedder=fake_embedder).engine
    stats = engine.stats()
    assert stats["files"] == 2 and stats["chunks"] >= 2
    assert engine.collections() == ["default"]
    assert engine.stats("other")["chunks"] == 0


def test_follow_up_question_retrieves_the_earlier_subject(
    settings, fake_embedder, fake_llm, tmp_path
):
    docs = tmp_path / "limits"
    docs.mkdir()
    (docs / "columns.md").write_text(
        "# Column limit\n\nSQLITE_MAX_COLUMN sets how many columns a table may have. "
        "Its default value is 2000.\n"
    )
    (docs / "pages.md").write_text(
        "# Page size\n\nThe default value of the page size is 4096 bytes.\n"
    )
    (docs / "cache.md").write_text("# Cache\n\nThe default value of the cache size is -2000.\n")
    build_app(settings, embedder=fake_embedder).ingestor().ingest([docs])
    engine = build_app(settings, embedder=fake_embedder, llm=fake_llm).engine
    stream = engine.stream(
        "And its default value?", history=["What is SQLITE_MAX_COLUMN?"], top_k=1
    )
    list(stream)
    assert stream.answer.sources[0].file_name == "columns.md"
    assert "SQLITE_MAX_COLUMN" in fake_llm.prompts[-1][1]["content"]


def test_where_filter_limits_sources_to_matching_paths(settings, fake_embedder, fake_llm, filled):
    engine = build_app(settings, embedder=fake_embedder, llm=fake_llm).engine
    sources = engine.retrieve("leave robot", top_k=5, where="path:*robot*").sources
    assert sources and all(s.file_name == "robot.md" for s in sources)
    with pytest.raises(
        NoMatchingFilesError, match=r"no stored file .* matches the filter '\*\.pdf'"
    ):
        engine.retrieve("leave", where="*.pdf")  # not "the documents do not contain the answer"
    with pytest.raises(UserError, match="--where needs a pattern"):
        engine.retrieve("leave", where="path:")


def test_weak_evidence_is_refused_without_calling_the_model(
    settings, fake_embedder, fake_llm, filled
):
    strict = settings.model_copy(update={"refuse_below": 0.99})
    engine = build_app(strict, embedder=fake_embedder, llm=fake_llm).engine
    answer = engine.ask("annual leave days")
    assert answer.refused and answer.text == REFUSAL_TEXT
    assert fake_llm.prompts == [] and answer.sources  # the closest passages are still shown


def test_a_question_too_long_for_the_context_says_so(settings, fake_embedder, filled):
    small = FakeLLM(n_ctx=settings.max_answer_tokens + TEMPLATE_RESERVE + 250)
    engine = build_app(settings, embedder=fake_embedder, llm=small).engine
    question = "How long does the robot take to charge? " + "really " * 400
    with pytest.raises(QuestionTooLongError, match="RAG_N_CTX") as raised:
        engine.ask(question)
    assert "too long" in str(raised.value) and "\n" not in str(raised.value)
    assert small.prompts == []  # the model was not asked
    assert not engine.ask("How long does the robot take to charge?").refused


def test_the_prompt_holds_the_evidence_sentences_and_the_sources_stay_whole(
    settings, fake_embedder, fake_llm, tmp_path
):
    docs = tmp_path / "docs"
    docs.mkdir()
    filler = " ".join(f"Apples number {n} grow slowly in orchard {n}." for n in range(6))
    body = f"The zebra code opens gate seven. {filler} The zebra code is ZX-1. {filler}"
    (docs / "codes.md").write_text(f"# Codes\n\n{body}\n")
    build_app(settings, embedder=fake_embedder).ingestor().ingest([docs])

    answer = build_app(settings, embedder=fake_embedder, llm=fake_llm).engine.ask(
        "What is the zebra code?", top_k=1
    )
    prompt = fake_llm.prompts[0][1]["content"]
    assert "The zebra code is ZX-1." in prompt and "…" in prompt
    assert prompt.count("Apples number") <= 4  # the neighbours of kept sentences only
    assert answer.sources[0].text.count("Apples number") == 12  # shown whole

    untrimmed = settings.model_copy(update={"context_trim": False})
    full = FakeLLM()
    build_app(untrimmed, embedder=fake_embedder, llm=full).engine.ask(
        "What is the zebra code?", top_k=1
    )
    assert full.prompts[0][1]["content"].count("Apples number") == 12
