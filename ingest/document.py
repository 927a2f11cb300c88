"""What loaders produce (sections of text with page/heading), and helpers they share."""

from __future__ import annotations

import re
import zipfile
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


def read_text(path: Path) -> str:
    """Decode a text file: UTF-8 (with or without BOM) or UTF-16 with BOM; reject binary data."""
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise LoadError(
                f"broken UTF-16 text ({exc.reason}); re-save the file as UTF-8"
            ) from None
    if b"\x00" in raw[:BINARY_SNIFF_BYTES]:
        raise LoadError("binary data, not text; check the file type or rename it")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "convert it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


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
        ) from None
    if total > max_unzipped_mb * 1024 * 1024:
        raise LoadError(
            f"decompresses to {total / 1048576:,.0f} MB, over the {max_unzipped_mb:g} MB limit "
            "(zip bomb?); raise RAG_MAX_UNZIPPED_MB if the file is genuine"
        )
