"""File -> documents with page and heading metadata, one loader per format.

Each loader returns a list of `Section`s; PDF gives one per page (1-based physical page number),
other formats give one section of Markdown-like text whose `#` headings the splitter turns into
heading paths. A loader raises LoadError / SkipFile with a reason instead of crashing.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import LoadError, SkipFile

BINARY_SNIFF_BYTES = 8192


@dataclass
class Section:
    """A piece of a document: its text, its page (PDF only), and whether it is Markdown-like."""

    text: str
    page: int | None = None
    markdown: bool = False


@dataclass
class LoadedFile:
    """What a loader read from one file."""

    sections: list[Section]
    title: str
    parser: str
    warnings: list[str] = field(default_factory=list)


def load_pdf(path: Path) -> LoadedFile:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        message = str(exc).lower()
        if "password" in message:
            raise LoadError(
                "encrypted PDF (password required); save an unencrypted copy "
                "(e.g. `qpdf --decrypt in.pdf out.pdf`) and ingest that"
            ) from None
        raise LoadError(
            f"corrupt or unreadable PDF ({exc}); re-export or repair the file"
        ) from None
    try:
        title = (pdf.get_metadata_dict().get("Title") or "").strip() or path.stem
        sections: list[Section] = []
        empty_pages: list[int] = []
        for index in range(len(pdf)):
            page = pdf[index]
            textpage = page.get_textpage()
            text = clean_text(textpage.get_text_range())
            textpage.close()
            page.close()
            if text.strip():
                sections.append(Section(text=text, page=index + 1))
            else:
                empty_pages.append(index + 1)
        page_count = len(pdf)
    finally:
        pdf.close()
    if not sections:
        raise SkipFile(
            f"no text layer on any of its {page_count} pages (scanned PDF?); "
            "OCR it first (e.g. `ocrmypdf in.pdf out.pdf`)"
        )
    warnings = []
    if empty_pages:
        warnings.append(f"no text layer on page(s) {compact_ranges(empty_pages)} (scanned?)")
    return LoadedFile(sections=sections, title=title, parser="pypdfium2", warnings=warnings)


def load_docx(path: Path) -> LoadedFile:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
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


# Elements that never hold a page's own content.
HTML_DROP = ["script", "style", "noscript", "template", "svg", "canvas", "iframe", "form", "button"]
HTML_CHROME = ["nav", "aside"]
HTML_CHROME_ROLES = ["navigation", "banner", "contentinfo", "search", "complementary"]
HTML_BLOCKS = [
    "p",
    "div",
    "section",
    "article",
    "li",
    "pre",
    "blockquote",
    "dd",
    "dt",
    "br",
    "table",
    "tr",
    "ul",
    "ol",
    "dl",
    "figure",
    "figcaption",
    "hr",
    "main",
]


def load_html(path: Path) -> LoadedFile:
    from bs4 import BeautifulSoup

    raw = path.read_bytes()
    if b"\x00" in raw[:BINARY_SNIFF_BYTES]:
        raise LoadError("binary data in an HTML file; check the file type")
    soup = BeautifulSoup(raw, "lxml")
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text().split()) if title_tag else ""
    for tag in soup.find_all(HTML_DROP):
        tag.decompose()
    root = soup.find("main") or soup.find(attrs={"role": "main"}) or soup.find("article")
    if root is None:
        root = soup.body or soup
        chrome = [*HTML_CHROME, "header", "footer"]
    else:
        chrome = HTML_CHROME
    for tag in root.find_all(chrome):
        tag.decompose()
    for tag in root.find_all(attrs={"role": HTML_CHROME_ROLES}):
        tag.decompose()
    for level in range(1, 7):
        for tag in root.find_all(f"h{level}"):
            heading = " ".join(tag.get_text(" ").split())
            tag.replace_with(f"\n\n{'#' * level} {heading}\n\n" if heading else "")
    for row in root.find_all("tr"):
        cells = [" ".join(c.get_text(" ").split()) for c in row.find_all(["td", "th"])]
        row.replace_with("\n" + " | ".join(c for c in cells if c) + "\n")
    for item in root.find_all("li"):
        item.insert(0, "\n- ")
    for pre in root.find_all("pre"):
        pre.replace_with("\n" + pre.get_text() + "\n")
    for tag in root.find_all(HTML_BLOCKS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    text = clean_text(root.get_text())
    if not text.strip():
        raise SkipFile("no readable text in the HTML page")
    title = title or first_heading(text) or path.stem
    return LoadedFile([Section(text=text, markdown=True)], title=title, parser="beautifulsoup")


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


def load_markdown(path: Path) -> LoadedFile:
    text = clean_text(read_text(path))
    return LoadedFile(
        [Section(text=text, markdown=True)],
        title=first_heading(text) or path.stem,
        parser="markdown",
    )


def load_text(path: Path) -> LoadedFile:
    text = clean_text(read_text(path))
    return LoadedFile([Section(text=text)], title=path.stem, parser="text")


def load_csv(path: Path) -> LoadedFile:
    """Each row as 'header: value; header: value', so every row keeps the meaning of its cells."""
    text = read_text(path)
    sample = text[:16384]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in row)]
    if not rows:
        raise SkipFile("no rows in the table")
    header = [h.strip() or f"column {i + 1}" for i, h in enumerate(rows[0])]
    lines = [" | ".join(header)]
    for row in rows[1:]:
        cells = [
            f"{header[i] if i < len(header) else f'column {i + 1}'}: {cell.strip()}"
            for i, cell in enumerate(row)
            if cell.strip()
        ]
        lines.append("; ".join(cells))
    return LoadedFile([Section(text="\n".join(lines))], title=path.stem, parser="csv")


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

LOADERS: dict[str, Callable[[Path], LoadedFile]] = {
    **dict.fromkeys(TEXT_SUFFIXES, load_text),
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


def load_file(path: Path, ocr: bool = False) -> LoadedFile:
    """Read one file with the loader for its type; raise LoadError / SkipFile with a reason."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise SkipFile(
            f"unsupported file type '{path.suffix or path.name}'; `ingest --help` lists the formats"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LoadError(f"cannot read file ({exc.strerror})") from None
    if size == 0:
        raise SkipFile("empty file (0 bytes)")
    try:
        loaded = loader(path)
    except (LoadError, SkipFile):
        raise
    except PermissionError:
        raise LoadError("permission denied; make the file readable (chmod +r)") from None
    except OSError as exc:
        raise LoadError(f"cannot read file ({exc.strerror or exc})") from None
    except Exception as exc:  # a parser bug on odd input must not end the batch
        raise LoadError(
            f"{loaded_kind(path)} parser failed ({type(exc).__name__}: {exc})"
        ) from None
    if not any(section.text.strip() for section in loaded.sections):
        raise SkipFile("no text in the file (only whitespace)")
    return loaded


def loaded_kind(path: Path) -> str:
    return path.suffix.lstrip(".").upper() or "file"


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
