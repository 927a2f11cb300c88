"""Page previews: the rendered PDF page, the passage's lines boxed, and one-line reasons when not."""

import io
import shutil

import pypdfium2 as pdfium
import pytest
from PIL import Image

from bench.corpus import make_long_pdf
from rag.errors import UserError
from rag.preview import PreviewError, find_passage, pdf_page_image
from tests.conftest import DATA

THREE = DATA / "three-pages.pdf"
BRAVO_1 = "This is the second page and it contains the bravo page marker."
BRAVO_2 = "The bravo page sits in the middle of the document."


def page_lines(path, page: int) -> list[str]:
    pdf = pdfium.PdfDocument(str(path))
    try:
        return pdf[page - 1].get_textpage().get_text_range().splitlines()
    finally:
        pdf.close()


def image_of(preview):
    image = Image.open(io.BytesIO(preview.png))
    assert image.format == "PNG"
    assert image.size == (preview.width, preview.height)
    return image.convert("RGB")


def inside(box, preview) -> bool:
    x0, y0, x1, y1 = box
    return 0 <= x0 < x1 <= preview.width and 0 <= y0 < y1 <= preview.height


def test_the_page_image_has_the_page_shape_and_the_passage_lines_boxed():
    preview = pdf_page_image(THREE, 2, BRAVO_2)
    assert preview.width / preview.height == pytest.approx(595.28 / 841.89, rel=0.01)
    assert preview.width == pytest.approx(595.28 * 1.5, abs=2)
    [box] = preview.boxes
    assert inside(box, preview)
    [first_line] = pdf_page_image(THREE, 2, BRAVO_1).boxes
    assert first_line[3] <= box[1] + 4  # the second sentence is the line below the first
    image = image_of(preview)
    red, green, blue = image.getpixel((box[0] + 1, box[1] + 1))
    assert red > 200 and green > 180 and blue < 200  # yellow over the white page
    assert image.getpixel((box[0] + 1, box[3] + 40)) == (255, 255, 255)


def test_a_passage_with_other_spacing_and_hyphens_finds_every_line(tmp_path):
    pdf = make_long_pdf(tmp_path / "long.pdf", pages=2)
    lines = page_lines(pdf, 2)[2:5]  # three wrapped lines of the page's paragraph
    passage = " ".join(" ".join(lines).split())  # the stored chunk's normalized whitespace
    passage = passage.replace(" ", "-\n", 1)  # and a hyphenation the page does not have
    preview = pdf_page_image(pdf, 2, passage)
    assert len(preview.boxes) == 3
    assert all(inside(box, preview) for box in preview.boxes)
    tops = sorted(box[1] for box in preview.boxes)
    assert tops[0] > preview.height * 0.05 and tops[-1] < preview.height * 0.3
    assert pdf_page_image(pdf, 1, passage).boxes == []  # page 1 does not hold it


def test_a_partly_different_passage_still_marks_the_matching_lines(tmp_path):
    pdf = make_long_pdf(tmp_path / "long.pdf", pages=2)
    lines = page_lines(pdf, 2)[2:5]
    words = " ".join(lines).split()
    words[len(words) // 2] = "CHANGED"
    boxes = pdf_page_image(pdf, 2, " ".join(words)).boxes
    assert 2 <= len(boxes) <= 4


def test_a_rotated_page_gets_boxes_on_the_rotated_image(tmp_path):
    pdf = pdfium.PdfDocument(str(THREE))
    pdf[1].set_rotation(90)
    pdf.save(tmp_path / "rotated.pdf")
    pdf.close()
    preview = pdf_page_image(tmp_path / "rotated.pdf", 2, BRAVO_2)
    assert preview.width > preview.height
    [(x0, y0, x1, y1)] = preview.boxes
    assert y1 - y0 > 5 * (x1 - x0)  # the line runs down the image
    assert inside((x0, y0, x1, y1), preview)


def test_no_text_layer_or_no_match_gives_the_page_without_boxes():
    scanned = pdf_page_image(DATA / "scanned.pdf", 1, BRAVO_2)
    assert scanned.boxes == [] and image_of(scanned).size == (scanned.width, scanned.height)
    assert pdf_page_image(THREE, 1, BRAVO_2).boxes == []
    assert pdf_page_image(THREE, 2, "").boxes == []
    assert pdf_page_image(THREE, 2, "bravo").boxes == []  # too short to mean anything


def test_find_passage_maps_back_to_page_characters():
    chars = list("Intro.\r\nThe docu-\r\nment is ﬁne.\r\nEnd.")
    [(first, last)] = find_passage(chars, "The document is fine.")
    assert "".join(chars[first : last + 1]) == "The docu-\r\nment is ﬁne."


@pytest.mark.parametrize(
    ("name", "page", "expected"),
    [
        ("gone.pdf", 1, "gone.pdf no longer exists at "),
        ("plain.txt", 1, "plain.txt is not a PDF"),
        ("three-pages.pdf", 4, "three-pages.pdf has 3 page(s), so page 4 cannot be shown"),
        ("three-pages.pdf", 0, "so page 0 cannot be shown"),
        ("encrypted.pdf", 1, "encrypted.pdf is encrypted (password required)"),
        ("corrupt.pdf", 1, "corrupt.pdf is damaged or unreadable"),
    ],
)
def test_problems_are_one_line_user_errors(tmp_path, name, page, expected):
    path = tmp_path / name
    if (DATA / name).exists():
        shutil.copy(DATA / name, path)
    with pytest.raises(PreviewError) as caught:
        pdf_page_image(path, page, BRAVO_2)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and len(message) < 200
    assert isinstance(caught.value, UserError)
    if name == "gone.pdf":
        assert str(path) in message and "`ingest`" in message
