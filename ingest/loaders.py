"""File -> LoadedFile: picks the loader for a file's type and turns every failure into a reason.

PDF gives one section per page (1-based physical page number) and PPTX one per slide; other
formats give Markdown-like text whose `#` headings become heading paths when it is split.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import chain
from pathlib import Path

from ingest.document import (
    MAX_CELL_CHARS,
    MAX_FILE_CHARS,
    MAX_ROW_CELLS,
    MAX_ROW_CHARS,
    Budget,
    LoadedFile,
    Section,
    clean_text,
    decoded_pieces,
    first_heading,
    read_text,
)
from ingest.errors import FileProblem, LoadError, SkipFile
from ingest.formats.office import load_docx, load_pptx, load_xlsx, table_lines
from ingest.formats.pdf import load_pdf
from ingest.formats.web import load_epub, load_html

NEWLINE = re.compile(r"\r\n|\r|\n")


def load_markdown(path: Path, budget: Budget) -> LoadedFile:
    text = clean_text(read_text(path, budget))
    return LoadedFile(
        [Section(text=text, markdown=True)],
        title=first_heading(text) or path.stem,
        parser="markdown",
    )


def load_text(path: Path, budget: Budget) -> LoadedFile:
    text = clean_text(read_text(path, budget))
    return LoadedFile([Section(text=text)], title=path.stem, parser="text")


def load_csv(path: Path, budget: Budget) -> LoadedFile:
    """Each row as 'header: value; header: value', so every row keeps the meaning of its cells.

    Rows are read one at a time from the open file; a record is never longer than
    MAX_ROW_CHARS characters, so one endless line cannot fill the memory.
    """
    pieces = decoded_pieces(path)
    first = next(pieces, "")
    try:
        dialect = csv.Sniffer().sniff(first[:16384], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    csv.field_size_limit(max(csv.field_size_limit(), 2 * MAX_ROW_CHARS))  # ours stops first
    lines = RecordLines(chain([first], pieces), MAX_ROW_CHARS)
    reader = csv.reader(lines, dialect)
    kept: list[str] = []
    try:
        for line in table_lines(csv_rows(reader, lines, budget)):
            kept.append(budget.take(line + "\n"))
            if budget.full:
                break
    except csv.Error as exc:
        raise LoadError(
            f"malformed CSV at line {lines.number} ({exc}); check its quotes and delimiters"
        ) from exc
    if not kept:
        raise SkipFile("no rows in the table")
    return LoadedFile([Section(text="".join(kept).rstrip("\n"))], title=path.stem, parser="csv")


def csv_rows(reader, lines: RecordLines, budget: Budget) -> Iterator[list[str]]:
    """The non-blank rows of a csv.reader, cells capped by the budget."""
    for row in reader:
        was_cut, lines.record_cut, lines.fed = lines.record_cut, False, 0
        if not any(cell.strip() for cell in row):
            continue
        if was_cut:
            budget.cut_rows += 1
            row = row[: budget.max_row_cells]
        yield budget.cells([cell.strip() for cell in row])


class RecordLines:
    """Lines of decoded text for csv.reader. A line longer than `limit` characters is cut there
    (the rest of it is skipped, `record_cut` tells), and a record spanning lines (a quoted cell
    with line breaks) may not grow past `limit` characters either."""

    def __init__(self, pieces: Iterable[str], limit: int) -> None:
        self.pieces = pieces
        self.limit = limit
        self.fed = 0  # characters handed over since the last complete record
        self.record_cut = False
        self.number = 0  # lines handed over

    def __iter__(self) -> Iterator[str]:
        for line in self._lines():
            self.number += 1
            self.fed += len(line) - 1  # the line end does not count
            if self.fed > self.limit:
                raise csv.Error(
                    f"a record runs over {self.limit:,} characters (unbalanced quotes?)"
                )
            yield line

    def _lines(self) -> Iterator[str]:
        parts: list[str] = []
        size = 0
        for piece in self.pieces:
            start = 0
            for match in NEWLINE.finditer(piece):
                parts.append(self._fit(piece[start : match.start()], size))
                start = match.end()
                yield "".join(parts) + "\n"
                parts, size = [], 0
            rest = self._fit(piece[start:], size)
            parts.append(rest)
            size += len(rest)
        if size:
            yield "".join(parts) + "\n"

    def _fit(self, segment: str, size: int) -> str:
        """The part of a line's segment that fits after `size` characters of it."""
        room = max(0, self.limit - size)
        if len(segment) > room:
            self.record_cut = True
            return segment[:room]
        return segment


# Plain-text formats read as they are: notes, configuration, data and source code.
TEXT_SUFFIXES = [
    ".txt",
    ".text",
    ".rst",
    ".log",
    ".json",
    ".jsonl",
    ".yaml",
    ".yml",
    ".toml",
    ".ini",
    ".cfg",
    ".conf",
    ".xml",
    ".tex",
    ".py",
    ".js",
    ".ts",
    ".java",
    ".c",
    ".h",
    ".cpp",
    ".hpp",
    ".cs",
    ".go",
    ".rs",
    ".rb",
    ".php",
    ".sh",
    ".sql",
    ".r",
    ".kt",
    ".swift",
    ".scala",
    ".lua",
]

# Every loader takes (path, budget) and reads no more than the budget allows.
LOADERS: dict[str, Callable[..., LoadedFile]] = {
    **dict.fromkeys(TEXT_SUFFIXES, load_text),
    ".pptx": load_pptx,
    ".xlsx": load_xlsx,
    ".xlsm": load_xlsx,
    ".epub": load_epub,
    ".csv": load_csv,
    ".tsv": load_csv,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".html": load_html,
    ".htm": load_html,
    ".xhtml": load_html,
    ".md": load_markdown,
    ".markdown": load_markdown,
}


def supported_suffixes() -> list[str]:
    return sorted(LOADERS)


def load_file(
    path: Path,
    ocr: bool = False,
    max_unzipped_mb: float = 500.0,
    ocr_languages: str = "eng",
    max_file_chars: int = MAX_FILE_CHARS,
    max_cell_chars: int = MAX_CELL_CHARS,
    max_row_cells: int = MAX_ROW_CELLS,
) -> LoadedFile:
    """Read one file with the loader for its type; raise LoadError / SkipFile with a one-line
    reason. What it reads is capped (characters per file, cells per row, characters per cell);
    each cap that cut something adds one warning."""
    budget = Budget(max_file_chars, max_cell_chars, max_row_cells, max_unzipped_mb)
    try:
        loaded = read_with(path, budget, ocr, ocr_languages)
    except FileProblem as problem:
        raise type(problem)(one_line(problem.reason)) from problem
    loaded.warnings = [one_line(w) for w in [*loaded.warnings, *budget.warnings()]]
    return loaded


def read_with(path: Path, budget: Budget, ocr: bool, ocr_languages: str) -> LoadedFile:
    suffix = path.suffix.lower()
    loader = LOADERS.get(suffix)
    if loader is None:
        raise SkipFile(
            f"unsupported file type '{path.suffix or path.name}'; `ingest --help` lists the formats"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LoadError(f"cannot read file ({exc.strerror})") from exc
    if size == 0:
        raise SkipFile("empty file (0 bytes)")
    if suffix == ".pdf":
        loader = partial(load_pdf, ocr=ocr, ocr_languages=ocr_languages)
    try:
        loaded = loader(path, budget)
    except (LoadError, SkipFile):
        raise
    except PermissionError as exc:
        raise LoadError("permission denied; make the file readable (chmod +r)") from exc
    except OSError as exc:
        raise LoadError(f"cannot read file ({exc.strerror or exc})") from exc
    except MemoryError as exc:
        raise LoadError(
            f"{loaded_kind(path)} parser ran out of memory; split the file or raise "
            "RAG_PARSE_MEMORY_MB"
        ) from exc
    except Exception as exc:  # a parser bug on odd input must not end the batch
        raise LoadError(f"{loaded_kind(path)} parser failed ({type(exc).__name__}: {exc})") from exc
    if not any(section.text.strip() for section in loaded.sections):
        raise SkipFile("no text in the file (only whitespace)")
    return loaded


def one_line(text: str, limit: int = 500) -> str:
    """A reason or warning as one line: whitespace collapsed, at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def loaded_kind(path: Path) -> str:
    return path.suffix.lstrip(".").upper() or "file"
