"""Caps on what one file may cost: characters, table rows and cells, parser memory and time."""

from __future__ import annotations

import os
import signal
import sys
import time
import tracemalloc
import types
import zipfile
from pathlib import Path

import pytest

from bench.corpus import make_long_pdf
from ingest import loaders, parallel
from ingest.chunking import MAX_WORD_CHARS, PART_CHARS, Chunker, text_parts
from ingest.document import MAX_ROW_CHARS, LoadedFile, Section
from ingest.errors import LoadError, SkipFile
from ingest.loaders import load_file
from ingest.parallel import ParsePool
from rag.app import build_app
from tests.conftest import DATA
from tests.integration.test_hostile_sizes import write_one_line_csv

TRUNCATED = "truncated at {:,} characters (RAG_MAX_FILE_CHARS)"


def total_chars(loaded: LoadedFile) -> int:
    return sum(len(section.text) for section in loaded.sections)


def load_traced(path: Path, **limits) -> tuple[LoadedFile, int]:
    """The loaded file, and the peak memory Python allocated while loading it."""
    tracemalloc.start()
    try:
        return load_file(path, **limits), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_text_is_read_up_to_the_file_cap_in_bounded_pieces(tmp_path):
    big = tmp_path / "one-line.txt"
    big.write_text("lorem ipsum " * 2_000_000)  # 24 MB on one line
    loaded, peak = load_traced(big, max_file_chars=1000)
    assert total_chars(loaded) <= 1000
    assert loaded.sections[0].text.startswith("lorem ipsum lorem")
    assert loaded.warnings == [TRUNCATED.format(1000)]
    assert peak < 8 * 1024 * 1024  # a block or two, not the 24 MB file


def test_small_files_are_not_cut(tmp_path):
    note = tmp_path / "note.md"
    note.write_text("# Title\n\nShort body.\n")
    assert load_file(note, max_file_chars=100).warnings == []


def test_bad_utf8_far_into_a_file_names_its_offset(tmp_path):
    text = tmp_path / "late.txt"
    head = ("é" * 700_000).encode()  # a character split across the first 1 MB block boundary
    text.write_bytes(head + b"ok \xff tail")
    with pytest.raises(LoadError, match=f"byte 0xff at offset {len(head) + 3}\\)"):
        load_file(text)


def test_one_line_csv_keeps_memory_bounded_and_warns_once(tmp_path):
    table = tmp_path / "one-line.csv"
    write_one_line_csv(table, size_bytes=12 * 1024 * 1024)
    loaded, peak = load_traced(table, max_row_cells=50)
    header = loaded.sections[0].text.split(" | ")
    assert len(header) == 50 and header[0] == "harbour"
    assert loaded.warnings == [
        f"1 table row(s) cut to 50 cells (RAG_MAX_ROW_CELLS) or {MAX_ROW_CHARS:,} characters"
    ]
    assert peak < 80 * 1024 * 1024  # one capped row, not the 12 MB line split into cells


def test_csv_cells_rows_and_file_caps(tmp_path):
    table = tmp_path / "wide.csv"
    table.write_text("a,b,c,d,e\n1,2,3,4,5\nxyz,abcdefghij,,,\n" + "7,8,9,,\n" * 100)
    loaded = load_file(table, max_row_cells=3, max_cell_chars=5, max_file_chars=120)
    lines = loaded.sections[0].text.splitlines()
    assert lines[:3] == ["a | b | c", "a: 1; b: 2; c: 3", "a: xyz; b: abcde …"]
    assert total_chars(loaded) <= 120
    assert loaded.warnings == [
        f"2 table row(s) cut to 3 cells (RAG_MAX_ROW_CELLS) or {MAX_ROW_CHARS:,} characters",
        "1 table cell(s) cut to 5 characters (RAG_MAX_CELL_CHARS)",
        TRUNCATED.format(120),
    ]


def test_csv_with_an_unclosed_quote_fails_with_its_line(tmp_path):
    table = tmp_path / "quote.csv"
    table.write_text('name,notes\nann,"never closed\n' + "more words here\n" * 80_000)
    with pytest.raises(LoadError, match=r"malformed CSV at line \d+ .*unbalanced quotes"):
        load_file(table)


def test_pdf_stops_reading_pages_at_the_cap(tmp_path):
    pdf = tmp_path / "long.pdf"
    make_long_pdf(pdf, pages=400)
    loaded = load_file(pdf, max_file_chars=20_000)
    pages = [s.page for s in loaded.sections]
    assert pages == list(range(1, len(pages) + 1)) and 3 <= len(pages) < 100
    assert total_chars(loaded) <= 20_000
    assert loaded.warnings == [TRUNCATED.format(20_000)]


@pytest.mark.parametrize(
    "name",
    [
        "three-pages.pdf",
        "sample.docx",
        "slides.pptx",
        "table.xlsx",
        "book.epub",
        "notes.md",
        "plain.txt",
    ],
)
def test_every_format_honours_the_file_cap(name):
    loaded = load_file(DATA / name, max_file_chars=60)
    assert 0 < total_chars(loaded) <= 60
    assert len(loaded.warnings) == 1 and "RAG_MAX_FILE_CHARS" in loaded.warnings[0]


def test_html_markup_is_read_up_to_a_multiple_of_the_cap(tmp_path):
    page = tmp_path / "long.html"
    page.write_text("<html><body>" + "<p>harbour ferry notes</p>" * 10_000 + "</body></html>")
    loaded = load_file(page, max_file_chars=1000)
    assert 0 < total_chars(loaded) <= 1000
    assert loaded.warnings == [
        "only the first 4,000 bytes of HTML read (4 bytes per character of RAG_MAX_FILE_CHARS)"
    ]


def test_xlsx_rows_are_cut_to_the_cell_cap(tmp_path):
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Wide")
    sheet.append([f"h{i}" for i in range(30)])
    sheet.append([f"v{i}" for i in range(30)])
    sheet.append(["short", "x" * 50])
    book.save(tmp_path / "wide.xlsx")
    loaded = load_file(tmp_path / "wide.xlsx", max_row_cells=4, max_cell_chars=10)
    lines = loaded.sections[0].text.splitlines()
    assert lines[2:] == [
        "h0 | h1 | h2 | h3",
        "h0: v0; h1: v1; h2: v2; h3: v3",
        "h0: short; h1: xxxxxxxxxx …",
    ]
    assert len(loaded.warnings) == 2 and loaded.warnings[0].startswith("2 table row(s)")


def test_reasons_and_warnings_are_one_line(tmp_path, monkeypatch):
    def broken(path, budget):
        raise LoadError("cannot read XLSX (BadZipFile:\n  File is not a zip file)")

    def chatty(path, budget):
        return LoadedFile([Section("text")], "t", "test", warnings=["first line\nsecond\tline"])

    (tmp_path / "a.xlsx").write_text("x")
    (tmp_path / "b.txt").write_text("x")
    monkeypatch.setitem(loaders.LOADERS, ".xlsx", broken)
    monkeypatch.setitem(loaders.LOADERS, ".txt", chatty)
    with pytest.raises(LoadError) as info:
        load_file(tmp_path / "a.xlsx")
    assert info.value.reason == "cannot read XLSX (BadZipFile: File is not a zip file)"
    assert load_file(tmp_path / "b.txt").warnings == ["first line second line"]


def test_chunker_breaks_endless_words_and_huge_sections(settings):
    # The real tokenizer: it counts a word of over 100 characters as one unknown token.
    chunker = Chunker.from_settings(
        settings.model_copy(update={"chunk_size": 220, "chunk_overlap": 30})
    )
    blob = "q" * 100_000  # no whitespace at all
    prose = "harbour ferry leaves early " * 8_000  # one 216,000-character line
    started = time.monotonic()
    for text in (blob, prose):
        loaded = LoadedFile([Section(text=text)], "big", "text")
        nodes = chunker.chunk(Path("big.txt"), loaded, "sha")
        assert len(nodes) > 40
        assert max(len(node.text) for node in nodes) < 5000
    assert time.monotonic() - started < 60


def test_text_parts_cut_at_line_breaks_or_spaces():
    text = ("word " * 30 + "\n") * 1000
    parts = text_parts(text, 1000)
    assert all(len(part) <= 1000 for part in parts)
    assert "".join(parts) == text
    assert all(part.endswith("\n") for part in parts[:-1])
    assert PART_CHARS > 10 * MAX_WORD_CHARS


# --- the guarded parser process ------------------------------------------------------------
# These run in the parser process in place of parallel.parse_file (passed by reference).


def greedy_parse(path, chunker, content_key, sha256, options):
    """Eats memory on 'greedy.txt' (up to 1.2 GB, slowly enough to be watched)."""
    if path.name == "greedy.txt":
        hog = []
        for _ in range(24):
            hog.append(b"\1" * (50 << 20))
            time.sleep(0.05)
        time.sleep(60)
    return parallel.parse_file(path, chunker, content_key, sha256, options)


def slow_parse(path, chunker, content_key, sha256, options):
    if path.name == "slow.txt":
        time.sleep(60)
    return parallel.parse_file(path, chunker, content_key, sha256, options)


def crashing_parse(path, chunker, content_key, sha256, options):
    if path.name == "crash.txt":
        os.kill(os.getpid(), signal.SIGSEGV)
    return parallel.parse_file(path, chunker, content_key, sha256, options)


def folder_with(tmp_path: Path, bad: str) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("apple.txt", bad, "zebra.txt"):
        (folder / name).write_text(f"The {name} note says the ferry leaves at seven.\n")
    return folder


@pytest.mark.parametrize(
    ("parse", "bad", "update", "reason"),
    [
        (
            greedy_parse,
            "greedy.txt",
            {"parse_memory_mb": 400},
            "parser used over 400 MB (RAG_PARSE_MEMORY_MB); split the file or raise the limit",
        ),
        (
            slow_parse,
            "slow.txt",
            {"parse_timeout_s": 2},
            "parsing took over 2 s (RAG_PARSE_TIMEOUT_S); split the file or raise the limit",
        ),
        (
            crashing_parse,
            "crash.txt",
            {"ingest_workers": 2},
            "the parser process died (killed by SIGSEGV); the file may be damaged",
        ),
    ],
)
def test_a_parser_over_its_limits_costs_one_file(
    settings, fake_embedder, tmp_path, monkeypatch, parse, bad, update, reason
):
    monkeypatch.setattr(parallel, "parse_file", parse)
    folder = folder_with(tmp_path, bad)
    ingestor = build_app(settings.model_copy(update=update), embedder=fake_embedder).ingestor()
    started = time.monotonic()
    report = ingestor.ingest([folder])
    assert time.monotonic() - started < 45
    assert report.failed == [{"file": str(folder / bad), "error": reason}]
    assert report.files == 2  # the files before and after it are stored


def test_results_come_in_input_order_and_nothing_starts_without_files(
    settings, tmp_path, monkeypatch
):
    def no_start(self):
        raise AssertionError("a parser process was started")

    items = []
    for number in range(6):
        path = tmp_path / f"n{number}.txt"
        path.write_text(f"note number {number}\n" * (number * 200 + 1))
        items.append((path, type("Record", (), {"content_key": f"k{number}", "sha256": "s"})))
    pool = ParsePool(settings.model_copy(update={"ingest_workers": 2}))
    try:
        results = list(pool.map(items))
    finally:
        pool.close()
    assert [path for path, _, _ in results] == [path for path, _ in items]
    assert all(nodes[0].id_.startswith(f"k{i}-") for i, (_, _, (nodes, _, _)) in enumerate(results))
    monkeypatch.setattr(ParsePool, "_start", no_start)
    assert list(ParsePool(settings).map([])) == []


def test_a_parser_process_that_cannot_start_fails_the_files_once(settings, tmp_path):
    ghost = types.ModuleType("ghost_parsers")  # importable here, not in a fresh interpreter
    exec("def parse(*args):\n    return None\n", ghost.__dict__)
    sys.modules["ghost_parsers"] = ghost
    started = []
    pool = ParsePool(settings, parse=ghost.parse)
    real_start = pool._start
    pool._start = lambda: started.append(1) or real_start()
    items = []
    for number in range(3):
        path = tmp_path / f"n{number}.txt"
        path.write_text("text")
        items.append((path, type("Record", (), {"content_key": f"k{number}", "sha256": "s"})))
    try:
        results = [result for _, _, result in pool.map(items)]
    finally:
        pool.close()
        del sys.modules["ghost_parsers"]
    assert len(started) == 1
    assert all(isinstance(r, LoadError) for r in results)
    assert {r.reason for r in results} == {
        "the parser process could not start (ModuleNotFoundError: No module named 'ghost_parsers')"
    }


def test_unchanged_rerun_starts_no_parser(settings, fake_embedder, tmp_path, monkeypatch):
    (tmp_path / "note.md").write_text("# Note\n\nFerry at seven.\n")
    ingestor = build_app(settings, embedder=fake_embedder).ingestor()
    assert ingestor.ingest([tmp_path]).files == 1
    monkeypatch.setattr(
        ParsePool, "_start", lambda self: pytest.fail("a parser process was started")
    )
    again = ingestor.ingest([tmp_path])
    assert (again.files, again.unchanged) == (0, 1)


def started_parsers(monkeypatch) -> list[int]:
    """The pids of the parser processes started from now on."""
    pids: list[int] = []
    real = parallel.subprocess.Popen

    def popen(*args, **kwargs):
        process = real(*args, **kwargs)
        pids.append(process.pid)
        return process

    monkeypatch.setattr(parallel.subprocess, "Popen", popen)
    return pids


def alive(pid: int) -> bool:
    """A process that runs (a zombie, not yet collected, counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_long_lived_process_keeps_an_idle_parser_for_the_next_file(
    settings, fake_embedder, tmp_path, monkeypatch
):
    parallel.SPARES.stop_all()
    pids = started_parsers(monkeypatch)
    ingestor = build_app(settings, embedder=fake_embedder).ingestor()
    for number in range(3):
        (tmp_path / f"n{number}.md").write_text(
            f"# Note {number}\n\nThe ferry leaves at {number}.\n"
        )
        assert ingestor.ingest([tmp_path / f"n{number}.md"]).files == 1
    assert len(pids) == 1 and alive(pids[0]) and len(parallel.SPARES) == 1  # one, kept

    os.kill(pids[0], signal.SIGKILL)  # a kept parser that died is not used: a new one starts
    (tmp_path / "n3.md").write_text("# Note 3\n\nThe ferry leaves at three.\n")
    assert ingestor.ingest([tmp_path / "n3.md"]).files == 1 and len(pids) == 2

    parallel.SPARES.stop_all()  # asked to exit, and collected
    deadline = time.monotonic() + 10
    while alive(pids[1]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pids[1]) and len(parallel.SPARES) == 0


def test_kept_parsers_end_after_the_keep_time_or_are_not_kept_at_all(
    settings, fake_embedder, tmp_path, monkeypatch
):
    parallel.SPARES.stop_all()
    pids = started_parsers(monkeypatch)
    (tmp_path / "a.md").write_text("# A\n\nThe ferry leaves at seven.\n")
    brief = settings.model_copy(update={"parse_keep_s": 5})  # outlasts the rest of the ingest
    assert build_app(brief, embedder=fake_embedder).ingestor().ingest([tmp_path]).files == 1
    assert len(parallel.SPARES) == 1
    deadline = time.monotonic() + 20
    while alive(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pids[0]) and len(parallel.SPARES) == 0

    none = settings.model_copy(update={"parse_keep_s": 0})
    (tmp_path / "b.md").write_text("# B\n\nThe bus leaves at eight.\n")
    assert build_app(none, embedder=fake_embedder).ingestor().ingest([tmp_path]).files == 1
    assert len(pids) == 2 and not alive(pids[1]) and len(parallel.SPARES) == 0


def test_zip_limit_still_applies(tmp_path):
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/workbook.xml", b"\0" * (3 * 1024 * 1024))
    with pytest.raises(LoadError, match="RAG_MAX_UNZIPPED_MB"):
        load_file(bomb, max_unzipped_mb=1)
    with pytest.raises(SkipFile):
        load_file(DATA / "empty.txt", max_file_chars=10)
