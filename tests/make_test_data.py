"""Regenerate the small fixture files in tests/data/ used by the loader unit tests.

Requirements (install into any scratch virtual environment):

    pip install fpdf2 python-docx pypdf python-pptx openpyxl pillow

Usage:

    python tests/make_test_data.py            # writes next to this script
    python tests/make_test_data.py OUT_DIR    # writes somewhere else

Files produced:

    three-pages.pdf  3 pages; markers "alpha/bravo/charlie page marker", one per page
    sample.docx      Heading 1, body paragraph, Heading 2, paragraph, 2x2 table
    page.html        title, script, style, nav, footer and a <main> with the real text
    notes.md         Markdown with "# Markdown Title" and "## Section Two"
    plain.txt        plain UTF-8 text containing "plain text marker"
    empty.txt        zero bytes
    corrupt.pdf      "%PDF-1.7" header followed by garbage; not a parseable PDF
    binary.txt       2048 pseudo-random bytes (fixed seed) including NUL bytes
    latin1.txt       ISO-8859-1 text that is NOT valid UTF-8
    encrypted.pdf    1-page PDF encrypted with user password "secret",
                     text "encrypted marker"

Everything except encrypted.pdf is byte-for-byte reproducible. The encrypted PDF
gets a fresh random document ID and key each run, so its bytes differ between runs
although its content and password stay the same.
"""

from __future__ import annotations

import datetime
import io
import random
import sys
from pathlib import Path

from docx import Document
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

FIXED_DATE = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def _pdf_bytes(pages: list[list[str]]) -> bytes:
    """Build a simple text PDF with one page per entry (explicit page breaks)."""
    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_auto_page_break(auto=True, margin=15)
    for lines in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        for line in lines:
            pdf.multi_cell(0, 7, line)
            pdf.ln(2)
    return bytes(pdf.output())


def make_three_pages_pdf(out: Path) -> None:
    pages = [
        [
            "This is the first page and it contains the alpha page marker.",
            "The alpha page talks about the start of the test document.",
        ],
        [
            "This is the second page and it contains the bravo page marker.",
            "The bravo page sits in the middle of the document.",
        ],
        [
            "This is the third page and it contains the charlie page marker.",
            "The charlie page is the last page of the document.",
        ],
    ]
    (out / "three-pages.pdf").write_bytes(_pdf_bytes(pages))


def make_docx(out: Path) -> None:
    doc = Document()
    cp = doc.core_properties
    cp.created = FIXED_DATE.replace(tzinfo=None)
    cp.modified = FIXED_DATE.replace(tzinfo=None)
    cp.last_modified_by = "make_data.py"
    cp.author = "make_data.py"
    cp.revision = 1
    doc.add_heading("Docx Title Heading", level=1)
    doc.add_paragraph("This paragraph contains the docx body marker for loader tests.")
    doc.add_heading("Second Section", level=2)
    doc.add_paragraph("The second section has its own short paragraph of text.")
    table = doc.add_table(rows=2, cols=2)
    table.style = "Table Grid"
    table.cell(0, 0).text = "table cell marker"
    table.cell(0, 1).text = "top right"
    table.cell(1, 0).text = "bottom left"
    table.cell(1, 1).text = "bottom right"
    buf = io.BytesIO()
    doc.save(buf)
    (out / "sample.docx").write_bytes(_normalise_zip_times(buf.getvalue()))


def _normalise_zip_times(data: bytes) -> bytes:
    """Rewrite a zip so every member has a fixed timestamp (reproducible output)."""
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            new = zipfile.ZipInfo(info.filename, date_time=(2026, 1, 1, 12, 0, 0))
            new.compress_type = zipfile.ZIP_DEFLATED
            new.external_attr = info.external_attr
            dst.writestr(new, src.read(info.filename))
    return buf.getvalue()


HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Html Test Page</title>
<script>var scriptMarker = 1;</script>
<style>.styleMarker{}</style>
</head>
<body>
<nav>nav boilerplate marker</nav>
<main>
<h1>Main Heading</h1>
<p>html body marker appears in the first paragraph of the main content.</p>
<h2>Sub Heading</h2>
<p>second html paragraph</p>
</main>
<footer>footer boilerplate marker</footer>
</body>
</html>
"""

MARKDOWN = """# Markdown Title

This first paragraph contains the markdown body marker used by the loader tests.

## Section Two

The second section holds another short paragraph with ordinary text.
"""

PLAIN = """This is a small plain text file.
It contains the plain text marker on this line.
A third line closes the file.
"""

LATIN1_TEXT = (
    "Menu du jour: café crème, croissant au beurre.\n"
    "Une façade naïve, un garçon très poli, déjà vu à l'hôtel.\n"
    "Prix: 4,50 £ ou ¥ selon la région; température 21°C.\n"
)


def make_text_files(out: Path) -> None:
    (out / "page.html").write_text(HTML, encoding="utf-8", newline="\n")
    (out / "notes.md").write_text(MARKDOWN, encoding="utf-8", newline="\n")
    (out / "plain.txt").write_text(PLAIN, encoding="utf-8", newline="\n")
    (out / "empty.txt").write_bytes(b"")
    (out / "latin1.txt").write_bytes(LATIN1_TEXT.encode("iso-8859-1"))


def make_binary_files(out: Path) -> None:
    rng = random.Random(20260101)
    data = bytearray(rng.getrandbits(8) for _ in range(2048))
    # Guarantee NUL bytes regardless of what the generator produced.
    for pos in (0, 17, 512, 1023, 2047):
        data[pos] = 0
    (out / "binary.txt").write_bytes(bytes(data))

    garbage_rng = random.Random(7)
    garbage = bytes(garbage_rng.getrandbits(8) for _ in range(600))
    (out / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + garbage + b"\nthis is not a pdf body\n")


def make_encrypted_pdf(out: Path) -> None:
    plain = _pdf_bytes([["This page holds the encrypted marker text for loader tests."]])
    reader = PdfReader(io.BytesIO(plain))
    writer = PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    writer.encrypt("secret")  # user password "secret"
    with open(out / "encrypted.pdf", "wb") as fh:
        writer.write(fh)


def make_pptx(out: Path) -> None:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for number, marker in enumerate(["first slide marker", "second slide marker"], start=1):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = f"Slide Title {number}"
        slide.placeholders[1].text = f"The {marker} sits in the body text."
    table_slide = deck.slides.add_slide(deck.slide_layouts[5])
    table_slide.shapes.title.text = "Numbers"
    table = table_slide.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (r, c), value in {
        (0, 0): "metric",
        (0, 1): "value",
        (1, 0): "pptx table marker",
        (1, 1): "42",
    }.items():
        table.cell(r, c).text = value
    table_slide.notes_slide.notes_text_frame.text = "speaker notes marker"
    deck.core_properties.title = "Deck Title"
    deck.save(out / "slides.pptx")


def make_xlsx(out: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Inventory"
    sheet.append(["Item", "Quantity", "Location"])
    sheet.append(["xlsx row marker", 12, "Shelf B"])
    sheet.append(["spare wheel", 4, None])
    second = book.create_sheet("Prices")
    second.append(["Item", "Price"])
    second.append(["second sheet marker", 9.5])
    book.save(out / "table.xlsx")


def make_epub(out: Path) -> None:
    import zipfile

    chapter = (
        '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
        "<head><title>{0}</title></head><body><h1>{0}</h1><p>{1}</p></body></html>"
    )
    files = {
        "mimetype": "application/epub+zip",
        "META-INF/container.xml": (
            '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
            '<rootfile full-path="OEBPS/book.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>"
        ),
        "OEBPS/book.opf": (
            '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
            '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Epub Test Book</dc:title>'
            '</metadata><manifest><item id="c1" href="text/one.xhtml" media-type="application/xhtml+xml"/>'
            '<item id="c2" href="text/two.xhtml" media-type="application/xhtml+xml"/></manifest>'
            '<spine><itemref idref="c1"/><itemref idref="c2"/></spine></package>'
        ),
        "OEBPS/text/one.xhtml": chapter.format("Chapter One", "The epub first chapter marker."),
        "OEBPS/text/two.xhtml": chapter.format("Chapter Two", "The epub second chapter marker."),
    }
    with zipfile.ZipFile(out / "book.epub", "w") as book:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            book.writestr(
                info,
                text,
                compress_type=zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED,
            )


def make_scanned_pdf(out: Path) -> None:
    """A PDF page that is only a picture of text (no text layer), as a scanner makes it."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (1700, 2200), color=255)
    draw = ImageDraw.Draw(image)
    font_path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    font = (
        ImageFont.truetype(str(font_path), 56) if font_path.exists() else ImageFont.load_default(56)
    )
    for line, text in enumerate(
        ["Scanned invoice number 4711", "Total due: 980 euros", "Paid by bank transfer"]
    ):
        draw.text((150, 200 + line * 120), text, fill=0, font=font)
    image.save(out / "scanned.pdf", "PDF", resolution=200.0)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    make_three_pages_pdf(out)
    make_docx(out)
    make_text_files(out)
    make_binary_files(out)
    make_encrypted_pdf(out)
    make_pptx(out)
    make_xlsx(out)
    make_epub(out)
    make_scanned_pdf(out)
    for path in sorted(out.iterdir()):
        if path.is_file() and path.name != Path(__file__).name:
            print(f"{path.stat().st_size:>7}  {path.name}")


if __name__ == "__main__":
    main()
