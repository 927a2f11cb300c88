"""Adding one file in a long-lived process (the page's upload, the API's POST /documents):
the same App adds files one at a time, with idle parser processes kept between runs (the
default, RAG_PARSE_KEEP_S=120) and without (RAG_PARSE_KEEP_S=0), in the same run.

    python -m bench.add_file [--files 6] [--paragraphs 170] [--json] [--out FILE]

  first_s            the first file (a parser process starts either way)
  next_p50_s         the median of the files after it
  parser_starts      parser processes started for all the files
  keep_speedup       next_p50_s without kept parsers / with them
Each file is new Markdown of about 100 chunks; the embedding model is loaded before timing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/add_file.py` as well as `python -m bench.add_file`

from bench.corpus import paragraph  # noqa: E402
from bench.ingest import emit, machine  # noqa: E402


def write_note(folder: Path, number: int, paragraphs: int) -> Path:
    rng = random.Random(number)
    body = "\n\n".join(paragraph(rng, 6) for _ in range(paragraphs))
    path = folder / f"note-{number:03d}.md"
    path.write_text(f"# Note {number}\n\n{body}\n", encoding="utf-8")
    return path


def add_one_at_a_time(
    home: Path, keep_s: float, files: int, paragraphs: int, models: Path | None
) -> dict:
    """Times `files` single-file ingests through one App with RAG_PARSE_KEEP_S=keep_s."""
    from ingest import parallel
    from rag.app import build_app
    from rag.settings import load_settings

    parallel.SPARES.stop_all()  # each configuration starts without kept parsers
    settings = load_settings(home=home, parse_keep_s=keep_s, model_cache=models)
    app = build_app(settings)
    _ = app.models.embedder  # loaded (and prepared) now, outside the timed part
    ingestor = app.ingestor()
    starts = 0
    start = parallel.ParsePool._start

    def counted(pool):
        nonlocal starts
        before = len(parallel.SPARES)
        worker = start(pool)
        starts += before == len(parallel.SPARES)  # not taken from the kept ones
        return worker

    parallel.ParsePool._start = counted
    seconds, chunks = [], []
    try:
        for number in range(files):
            note = write_note(home.parent / "notes", number, paragraphs)
            began = time.perf_counter()
            report = ingestor.ingest([note])
            seconds.append(time.perf_counter() - began)
            chunks.append(report.chunks)
    finally:
        parallel.ParsePool._start = start
        parallel.SPARES.stop_all()
        app.close()
    return {
        "first_s": round(seconds[0], 3),
        "next_p50_s": round(statistics.median(seconds[1:]), 3),
        "next_s": [round(s, 3) for s in seconds[1:]],
        "chunks_per_file": round(statistics.mean(chunks), 1),
        "parser_starts": starts,
    }


def run(files: int, paragraphs: int, work: Path) -> dict:
    result: dict = {"machine": machine(), "files": files}
    # the ONNX export is made once for both (RAG_MODEL_CACHE, when set, is used as it is)
    models = None if os.environ.get("RAG_MODEL_CACHE") else work / "models"
    for name, keep_s in (("kept", 120.0), ("not_kept", 0.0)):
        home = work / name / "home"
        (work / name / "notes").mkdir(parents=True)
        result[name] = add_one_at_a_time(home, keep_s, files, paragraphs, models)
    result["keep_speedup"] = round(
        result["not_kept"]["next_p50_s"] / result["kept"]["next_p50_s"], 2
    )
    return result


def print_table(result: dict) -> None:
    print(f"{result['files']} files of about {result['kept']['chunks_per_file']:.0f} chunks each")
    print(f"{'':28}{'kept parsers':>14}{'no parsers kept':>17}")
    for key in ("first_s", "next_p50_s", "parser_starts"):
        print(f"{key:28}{result['kept'][key]:>14}{result['not_kept'][key]:>17}")
    print(f"keep_speedup (next files)   {result['keep_speedup']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--files", type=int, default=6, help="files added one at a time (6)")
    parser.add_argument(
        "--paragraphs", type=int, default=170, help="paragraphs per file (170: about 100 chunks)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    if args.files < 2:
        parser.error("--files must be at least 2 (the first file, then the next ones)")
    with tempfile.TemporaryDirectory(prefix="rag-bench-add-") as work:
        result = run(args.files, args.paragraphs, Path(work))
    return emit(result, args.out, args.json, print_table)


if __name__ == "__main__":
    raise SystemExit(main())
