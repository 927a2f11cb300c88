"""Huge files meet the real `ingest` command: each costs one report line, memory stays bounded.

A 52 MB CSV that is one line of words, a 200 MB text file that is one line, and a 5,000-page
PDF sit beside a normal note. The run must store the note, report each big file once, and
keep the peak memory of the ingest process and of its parser process under 1.5 GB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.corpus import make_long_pdf
from tests.conftest import BIN

pytestmark = [pytest.mark.integration, pytest.mark.store_independent]  # parsing limits

PEAK_LIMIT_MB = 1536
WORDS = (
    "harbour lantern copper meadow signal orbit granite velvet thunder willow pepper quartz "
    "saddle tundra violet walnut anchor basalt cinder dune ember fjord glacier hollow"
).split()


def write_repeated(path: Path, block: str, size_bytes: int) -> None:
    """Write `block` over and over (no line breaks added) until the file has `size_bytes`."""
    data = block.encode()
    repeat = max(1, (1 << 20) // len(data))
    chunk = data * repeat
    with path.open("wb") as out:
        written = 0
        while written < size_bytes:
            piece = chunk[: size_bytes - written]
            out.write(piece)
            written += len(piece)


def write_one_line_csv(path: Path, size_bytes: int = 52 * 1024 * 1024) -> None:
    write_repeated(path, ",".join(WORDS) + ",", size_bytes)


def write_one_line_text(path: Path, size_bytes: int = 200 * 1024 * 1024) -> None:
    write_repeated(path, " ".join(WORDS) + " ", size_bytes)


def make_hostile_folder(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": folder / "one-line.csv",
        "text": folder / "one-line.txt",
        "pdf": folder / "five-thousand-pages.pdf",
        "note": folder / "note.md",
    }
    write_one_line_csv(files["csv"])
    write_one_line_text(files["text"])
    make_long_pdf(files["pdf"], pages=5000)
    files["note"].write_text("# Ferry timetable\n\nThe harbour ferry leaves at 07:40 daily.\n")
    latin1 = os.path.join(os.fsencode(folder), b"caf\xe9-menu.txt")  # not a UTF-8 name
    with open(latin1, "wb") as handle:
        handle.write(b"The cafe opens at nine.\n")
    return files


# Runs a command and prints the largest resident memory of it and its descendants (in KB):
# ru_maxrss of RUSAGE_CHILDREN covers every process waited for below this one.
PEAK_WRAPPER = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)


def ingest_with_peak(folder: Path, env: dict) -> tuple[dict, float, float]:
    """(JSON report, peak RSS in MB, seconds) of `ingest FOLDER --json`."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_WRAPPER, str(BIN / "ingest"), str(folder), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    seconds = time.monotonic() - started
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    peak_mb = int(result.stderr.strip().splitlines()[-1]) / 1024
    return json.loads(result.stdout), peak_mb, seconds


def report_lines(report: dict, path: Path) -> list[str]:
    entries = report["skipped"] + report["failed"] + report["warnings"]
    return [
        entry.get("reason") or entry.get("error") or entry.get("warning", "")
        for entry in entries
        if entry["file"] == str(path.resolve())
    ]


def test_huge_files_cost_one_line_each_and_memory_stays_bounded(tmp_path):
    files = make_hostile_folder(tmp_path / "hostile")
    # A small character cap keeps the embedding of what is kept short; the caps bound memory
    # by construction, so what the run proves holds for the default cap too.
    env = dict(os.environ, RAG_HOME=str(tmp_path / "home"), RAG_MAX_FILE_CHARS="100000")
    report, peak_mb, seconds = ingest_with_peak(tmp_path / "hostile", env)
    print(f"peak RSS {peak_mb:.0f} MB, {seconds:.0f} s")
    for kind in ("csv", "text", "pdf"):
        lines = report_lines(report, files[kind])
        assert len(lines) == 1, (kind, lines)
        assert "\n" not in lines[0]
    assert "RAG_MAX_FILE_CHARS" in report_lines(report, files["text"])[0]
    assert "RAG_MAX_FILE_CHARS" in report_lines(report, files["pdf"])[0]
    assert "RAG_MAX_ROW_CELLS" in report_lines(report, files["csv"])[0]
    assert report_lines(report, files["note"]) == []
    assert report["files"] == 4 and not report["failed"], report
    named = [s for s in report["skipped"] if "caf" in s["file"]]
    assert len(named) == 1 and "not valid UTF-8" in named[0]["reason"], report["skipped"]
    assert peak_mb < PEAK_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"
