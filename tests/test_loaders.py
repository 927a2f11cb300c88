import os
import shutil
import zipfile

import pytest

from ingest.document import compact_ranges
from ingest.errors import LoadError, SkipFile
from ingest.loaders import load_file
from tests.conftest import DATA


def test_pdf_keeps_one_section_per_page_with_page_numbers():
    loaded = load_file(DATA / "three-pages.pdf")
    assert [s.page for s in loaded.sections] == [1, 2, 3]
    for section, marker in zip(loaded.sections, ["alpha", "bravo", "charlie"], strict=True):
        assert f"{marker} page marker" in section.text
        others = {"alpha", "bravo", "charlie"} - {marker}
        assert not any(f"{o} page marker" in section.text for o in others)
    assert loaded.parser == "pypdfium2"


def test_docx_keeps_headings_paragraphs_and_tables():
    loaded = load_file(DATA / "sample.docx")
    text = loaded.sections[0].text
    assert "# Docx Title Heading" in text
    assert "## Second Section" in text
    assert "docx body marker" in text
    assert "table cell marker" in text
    assert loaded.sections[0].page is None


def test_html_keeps_main_text_and_drops_scripts_styles_navigation():
    loaded = load_file(DATA / "page.html")
    text = loaded.sections[0].text
    assert loaded.title == "Html Test Page"
    assert "# Main Heading" in text and "## Sub Heading" in text
    assert "html body marker" in text and "second html paragraph" in text
    for boilerplate in ("scriptMarker", "styleMarker", "nav boilerplate", "footer boilerplate"):
        assert boilerplate not in text


def test_html_without_main_drops_header_and_footer(tmp_path):
    page = tmp_path / "plain.html"
    page.write_text(
        "<html><body><header>site banner</header><div><h2>Topic</h2><p>real content</p>"
        "<table><tr><th>key</th><th>value</th></tr><tr><td>speed</td><td>2 m/s</td></tr></table>"
        "</div><footer>copyright line</footer></body></html>"
    )
    text = load_file(page).sections[0].text
    assert "real content" in text and "## Topic" in text
    assert "speed | 2 m/s" in text
    assert "site banner" not in text and "copyright line" not in text


def test_markdown_and_text():
    markdown = load_file(DATA / "notes.md")
    assert markdown.title == "Markdown Title"
    assert "markdown body marker" in markdown.sections[0].text
    assert markdown.sections[0].markdown
    text = load_file(DATA / "plain.txt")
    assert "plain text marker" in text.sections[0].text
    assert not text.sections[0].markdown


def test_utf8_bom_and_utf16_text(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffcafé au lait".encode("utf-8"))
    (tmp_path / "wide.txt").write_bytes("wide text é".encode("utf-16"))
    assert load_file(tmp_path / "bom.txt").sections[0].text == "café au lait"
    assert load_file(tmp_path / "wide.txt").sections[0].text == "wide text é"


@pytest.mark.parametrize(
    ("name", "problem", "reason"),
    [
        ("empty.txt", SkipFile, "empty file"),
        ("corrupt.pdf", LoadError, "corrupt or unreadable PDF"),
        ("encrypted.pdf", LoadError, "encrypted PDF"),
        ("binary.txt", LoadError, "binary data"),
        ("latin1.txt", LoadError, "not UTF-8 text"),
        ("image.png", SkipFile, "unsupported file type '.png'"),
    ],
)
def test_bad_files_raise_a_typed_problem_with_a_reason(name, problem, reason):
    with pytest.raises(problem) as info:
        load_file(DATA / name)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


def test_corrupt_docx_and_whitespace_only_file(tmp_path):
    (tmp_path / "broken.docx").write_bytes(b"PK\x03\x04 this is not a real zip")
    (tmp_path / "blank.md").write_text("   \n\n  \n")
    with pytest.raises(LoadError, match="DOCX"):
        load_file(tmp_path / "broken.docx")
    with pytest.raises(SkipFile, match="no text"):
        load_file(tmp_path / "blank.md")


def test_compact_ranges():
    assert compact_ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10"
    assert compact_ranges([4]) == "4"


def test_csv_rows_keep_their_header(tmp_path):
    table = tmp_path / "sizes.csv"
    table.write_text('Task,Size (MB),Notes\nGNOME,3216,"default, big"\n\nXfce,2509,\n')
    text = load_file(table).sections[0].text
    assert text.splitlines() == [
        "Task | Size (MB) | Notes",
        "Task: GNOME; Size (MB): 3216; Notes: default, big",
        "Task: Xfce; Size (MB): 2509",
    ]


def test_source_code_and_config_are_read_as_text(tmp_path):
    (tmp_path / "tool.py").write_text("def answer():\n    return 42\n")
    (tmp_path / "conf.yaml").write_text("retries: 3\n")
    assert "return 42" in load_file(tmp_path / "tool.py").sections[0].text
    assert load_file(tmp_path / "conf.yaml").parser == "text"


def test_pptx_one_section_per_slide_with_title_table_and_notes():
    loaded = load_file(DATA / "slides.pptx")
    assert loaded.title == "Deck Title"
    assert [s.page for s in loaded.sections] == [1, 2, 3]
    assert loaded.sections[0].heading == "Slide Title 1"
    assert "first slide marker" in loaded.sections[0].text
    assert "second slide marker" in loaded.sections[1].text
    assert "pptx table marker | 42" in loaded.sections[2].text
    assert "speaker notes marker" in loaded.sections[2].text


def test_xlsx_rows_keep_headers_per_sheet():
    loaded = load_file(DATA / "table.xlsx")
    assert [s.heading for s in loaded.sections] == ["Inventory", "Prices"]
    assert "Item: xlsx row marker; Quantity: 12; Location: Shelf B" in loaded.sections[0].text
    assert "Item: spare wheel; Quantity: 4" in loaded.sections[0].text
    assert "Item: second sheet marker; Price: 9.5" in loaded.sections[1].text


def test_epub_chapters_in_spine_order():
    loaded = load_file(DATA / "book.epub")
    assert loaded.title == "Epub Test Book"
    assert [s.heading for s in loaded.sections] == ["Chapter One", "Chapter Two"]
    assert "first chapter marker" in loaded.sections[0].text


def test_scanned_pdf_is_reported_and_read_with_ocr():
    with pytest.raises(SkipFile, match="no text layer.*--ocr"):
        load_file(DATA / "scanned.pdf")
    if not shutil.which("tesseract") and not os.environ.get("CI"):
        pytest.skip("tesseract-ocr is not installed (apt-get install tesseract-ocr)")
    loaded = load_file(DATA / "scanned.pdf", ocr=True)
    text = loaded.sections[0].text
    assert loaded.sections[0].page == 1
    assert "4711" in text and "980" in text
    assert any("OCR" in w for w in loaded.warnings)


def test_zip_bomb_and_truncated_packages_are_refused(tmp_path):
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (3 * 1024 * 1024))
    assert bomb.stat().st_size < 20_000
    with pytest.raises(LoadError, match="decompresses to 3 MB, over the 1 MB limit"):
        load_file(bomb, max_unzipped_mb=1)
    for name in ("slides.pptx", "table.xlsx", "book.epub", "sample.docx"):
        truncated = tmp_path / name
        truncated.write_bytes((DATA / name).read_bytes()[:300])
        with pytest.raises(LoadError, match="damaged"):
            load_file(truncated)
