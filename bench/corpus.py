"""Synthetic corpora for benchmarks: many small files, and one long PDF with a real text layer."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = (
    "robot battery sensor firmware warehouse shelf pallet route charge dock lidar camera motor "
    "safety zone speed limit update release ticket customer order invoice schedule shift team "
    "manager report budget review policy travel expense leave holiday contract clause supplier "
    "delivery inventory quantity weight volume temperature humidity alarm reset error code "
    "network server backup storage database query index cache memory thread process kernel"
).split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 18))]
    number = rng.randint(1, 9999)
    return f"{' '.join(words).capitalize()} {number}."


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng) for _ in range(sentences))


def make_small_files(folder: Path, count: int, seed: int = 7) -> list[Path]:
    """`count` Markdown, text and HTML files of 150-400 words, in nested folders."""
    rng = random.Random(seed)
    paths = []
    for n in range(count):
        sub = folder / f"group{n % 20:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        body = [paragraph(rng, rng.randint(3, 7)) for _ in range(rng.randint(2, 4))]
        kind = n % 3
        if kind == 0:
            path = sub / f"note{n:05d}.md"
            path.write_text(f"# Note {n}\n\n" + "\n\n## Part\n\n".join(body))
        elif kind == 1:
            path = sub / f"memo{n:05d}.txt"
            path.write_text("\n\n".join(body))
        else:
            path = sub / f"page{n:05d}.html"
            paras = "".join(f"<p>{p}</p>" for p in body)
            path.write_text(
                f"<html><head><title>Page {n}</title></head><body><nav>Home | About</nav>"
                f"<main><h1>Page {n}</h1>{paras}</main><footer>(c) Example</footer></body></html>"
            )
        paths.append(path)
    return paths


def make_long_pdf(path: Path, pages: int, seed: int = 11) -> Path:
    """A PDF of `pages` A4 pages of text in Helvetica, written directly in PDF syntax."""
    rng = random.Random(seed)
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    page_ids = []
    pages_id = len(objects) + 2 * pages + 1  # the Pages object comes after all pages
    for number in range(1, pages + 1):
        lines = [f"Page {number} of the long report"]
        text = paragraph(rng, 14)
        words = text.split()
        line = ""
        for word in words:
            if len(line) + len(word) > 95:
                lines.append(line)
                line = ""
            line += word + " "
        lines.append(line)
        stream = (
            "BT /F1 10 Tf 50 790 Td 14 TL "
            + " ".join(f"({escape(item)}) '" for item in lines)
            + " ET"
        )
        content = add(
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream.encode("latin-1"))
        )
        page_ids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] "
                b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                % (pages_id, font, content)
            )
        )
    kids = b" ".join(b"%d 0 R" % i for i in page_ids)
    assert add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))) == pages_id
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        catalog,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
