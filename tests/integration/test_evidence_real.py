"""Evidence sentences chosen by the real embedded model, on real passages of the sample documents."""

import time

import pypdfium2 as pdfium
import pytest

from ingest.document import clean_text
from rag.answer import Answer, SourceRef
from rag.app import build_app
from rag.evidence import highlight, sentence_spans
from rag.preview import pdf_page_image
from rag.settings import load_settings
from tests.conftest import SAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.store_independent]

HANDBOOK = SAMPLES / "employee-handbook.pdf"


@pytest.fixture(scope="module")
def embedder():
    app = build_app(load_settings())
    yield app.models.embedder
    app.close()


def handbook_pages() -> list[str]:
    pdf = pdfium.PdfDocument(str(HANDBOOK))
    try:
        return [clean_text(pdf[i].get_textpage().get_text_range()) for i in range(len(pdf))]
    finally:
        pdf.close()


def test_the_sentence_an_answer_rests_on_is_marked_in_five_real_passages(embedder):
    pages = handbook_pages()
    sources = [
        SourceRef(file=str(HANDBOOK), page=n, score=0.5, text=pages[n - 1]) for n in (2, 1, 3, 4, 5)
    ]
    answer = Answer(
        text="You can carry up to 5 unused days into the next leave year; "
        "they must be used by 31 March [1].",
        sources=sources,
        refused=False,
        cited=[1],
    )
    started = time.perf_counter()
    spans = highlight(embedder, answer, "How many unused leave days can I carry over?")
    seconds = time.perf_counter() - started
    print(f"highlight() for 5 sources: {seconds:.2f} s")

    text = sources[0].text
    [(start, end)] = spans[1]
    assert text[start:end].startswith("Up to 5 unused days may be carried into the next leave year")
    first = sentence_spans(text)[0]
    assert start > first[1] + 500  # far from the passage's first sentence
    assert all(len(spans[n]) == 1 for n in range(1, 6))

    # the page a reader opens shows the same passage boxed
    preview = pdf_page_image(HANDBOOK, 2, text[start:end])
    assert len(preview.boxes) == 2  # the sentence wraps onto a second line


def test_a_refused_answer_marks_what_the_question_asks_in_an_indonesian_table(embedder):
    guide = (SAMPLES / "panduan-keselamatan.md").read_text()
    section = guide[guide.index("## 3.") : guide.index("## 4.")]
    answer = Answer(
        text="The documents do not contain the answer.",
        sources=[SourceRef(file="panduan-keselamatan.md", page=None, score=0.4, text=section)],
        refused=True,
    )
    question = "Berapa kecepatan maksimum robot di zona pejalan kaki?"
    marked = [section[a:b] for a, b in highlight(embedder, answer, question, per_source=2)[1]]
    assert (
        "| Zona pejalan kaki (area bersama) | Kuning | Robot dan pekerja | 0,8 m/detik |" in marked
    )
