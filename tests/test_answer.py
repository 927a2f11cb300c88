from rag.answer import (
    REFUSAL_TEXT,
    SYSTEM_PROMPT,
    Answer,
    SourceRef,
    build_messages,
    cited_numbers,
    fit_sources,
    is_refusal,
)


def source(n: int, page: int | None = None) -> SourceRef:
    return SourceRef(
        file=f"/docs/file{n}.pdf", page=page, score=1 - n / 10, text=f"text number {n}"
    )


def test_prompt_puts_constant_system_first_then_numbered_context_then_question():
    messages = build_messages("What is X?", [source(1, page=3), source(2)])
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    user = messages[1]["content"]
    assert user.index("[1] (file1.pdf, page 3)") < user.index("[2] (file2.pdf)")
    assert user.index("text number 2") < user.index("Question: What is X?")
    assert user.rstrip().endswith("Question: What is X?")


def test_system_prompt_is_identical_across_questions():
    first = build_messages("one?", [source(1)])[0]
    second = build_messages("two?", [source(2), source(3)])[0]
    assert first == second


def test_citation_numbers_are_distinct_in_order_and_in_range():
    assert cited_numbers("See [2] and [1], also [2].", 3) == [2, 1]
    assert cited_numbers("Both [1, 3] agree; [9] is out of range.", 3) == [1, 3]
    assert cited_numbers("no citations here", 3) == []


def test_fit_sources_drops_lowest_ranked_first():
    sources = [source(n) for n in range(1, 6)]
    whole = sum(len(m["content"].split()) + 8 for m in build_messages("q", sources))
    kept = fit_sources("q", sources, lambda t: len(t.split()), whole - 1)
    assert kept == sources[:4]
    assert fit_sources("q", sources, lambda t: len(t.split()), 10_000) == sources
    assert fit_sources("q", sources, lambda t: len(t.split()), 5) == []


def test_refusal_detection():
    assert is_refusal(REFUSAL_TEXT)
    assert is_refusal("I'm sorry, the documents don't contain that.")
    assert is_refusal("")
    assert not is_refusal("Employees get 22 days of leave [1].")


def test_answer_json_shape():
    answer = Answer(
        text="22 days [1]",
        sources=[source(1, page=2)],
        refused=False,
        timings={"retrieve_s": 0.1, "generate_s": 0.2, "total_s": 0.3},
        cited=[1],
        chunks_used=1,
    )
    data = answer.to_json()
    assert set(data) >= {"answer", "sources", "refused", "timings"}
    assert data["sources"][0] == {
        "file": "/docs/file1.pdf",
        "page": 2,
        "score": 0.9,
        "text": "text number 1",
        "title": "",
        "heading": "",
    }
    assert set(data["timings"]) == {"retrieve_s", "generate_s", "total_s"}


def _sentence(text: str, passage: str, source: int, support: float):
    from rag.answerability import Sentence

    start = passage.index(text)
    return Sentence(text, support, 0.0, source=source, span=(start, start + len(text)))


def test_trim_keeps_the_evidence_sentences_with_their_neighbours_and_marks_cuts():
    from rag.answer import trim_sources

    first = "Intro line. The port is 8080. It can be changed. Unrelated A. Unrelated B. Last one."
    second = "Nothing here. Also nothing. The default port is 8080 unless set."
    sources = [SourceRef("a.md", None, 0.9, first), SourceRef("b.md", None, 0.8, second)]
    supports = {
        0: [0.2, 0.9, 0.5, 0.1, 0.1, 0.1],
        1: [0.1, 0.1, 0.8],
    }
    pieces = {0: first, 1: second}
    sentences = []
    for number, text in pieces.items():
        parts = [p.strip() + ("" if p.strip().endswith(".") else ".") for p in text.split(". ")]
        for part, support in zip(parts, supports[number], strict=True):
            sentences.append(_sentence(part, text, number, support))

    trimmed = trim_sources(sources, sentences, margin=0.15)

    # source 1: its best (0.9) and the one within the margin (0.8 is in source 2), with neighbours
    assert trimmed[0].text == "Intro line. The port is 8080. It can be changed. …"
    assert trimmed[1].text == "… Also nothing. The default port is 8080 unless set."
    assert [s.text for s in sources] == [first, second]  # the reader's sources are unchanged


def test_trim_keeps_a_passage_whole_when_its_sentences_were_not_all_read():
    from rag.answer import trim_sources

    text = "One sentence. Another sentence. A third one."
    sources = [SourceRef("a.md", None, 0.9, text)]
    only_first = [_sentence("One sentence.", text, 0, 0.9)]
    assert trim_sources(sources, only_first, margin=0.1)[0].text == text
    assert trim_sources(sources, [], margin=0.1) == sources
