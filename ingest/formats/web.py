"""Web formats: HTML (main content as Markdown-like text) and EPUB (one section per chapter)."""

from __future__ import annotations

import posixpath
import warnings
import zipfile
from pathlib import Path

from ingest.document import (
    BINARY_SNIFF_BYTES,
    Budget,
    LoadedFile,
    Section,
    check_zip,
    clean_text,
    first_heading,
)
from ingest.errors import LoadError, SkipFile

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


# Markup read per character of the file's cap: the page's text is a fraction of its bytes, and
# the parsed tree takes several times the markup's size in memory.
HTML_BYTES_PER_CHAR = 4


def load_html(path: Path, budget: Budget) -> LoadedFile:
    with path.open("rb") as handle:
        raw = bounded_markup(handle, budget)
    if b"\x00" in raw[:BINARY_SNIFF_BYTES]:
        raise LoadError("binary data in an HTML file; check the file type")
    title, text = html_to_text(raw)
    text = clean_text(budget.take(text))
    if not text.strip():
        raise SkipFile("no readable text in the HTML page")
    title = title or first_heading(text) or path.stem
    return LoadedFile([Section(text=text, markdown=True)], title=title, parser="beautifulsoup")


def bounded_markup(handle, budget: Budget) -> bytes:
    """At most HTML_BYTES_PER_CHAR bytes per character the budget has left; cut pages say so."""
    limit = max(0, budget.max_chars - budget.used) * HTML_BYTES_PER_CHAR
    raw = handle.read(limit + 1)
    if len(raw) > limit:
        budget.stop(
            f"only the first {limit:,} bytes of HTML read "
            f"({HTML_BYTES_PER_CHAR} bytes per character of RAG_MAX_FILE_CHARS)"
        )
        raw = raw[:limit]
    return raw


def html_to_text(raw: bytes) -> tuple[str, str]:
    """(title, text): the page's main content with `#` headings, lists and table rows kept."""
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
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
    return title, clean_text(root.get_text())


def load_epub(path: Path, budget: Budget) -> LoadedFile:
    """Chapters in reading order (the OPF spine), each one section with its first heading."""
    from lxml import etree

    check_zip(path, budget.max_unzipped_mb)
    try:
        with zipfile.ZipFile(path) as book:
            container = etree.fromstring(book.read("META-INF/container.xml"))
            opf_path = container.xpath("//*[local-name()='rootfile']/@full-path")[0]
            opf = etree.fromstring(book.read(opf_path))
            base = posixpath.dirname(opf_path)
            items = {
                item.get("id"): item.get("href")
                for item in opf.xpath("//*[local-name()='manifest']/*[local-name()='item']")
            }
            titles = opf.xpath("//*[local-name()='metadata']/*[local-name()='title']/text()")
            sections = []
            for ref in opf.xpath("//*[local-name()='spine']/*[local-name()='itemref']/@idref"):
                href = items.get(ref)
                if not href:
                    continue
                with book.open(posixpath.normpath(posixpath.join(base, href))) as chapter:
                    raw = bounded_markup(chapter, budget)
                _, text = html_to_text(raw)
                text = clean_text(budget.take(text))
                if text.strip():
                    sections.append(Section(text=text, markdown=True, heading=first_heading(text)))
                if budget.full:
                    break
    except (KeyError, IndexError, etree.XMLSyntaxError, zipfile.BadZipFile) as exc:
        raise LoadError(f"damaged EPUB ({type(exc).__name__}: {exc})") from exc
    if not sections:
        raise SkipFile("no text in any chapter")
    title = titles[0].strip() if titles else path.stem
    return LoadedFile(sections, title=title, parser="epub")
