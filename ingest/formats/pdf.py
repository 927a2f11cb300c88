"""PDF: text per page with its 1-based physical page number; optional OCR for scanned pages."""

from __future__ import annotations

import shutil
from pathlib import Path

from ingest.document import Budget, LoadedFile, Section, clean_text, compact_ranges
from ingest.errors import LoadError, SkipFile

OCR_DPI = 300


def load_pdf(
    path: Path, budget: Budget, ocr: bool = False, ocr_languages: str = "eng"
) -> LoadedFile:
    """Pages in order until the budget's character cap is reached; later pages are not read."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise LoadError(
                "encrypted PDF (password required); save an unencrypted copy "
                "(e.g. `qpdf --decrypt in.pdf out.pdf`) and ingest that"
            ) from exc
        raise LoadError(f"corrupt or unreadable PDF ({exc}); re-export or repair the file") from exc
    warnings: list[str] = []
    try:
        title = (pdf.get_metadata_dict().get("Title") or "").strip() or path.stem
        page_count = len(pdf)
        sections: list[Section] = []
        empty: list[int] = []
        read_by_ocr: list[int] = []
        can_ocr = ocr and tesseract_available(warnings)
        headings = outline_headings(pdf, page_count)
        for index in range(page_count):
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                # one character more than the cap allows shows that the cap was hit
                count = min(textpage.count_chars(), budget.max_chars - budget.used + 1)
                raw = textpage.get_text_range(count=count) if count > 0 else ""
                text = clean_text(budget.take(raw))
                textpage.close()
                if not text and can_ocr and not budget.full:
                    text = clean_text(budget.take(ocr_page(page, ocr_languages)))
                    if text:
                        read_by_ocr.append(index + 1)
            finally:
                page.close()
            if text:
                sections.append(Section(text=text, page=index + 1, heading=headings[index]))
            elif not budget.full:
                empty.append(index + 1)
            if budget.full:
                break
    finally:
        pdf.close()
    if read_by_ocr:
        warnings.append(f"page(s) {compact_ranges(read_by_ocr)} read by OCR")
    if not sections:
        hint = "" if ocr else "; re-run with --ocr (needs tesseract-ocr) to read it"
        raise SkipFile(f"no text layer on any of its {page_count} pages (scanned PDF?){hint}")
    if empty:
        hint = "" if ocr else "; --ocr reads them"
        warnings.append(f"no text layer on page(s) {compact_ranges(empty)} (scanned?){hint}")
    return LoadedFile(sections=sections, title=title, parser="pypdfium2", warnings=warnings)


def outline_headings(pdf, page_count: int) -> list[str]:
    """Each page's heading path from the PDF outline (bookmarks): 'Chapter > Section'."""
    headings = [""] * page_count
    try:
        items = []
        for mark in pdf.get_toc(max_depth=6):
            dest = mark.get_dest()
            page_index = dest.get_index() if dest is not None else None
            items.append((page_index, mark.level, (mark.get_title() or "").strip()))
    except Exception:  # a damaged outline must not cost the text
        return headings
    starts: list[tuple[int, str]] = []
    stack: list[tuple[int, str]] = []
    for page_index, level, title in items:
        if page_index is None or not title or not 0 <= page_index < page_count:
            continue
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        starts.append((page_index, " > ".join(t for _, t in stack)[:300]))
    starts.sort(key=lambda item: item[0])
    current, position = "", 0
    for page in range(page_count):
        while position < len(starts) and starts[position][0] <= page:
            current = starts[position][1]
            position += 1
        headings[page] = current
    return headings


def tesseract_available(warnings: list[str]) -> bool:
    if shutil.which("tesseract"):
        return True
    warnings.append("OCR asked for but Tesseract is not installed (apt-get install tesseract-ocr)")
    return False


def ocr_page(page, languages: str) -> str:
    import pytesseract

    image = page.render(scale=OCR_DPI / 72).to_pil()
    return pytesseract.image_to_string(image, lang=languages)
