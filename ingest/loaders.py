"""File -> LoadedFile: picks the loader for a file's type and turns every failure into a reason.

PDF gives one section per page (1-based physical page number) and PPTX one per slide; other
formats give Markdown-like text whose `#` headings become heading paths when it is split.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from functools import partial
from pathlib import Path

from ingest.document import LoadedFile, Section, clean_text, first_heading, read_text
from ingest.errors import LoadError, SkipFile
from ingest.formats.office import load_docx, load_pptx, load_xlsx, rows_as_text
from ingest.formats.pdf import load_pdf
from ingest.formats.web import load_epub, load_html


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
    lines = rows_as_text([[cell.strip() for cell in row] for row in rows])
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

# Loaders that take limits get them from load_file's keyword arguments.
ZIPPED = {".docx", ".pptx", ".xlsx", ".xlsm", ".epub"}

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
    path: Path, ocr: bool = False, max_unzipped_mb: float = 500.0, ocr_languages: str = "eng"
) -> LoadedFile:
    """Read one file with the loader for its type; raise LoadError / SkipFile with a reason."""
    suffix = path.suffix.lower()
    loader = LOADERS.get(suffix)
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
    if suffix == ".pdf":
        loader = partial(load_pdf, ocr=ocr, ocr_languages=ocr_languages)
    elif suffix in ZIPPED:
        loader = partial(loader, max_unzipped_mb=max_unzipped_mb)
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
