"""Evidence sentences, relevance labels and highlighted runs, with the fake embedding."""

import pytest

from rag.answer import Answer, SourceRef
from rag.evidence import claims_by_source, highlight, marked, relevance, sentence_spans
from rag.settings import load_settings
from tests.conftest import FakeEmbedding

LEAVE = (
    "Annual leave. Full-time employees receive 22 days of paid annual leave per year, in addition\n"
    "to public holidays. Carry-over. Up to 5 unused days may be carried into the next leave year,\n"
    "but they must be taken by 31 March. Sickness. Tell your manager before 09:30 on the first day."
)
ROBOT = (
    "The K2 robot weighs 48 kg. Its battery charges fully in 2.5 hours at the dock. "
    "The robot is rated IP54 against dust and water."
)


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def source(text: str, name: str = "doc.pdf") -> SourceRef:
    return SourceRef(file=f"/docs/{name}", page=1, score=0.5, text=text)


class CountingEmbedding(FakeEmbedding):
    """The fake embedding, counting the batches it is asked for."""

    batches: int = 0
    embedded: int = 0

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self.batches += 1
        self.embedded += len(texts)
        return [self._vector(t) for t in texts]


@pytest.fixture
def embedder() -> CountingEmbedding:
    return CountingEmbedding(model_name="fake-hash", embed_batch_size=2048)


def test_sentences_end_at_punctuation_but_not_at_decimals_or_abbreviations():
    text = "We use e.g. the K2 robot (v1.2) at 3.5 km/h. Dr. Tan agreed! Did J. Smith? Yes."
    assert sentences(text) == [
        "We use e.g. the K2 robot (v1.2) at 3.5 km/h.",
        "Dr. Tan agreed!",
        "Did J. Smith?",
        "Yes.",
    ]


def test_indonesian_sentences_keep_abbreviations_and_numbers():
    text = (
        "Kecepatan maksimum robot adalah 1,5 m/detik, mis. di gudang Jl. Sudirman No. 5. "
        "Di zona pejalan kaki batasnya 0.8 m/detik; operator wajib hadir. Selesai!"
    )
    assert sentences(text) == [
        "Kecepatan maksimum robot adalah 1,5 m/detik, mis. di gudang Jl. Sudirman No. 5.",
        "Di zona pejalan kaki batasnya 0.8 m/detik;",
        "operator wajib hadir.",
        "Selesai!",
    ]


def test_cjk_sentences_need_no_space():
    assert sentences("这是第一句。这是第二句！好吗？") == ["这是第一句。", "这是第二句！", "好吗？"]


def test_wrapped_lines_join_but_items_rows_and_titles_split():
    text = (
        "2. Annual leave\n"
        "Full-time employees receive 22 days of paid annual leave, in addition to UK\n"
        "public holidays and the Christmas shutdown.\n\n"
        "Steps:\n- Charge the robot\n- Press start\n| part | weight |\n|---|---|\n| K2 | 48 kg |"
    )
    assert sentences(text) == [
        "2. Annual leave",
        "Full-time employees receive 22 days of paid annual leave, in addition to UK\n"
        "public holidays and the Christmas shutdown.",
        "Steps:",
        "- Charge the robot",
        "- Press start",
        "| part | weight |",
        "| K2 | 48 kg |",
    ]


@pytest.mark.parametrize("text", ["", "   \n\n ", "...", "|---|---|"])
def test_nothing_to_split_gives_no_spans(text):
    assert sentence_spans(text) == []


@pytest.mark.parametrize("text", [LEAVE, ROBOT, "  padded.  Two\n\n\nthree  ", "a.b. c? d! 。x"])
def test_spans_are_trimmed_ordered_and_inside_the_text(text):
    spans = sentence_spans(text)
    assert spans
    for (start, end), (next_start, _) in zip(spans, spans[1:] + [(len(text), 0)], strict=True):
        assert 0 <= start < end <= next_start <= len(text)
        assert text[start] == text[start].strip() and text[end - 1] == text[end - 1].strip()


def test_markers_belong_to_the_sentences_that_carry_them():
    answer = Answer(
        text="You may carry over 5 days [1]. They expire on 31 March. [1, 2] Charging takes 2.5 hours [2].",
        sources=[source(LEAVE), source(ROBOT)],
        refused=False,
    )
    assert claims_by_source(answer) == {
        1: "You may carry over 5 days. They expire on 31 March.",
        2: "They expire on 31 March. Charging takes 2.5 hours.",
    }


def test_a_cited_source_highlights_the_sentence_the_answer_rests_on(embedder):
    answer = Answer(
        text="Full-time employees receive 22 days [2]. The K2 battery charges fully in 2.5 hours [1].",
        sources=[source(ROBOT, "k2.docx"), source(LEAVE)],
        refused=False,
        cited=[2, 1],
    )
    spans = highlight(embedder, answer, "How long does charging take, and how much leave?")
    assert set(spans) == {1, 2}
    [(a, b)] = spans[1]
    assert ROBOT[a:b] == "Its battery charges fully in 2.5 hours at the dock."
    [(a, b)] = spans[2]
    assert LEAVE[a:b].startswith("Full-time employees receive 22 days")
    assert embedder.batches == 1  # every sentence of every source in one call


def test_refused_answer_and_uncited_sources_use_the_question(embedder):
    question = "By when must carried over leave days be taken?"
    # a refused answer's text is not evidence, even when it carries a marker
    refused = Answer(
        text="The documents do not contain the answer; see sickness rules [1].",
        sources=[source(LEAVE)],
        refused=True,
    )
    [(a, b)] = highlight(embedder, refused, question)[1]
    assert LEAVE[a:b].startswith("Up to 5 unused days") and LEAVE[a:b].endswith("31 March.")

    # the answer cites source 2 only; source 1 is matched against the question, not the answer
    answer = Answer(
        text="The robot is rated IP54 [2].", sources=[source(LEAVE), source(ROBOT)], refused=False
    )
    spans = highlight(embedder, answer, question)
    assert "31 March" in LEAVE[spans[1][0][0] : spans[1][0][1]]
    assert "IP54" in ROBOT[spans[2][0][0] : spans[2][0][1]]


def test_sentences_shared_by_overlapping_sources_are_embedded_once(embedder):
    answer = Answer(
        text="It weighs 48 kg [1].", sources=[source(ROBOT), source(ROBOT)], refused=False
    )
    spans = highlight(embedder, answer, "How heavy is the robot?")
    assert embedder.batches == 1 and embedder.embedded == len(sentence_spans(ROBOT))
    assert ROBOT[slice(*spans[1][0])] == "The K2 robot weighs 48 kg."


def test_per_source_adds_only_close_runners_up(embedder):
    claim = "Robots charge at the dock every night before the morning shift starts"
    text = f"{claim}. {claim} again. Invoices go to the finance team each month."
    answer = Answer(text=f"{claim} [1].", sources=[source(text)], refused=False)
    assert len(highlight(embedder, answer, "q", per_source=1)[1]) == 1
    picked = highlight(embedder, answer, "q", per_source=3)[1]
    assert [text[a:b] for a, b in picked] == [f"{claim}.", f"{claim} again."]


def test_sources_without_sentences_and_answers_without_sources(embedder):
    answer = Answer(text="Nothing [1].", sources=[source(""), source("...")], refused=False)
    assert highlight(embedder, answer, "anything") == {1: [], 2: []}
    assert highlight(embedder, Answer(text="x", sources=[], refused=True), "q") == {}
    assert embedder.batches == 0


def test_relevance_labels_follow_the_refusal_thresholds(rag_home):
    settings = load_settings(refuse_below=0.3, refuse_unless_similar=0.65)
    assert relevance(0.65, settings) == "strong"
    assert relevance(0.649, settings) == "partial"
    assert relevance(0.30, settings) == "partial"
    assert relevance(0.29, settings) == "weak"


def test_marked_cuts_the_text_into_runs():
    text = "One. Two. Three."
    assert marked(text, [(5, 9)]) == [("One. ", False), ("Two.", True), (" Three.", False)]
    assert marked(text, [(10, 99), (0, 4), (2, 3)]) == [
        ("One.", True),
        (" Two. ", False),
        ("Three.", True),
    ]
    assert marked(text, []) == [(text, False)]
    assert marked("", [(0, 3)]) == []
    assert "".join(piece for piece, _ in marked(text, [(4, 12), (8, 14)])) == text
