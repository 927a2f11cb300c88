"""A picture of one PDF page with a passage's lines highlighted (pypdfium2 and PIL).

The passage is a stored chunk: its whitespace, line breaks and hyphens may differ from the page's
text layer, so both are compared as lower-case letters and digits only, and each matched letter
leads back to its character on the page; pdfium then gives the matched characters' line boxes.
"""

from __future__ import annotations

import io
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import UserError
from rag.evidence import sentence_spans

MAX_SIDE = 3000  # pixels: a poster-sized page is drawn smaller rather than exhausting memory
HIGHLIGHT = (255, 214, 0, 96)  # translucent yellow
PAD = 2  # pixels around each line box
WINDOW = 8  # words per piece when a whole sentence of the passage is not found on the page
MIN_KEY = 12  # letters and digits a piece needs before a match of it means anything
# pdfium is not thread-safe, and the page's sessions run in threads of one process.
_PDFIUM = threading.Lock()


class PreviewError(UserError):
    """The page cannot be shown; the message names the file and what to do."""


@dataclass
class PagePreview:
    """A rendered page as PNG bytes, its size in pixels, and the highlighted boxes (x0, y0, x1, y1)."""

    png: bytes
    width: int
    height: int
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


def pdf_page_image(path, page: int, passage: str, scale: float = 1.5) -> PagePreview:
    """Page `page` (1-based) of the PDF at `path`, with the lines of `passage` highlighted.

    Without a text layer, or when the passage is not found on the page, the page comes without boxes.
    """
    import pypdfium2 as pdfium

    path = Path(path)
    check_pdf(path)
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as exc:
            if "password" in str(exc).lower():
                raise PreviewError(
                    f"{path.name} is encrypted (password required); save an unencrypted copy "
                    "and re-add it with `ingest`"
                ) from exc
            raise PreviewError(
                f"{path.name} is damaged or unreadable ({reason(exc)}); repair or re-export it "
                "and re-add it with `ingest`"
            ) from exc
        try:
            count = len(pdf)
            if not 1 <= page <= count:
                raise PreviewError(
                    f"{path.name} has {count} page(s), so page {page} cannot be shown; if the file "
                    "changed since it was added, re-add it with `ingest`"
                )
            return render(pdf[page - 1], passage, scale)
        except pdfium.PdfiumError as exc:
            raise PreviewError(
                f"page {page} of {path.name} cannot be drawn ({reason(exc)}); repair or re-export the file "
                "and re-add it with `ingest`"
            ) from exc
        finally:
            pdf.close()


def reason(exc: Exception) -> str:
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def check_pdf(path: Path) -> None:
    """The one-line reasons a file cannot be previewed before pdfium is asked."""
    if not path.exists():
        raise PreviewError(f"{path.name} no longer exists at {path}; re-add it with `ingest`")
    if path.is_dir():
        raise PreviewError(f"{path} is a folder, not a PDF; only PDF pages can be shown as images")
    try:
        with path.open("rb") as handle:
            head = handle.read(1024)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PreviewError(f"{path} cannot be read ({reason}); check its permissions") from exc
    if b"%PDF-" not in head:
        raise PreviewError(f"{path.name} is not a PDF; only PDF pages can be shown as images")


def render(page, passage: str, scale: float) -> PagePreview:
    from PIL import Image, ImageDraw

    width, height = page.get_size()
    scale = max(min(scale, MAX_SIDE / max(width, height, 1.0)), 0.05)
    bitmap = page.render(scale=scale)
    image = bitmap.to_pil().convert("RGBA")
    boxes = passage_boxes(page, bitmap, passage, image.size)
    if boxes:
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for box in boxes:
            draw.rectangle(box, fill=HIGHLIGHT)
        image = Image.alpha_composite(image, overlay)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG")
    return PagePreview(out.getvalue(), image.width, image.height, boxes)


def passage_boxes(
    page, bitmap, passage: str, size: tuple[int, int]
) -> list[tuple[int, int, int, int]]:
    """Pixel boxes of the page's text lines that hold the passage (none without a text layer)."""
    import pypdfium2.raw as pdfium_c

    textpage = page.get_textpage()
    try:
        chars = [
            chr(pdfium_c.FPDFText_GetUnicode(textpage, i)) for i in range(textpage.count_chars())
        ]
        convert = bitmap.get_posconv(page)
        boxes: list[tuple[int, int, int, int]] = []
        for first, last in find_passage(chars, passage):
            for index in range(textpage.count_rects(first, last - first + 1)):
                left, bottom, right, top = textpage.get_rect(index)
                box = pixel_box(
                    convert.to_bitmap(left, top), convert.to_bitmap(right, bottom), size
                )
                if box and box not in boxes:
                    boxes.append(box)
        return boxes
    finally:
        textpage.close()


def pixel_box(corner, other, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    x0, x1 = sorted((corner[0], other[0]))
    y0, y1 = sorted((corner[1], other[1]))
    box = (
        max(0, int(x0) - PAD),
        max(0, int(y0) - PAD),
        min(size[0] - 1, int(x1) + PAD),
        min(size[1] - 1, int(y1) + PAD),
    )
    return box if box[2] > box[0] and box[3] > box[1] else None


def find_passage(chars: list[str], passage: str) -> list[tuple[int, int]]:
    """Ranges (first, last) of page character indices that hold the passage, in page order.

    The whole passage is looked for first; failing that, each of its sentences, and failing that,
    each run of WINDOW words, so a passage that differs from the page here and there still shows.
    """
    key, owner = [], []
    for index, char in enumerate(chars):
        for letter in normalized(char):
            key.append(letter)
            owner.append(index)
    page_key = "".join(key)
    if not page_key:
        return []
    found: list[tuple[int, int]] = []
    cursor = 0

    def look(piece: str) -> bool:
        nonlocal cursor
        wanted = normalized(piece)
        if len(wanted) < MIN_KEY:
            return False
        at = page_key.find(wanted, cursor)
        if at < 0:
            at = page_key.find(wanted)
        if at < 0:
            return False
        last = owner[at + len(wanted) - 1]
        while (
            last + 1 < len(chars)
            and not chars[last + 1].isspace()
            and not chars[last + 1].isalnum()
        ):
            last += 1  # the closing full stop, bracket or quote
        found.append((owner[at], last))
        cursor = at + len(wanted)
        return True

    if not look(passage):
        for start, end in sentence_spans(passage):
            if look(passage[start:end]):
                continue
            words = passage[start:end].split()
            for first in range(0, len(words), WINDOW):
                window = words[first : first + WINDOW]
                if len(window) < WINDOW and len(words) > WINDOW:
                    window = words[-WINDOW:]
                look(" ".join(window))
    return sorted(set(found))


def normalized(text: str) -> str:
    """Lower-case letters and digits only: spacing, line breaks, hyphens and ligatures differ."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).casefold() if c.isalnum())
