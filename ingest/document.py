"""What loaders produce (sections of text with page/heading), and helpers they share."""

from __future__ import annotations

import codecs
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import LoadError

BINARY_SNIFF_BYTES = 8192


@dataclass
class Section:
    """A piece of a document: text, page (PDF page / slide), heading, and whether it is Markdown."""

    text: str
    page: int | None = None
    markdown: bool = False
    heading: str = ""


@dataclass
class LoadedFile:
    """What a loader read from one file."""

    sections: list[Section]
    title: str
    parser: str
    warnings: list[str] = field(default_factory=list)


# Defaults of the caps; the settings (RAG_MAX_FILE_CHARS, ...) override them.
MAX_FILE_CHARS = 5_000_000
MAX_CELL_CHARS = 10_000
MAX_ROW_CELLS = 1_000
MAX_ROW_CHARS = 1_000_000  # a longer table row is cut: one row's cells must fit in memory
READ_BLOCK_BYTES = 1 << 20


@dataclass
class Budget:
    """Caps on what one file may yield, and a count of what was cut to fit them.

    Loaders take text through it piece by piece and stop reading once it is full, so memory
    stays bounded by the caps whatever the file holds.
    """

    max_chars: int = MAX_FILE_CHARS
    max_cell_chars: int = MAX_CELL_CHARS
    max_row_cells: int = MAX_ROW_CELLS
    max_unzipped_mb: float = 500.0
    used: int = 0
    truncated: str = ""  # the warning, once text was cut at the file's cap
    cut_rows: int = 0
    cut_cells: int = 0

    @property
    def full(self) -> bool:
        """True once text had to be cut: the loader should stop reading."""
        return bool(self.truncated)

    def stop(self, warning: str) -> None:
        """Mark the file as cut short (the first reason wins)."""
        self.truncated = self.truncated or warning

    def take(self, text: str) -> str:
        """The part of `text` that still fits in the file's character cap."""
        room = max(0, self.max_chars - self.used)
        if len(text) > room:
            text = text[:room]
            self.stop(f"truncated at {self.max_chars:,} characters (RAG_MAX_FILE_CHARS)")
        self.used += len(text)
        return text

    def cells(self, row: list[str]) -> list[str]:
        """A table row without its empty cells at the end, with at most max_row_cells cells of
        at most max_cell_chars characters."""
        end = len(row)
        while end and not row[end - 1]:
            end -= 1
        if end > self.max_row_cells:
            end, self.cut_rows = self.max_row_cells, self.cut_rows + 1
        kept = []
        for cell in row[:end]:
            if len(cell) > self.max_cell_chars:
                cell = cell[: self.max_cell_chars].rstrip() + " …"
                self.cut_cells += 1
            kept.append(cell)
        return kept

    def warnings(self) -> list[str]:
        found = []
        if self.cut_rows:
            found.append(
                f"{self.cut_rows:,} table row(s) cut to {self.max_row_cells:,} cells "
                f"(RAG_MAX_ROW_CELLS) or {MAX_ROW_CHARS:,} characters"
            )
        if self.cut_cells:
            found.append(
                f"{self.cut_cells:,} table cell(s) cut to {self.max_cell_chars:,} characters "
                "(RAG_MAX_CELL_CHARS)"
            )
        if self.truncated:
            found.append(self.truncated)
        return found


def decoded_pieces(path: Path) -> Iterator[str]:
    """A text file's characters in pieces of about a megabyte: UTF-8 (with or without BOM) or
    UTF-16 with BOM; binary data and bad bytes raise LoadError naming the offset."""
    with path.open("rb") as raw:
        block = raw.read(READ_BLOCK_BYTES)
        wide = block.startswith((b"\xff\xfe", b"\xfe\xff"))
        if not wide and b"\x00" in block[:BINARY_SNIFF_BYTES]:
            raise LoadError("binary data, not text; check the file type or rename it")
        decoder = codecs.getincrementaldecoder("utf-16" if wide else "utf-8-sig")()
        position = 0
        while True:
            buffered = len(decoder.getstate()[0])
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                if wide:
                    raise LoadError(
                        f"broken UTF-16 text ({exc.reason}); re-save the file as UTF-8"
                    ) from exc
                offset = position - buffered + exc.start
                raise LoadError(
                    f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {offset}); "
                    "convert it, e.g. `iconv -f latin1 -t utf-8`"
                ) from exc
            if text:
                yield text
            if not block:
                return
            position += len(block)
            block = raw.read(READ_BLOCK_BYTES)


def read_text(path: Path, budget: Budget | None = None) -> str:
    """Decode a text file, reading no more than the budget's character cap."""
    budget = budget or Budget()
    pieces = []
    for piece in decoded_pieces(path):
        pieces.append(budget.take(piece))
        if budget.full:
            break
    return "".join(pieces)


def clean_text(text: str) -> str:
    """Normalise line ends, drop control characters, collapse runs of blank lines and spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n")
    text = re.sub(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffe\uffff]", "", text)
    text = re.sub(r"[ \t\u00a0]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def first_heading(text: str) -> str:
    match = re.search(r"^#{1,6}\s+(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else ""


def compact_ranges(numbers: list[int]) -> str:
    """[1,2,3,7] -> '1-3, 7'."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def check_zip(path: Path, max_unzipped_mb: float) -> None:
    """Refuse a zip-based document (DOCX, XLSX, PPTX, EPUB) that is damaged or decompresses to
    more than the limit: a zip bomb must not exhaust memory."""
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise LoadError(
            f"damaged {path.suffix.lstrip('.').upper()} file, not a valid zip package ({exc}); "
            "re-save it from the application that made it"
        ) from exc
    if total > max_unzipped_mb * 1024 * 1024:
        raise LoadError(
            f"decompresses to {total / 1048576:,.0f} MB, over the {max_unzipped_mb:g} MB limit "
            "(zip bomb?); raise RAG_MAX_UNZIPPED_MB if the file is genuine"
        )
