"""Office formats: DOCX (headings, paragraphs, tables), PPTX (per slide), XLSX (rows per sheet)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from ingest.document import Budget, LoadedFile, Section, check_zip, clean_text, first_heading
from ingest.errors import LoadError, SkipFile


def load_docx(path: Path, budget: Budget) -> LoadedFile:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    check_zip(path, budget.max_unzipped_mb)
    try:
        document = docx.Document(str(path))
    except (KeyError, ValueError) as exc:
        raise LoadError(
            f"not a valid DOCX file ({exc}); re-save it from your word processor"
        ) from exc
    except Exception as exc:  # python-docx raises assorted errors on damaged packages
        raise LoadError(f"cannot read DOCX ({type(exc).__name__}: {exc})") from exc
    lines: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            if not text:
                continue
            level = heading_level(block.style.name if block.style is not None else "")
            lines.append(budget.take(f"{'#' * level} {text}\n" if level else f"{text}\n"))
        elif isinstance(block, Table):
            lines.extend(budget.take(row + "\n") for row in table_rows(block, budget))
        lines.append(budget.take("\n"))
        if budget.full:
            break
    text = clean_text("".join(lines))
    title = (document.core_properties.title or "").strip() or first_heading(text) or path.stem
    return LoadedFile([Section(text=text, markdown=True)], title=title, parser="python-docx")


def heading_level(style_name: str) -> int:
    """Markdown heading level for a Word paragraph style ('Title' -> 1, 'Heading 2' -> 2)."""
    if style_name == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style_name)
    return min(int(match.group(1)), 6) if match else 0


def table_rows(table, budget: Budget) -> Iterator[str]:
    """A Word or PowerPoint table's rows as 'cell | cell', merged cells once, cells capped."""
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            value = " ".join(cell.text.split())
            if not cells or cells[-1] != value:  # merged cells repeat their text
                cells.append(value)
        if any(cells):
            yield " | ".join(budget.cells(cells))


def load_pptx(path: Path, budget: Budget) -> LoadedFile:
    """One section per slide (page = slide number): title, text boxes, tables, speaker notes."""
    from pptx import Presentation

    check_zip(path, budget.max_unzipped_mb)
    try:
        deck = Presentation(str(path))
    except Exception as exc:
        raise LoadError(f"cannot read PPTX ({type(exc).__name__}: {exc})") from exc
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
                lines.extend(table_rows(shape.table, budget))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                lines.append(f"Notes: {notes}")
        text = clean_text(budget.take("\n".join(lines)))
        if text:
            sections.append(Section(text=text, page=number, heading=heading))
        if budget.full:
            break
    title = (deck.core_properties.title or "").strip() or path.stem
    if not sections:
        raise SkipFile("no text on any slide")
    return LoadedFile(sections, title=title, parser="python-pptx")


def load_xlsx(path: Path, budget: Budget) -> LoadedFile:
    """One section per sheet; each row as 'header: value; …' so it keeps its meaning when split.

    Rows stream from the sheet (read-only mode) and are never wider than the cell cap + 1."""
    import openpyxl

    check_zip(path, budget.max_unzipped_mb)
    try:
        book = openpyxl.load_workbook(str(path), read_only=True, data_only=True)
    except Exception as exc:
        raise LoadError(f"cannot read XLSX ({type(exc).__name__}: {exc})") from exc
    sections = []
    try:
        for sheet in book.worksheets:
            width = budget.max_row_cells + 1  # one more than kept, to see that a row was cut
            rows = (
                budget.cells(cell_texts(row))
                for row in sheet.iter_rows(values_only=True, max_col=width)
                if row.count(None) != len(row)
            )
            lines = [budget.take(f"# {sheet.title}\n\n")]
            for line in table_lines(row for row in rows if any(row)):
                lines.append(budget.take(line + "\n"))
                if budget.full:
                    break
            if len(lines) > 1:
                text = "".join(lines).rstrip("\n")
                sections.append(Section(text=text, heading=sheet.title))
            if budget.full:
                break
    finally:
        book.close()
    if not sections:
        raise SkipFile("no cells with values in any sheet")
    return LoadedFile(sections, title=path.stem, parser="openpyxl")


def cell_texts(row: tuple) -> list[str]:
    return [("" if v is None else str(v)).strip() for v in row]


def table_lines(rows: Iterable[list[str]]) -> Iterator[str]:
    """First row is the header; each later row becomes 'header: value; header: value'."""
    header: list[str] | None = None
    for row in rows:
        if header is None:
            header = [h or f"column {i + 1}" for i, h in enumerate(row)]
            yield " | ".join(header)
            continue
        cells = [
            f"{header[i] if i < len(header) else f'column {i + 1}'}: {cell}"
            for i, cell in enumerate(row)
            if cell
        ]
        yield "; ".join(cells)
