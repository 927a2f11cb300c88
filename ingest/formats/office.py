"""Office formats: DOCX (headings, paragraphs, tables), PPTX (per slide), XLSX (rows per sheet)."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.document import LoadedFile, Section, check_zip, clean_text, first_heading
from ingest.errors import LoadError, SkipFile


def load_docx(path: Path, max_unzipped_mb: float = 500.0) -> LoadedFile:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    check_zip(path, max_unzipped_mb)
    try:
        document = docx.Document(str(path))
    except (KeyError, ValueError) as exc:
        raise LoadError(
            f"not a valid DOCX file ({exc}); re-save it from your word processor"
        ) from None
    except Exception as exc:  # python-docx raises assorted errors on damaged packages
        raise LoadError(f"cannot read DOCX ({type(exc).__name__}: {exc})") from None
    lines: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            if not text:
                continue
            level = heading_level(block.style.name if block.style is not None else "")
            lines.append(f"{'#' * level} {text}" if level else text)
        elif isinstance(block, Table):
            lines.extend(table_rows(block))
        lines.append("")
    text = clean_text("\n".join(lines))
    title = (document.core_properties.title or "").strip() or first_heading(text) or path.stem
    return LoadedFile([Section(text=text, markdown=True)], title=title, parser="python-docx")


def heading_level(style_name: str) -> int:
    """Markdown heading level for a Word paragraph style ('Title' -> 1, 'Heading 2' -> 2)."""
    if style_name == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style_name)
    return min(int(match.group(1)), 6) if match else 0


def table_rows(table) -> list[str]:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            value = " ".join(cell.text.split())
            if not cells or cells[-1] != value:  # merged cells repeat their text
                cells.append(value)
        if any(cells):
            rows.append(" | ".join(cells))
    return rows


def load_pptx(path: Path, max_unzipped_mb: float = 500.0) -> LoadedFile:
    """One section per slide (page = slide number): title, text boxes, tables, speaker notes."""
    from pptx import Presentation

    check_zip(path, max_unzipped_mb)
    try:
        deck = Presentation(str(path))
    except Exception as exc:
        raise LoadError(f"cannot read PPTX ({type(exc).__name__}: {exc})") from None
    sections = []
    for number, slide in enumerate(deck.slides, start=1):
        title_shape = slide.shapes.title
        heading = " ".join(title_shape.text.split()) if title_shape is not None else ""
        lines = [f"# {heading}"] if heading else []
        for shape in slide.shapes:
            if shape is title_shape:
                continue
            if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
                lines.extend(p.text for p in shape.text_frame.paragraphs if p.text.strip())
            if getattr(shape, "has_table", False) and shape.has_table:
                lines.extend(table_rows(shape.table))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                lines.append(f"Notes: {notes}")
        text = clean_text("\n".join(lines))
        if text:
            sections.append(Section(text=text, page=number, heading=heading))
    title = (deck.core_properties.title or "").strip() or path.stem
    if not sections:
        raise SkipFile("no text on any slide")
    return LoadedFile(sections, title=title, parser="python-pptx")


def load_xlsx(path: Path, max_unzipped_mb: float = 500.0) -> LoadedFile:
    """One section per sheet; each row as 'header: value; …' so it keeps its meaning when split."""
    import openpyxl

    check_zip(path, max_unzipped_mb)
    try:
        book = openpyxl.load_workbook(str(path), read_only=True, data_only=True)
    except Exception as exc:
        raise LoadError(f"cannot read XLSX ({type(exc).__name__}: {exc})") from None
    sections = []
    try:
        for sheet in book.worksheets:
            rows = (
                [("" if v is None else str(v)).strip() for v in row]
                for row in sheet.iter_rows(values_only=True)
            )
            lines = rows_as_text([row for row in rows if any(row)])
            if lines:
                text = f"# {sheet.title}\n\n" + "\n".join(lines)
                sections.append(Section(text=text, heading=sheet.title))
    finally:
        book.close()
    if not sections:
        raise SkipFile("no cells with values in any sheet")
    return LoadedFile(sections, title=path.stem, parser="openpyxl")


def rows_as_text(rows: list[list[str]]) -> list[str]:
    """First row is the header; each later row becomes 'header: value; header: value'."""
    if not rows:
        return []
    header = [h or f"column {i + 1}" for i, h in enumerate(rows[0])]
    lines = [" | ".join(header)]
    for row in rows[1:]:
        cells = [
            f"{header[i] if i < len(header) else f'column {i + 1}'}: {cell}"
            for i, cell in enumerate(row)
            if cell
        ]
        lines.append("; ".join(cells))
    return lines
