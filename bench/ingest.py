"""Ingestion benchmark: our pipeline against raw SentenceTransformer.encode, in one run.

    python -m bench.ingest [CORPUS...] [--files 2000] [--pdf-pages 520] [--json] [--out FILE]

Reports files/s, pages/s, chunks/s and peak RSS, and:
  (a) embed_speedup      pipeline chunks/s with the default embedding backend (RAG_EMBED_BACKEND,
                         onnx) / raw sentence-transformers (torch) encode chunks/s, batch 32, on
                         the same chunks, model and threads (also printed as encode_ratio)
  (b) reingest_fraction  re-ingest of the unchanged corpus (CLI wall time) / first ingest time
  (c) big_pdf_peak_rss_mb  peak RSS of `ingest` on the long PDF alone (and of its parser process)
  (d) remove_seconds     wall time of `ingest remove` of that PDF from the whole corpus
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/ingest.py` as well as `python -m bench.ingest`

from bench.corpus import make_long_pdf, make_small_files  # noqa: E402
from rag.app import build_app  # noqa: E402
from rag.store import Store  # noqa: E402

BIN = Path(sys.executable).parent


def run_cli(args: list[str], env: dict) -> tuple[float, dict | list | None]:
    """Run one of our commands; (wall seconds, its JSON output)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / args[0]), *args[1:]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate()
    wall = time.perf_counter() - started
    try:
        data = json.loads(out) if out.strip() else None
    except json.JSONDecodeError:
        data = None
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)} failed ({process.returncode}): {err.strip()[-500:]}")
    return wall, data


def peak_rss_of(args: list[str], env: dict) -> tuple[float, float, dict]:
    """Like run_cli, with the peak RSS of exactly this child: its VmHWM, read while it runs
    (ru_maxrss would also count the memory this benchmark process had when it forked)."""
    started = time.perf_counter()
    peak_kb = child_kb = 0
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]], env=env, stdout=out, stderr=subprocess.DEVNULL
        )
        status_file = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            peak_kb = max(peak_kb, hwm_kb(status_file))
            for child in children_of(process.pid):  # the parser processes
                child_kb = max(child_kb, hwm_kb(Path(f"/proc/{child}/status")))
            time.sleep(0.05)
        wall = time.perf_counter() - started
        out.seek(0)
        data = json.loads(out.read())
    data["parser_peak_rss_mb"] = round(child_kb / 1024, 1)
    return wall, peak_kb / 1024, data


def hwm_kb(status_file: Path) -> int:
    """A process's peak resident memory (VmHWM) in KB; 0 when it is gone."""
    try:
        for line in status_file.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def children_of(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
    }


def in_process_ingest(corpus: list[Path], home: Path, raw_sample: int) -> dict:
    """First ingest in this process, model loaded beforehand; then raw encode on the same chunks."""
    os.environ["RAG_HOME"] = str(home)
    import torch

    from rag.models import load_sentence_transformer
    from rag.settings import load_settings

    settings = load_settings()
    ingestor = build_app(settings).ingestor()
    embedder = ingestor.embedder  # loaded (and prepared) now, outside the timed part
    model = load_sentence_transformer(settings.embed_model)  # the raw library, torch
    _ = ingestor.chunker
    texts: list[str] = []  # the chunks exactly as embedded (title and heading included)
    encode = embedder.get_text_embedding_batch

    def recording(batch: list[str], **options):
        texts.extend(batch)
        return encode(batch, **options)

    embedder.get_text_embedding_batch = recording
    started = time.perf_counter()
    report = ingestor.ingest(corpus)
    pipeline_s = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    collection = Store(settings).collection()
    stored = collection.get(include=["metadatas"])
    rng = random.Random(3)
    sample = texts if not raw_sample or len(texts) <= raw_sample else rng.sample(texts, raw_sample)
    started = time.perf_counter()
    model.encode(sample, batch_size=settings.embed_batch_size, normalize_embeddings=True)
    raw_s = time.perf_counter() - started
    pages = sum(1 for m in stored["metadatas"] if m.get("page"))  # chunks on pages (approx.)
    return {
        "files": report.files,
        "chunks": report.chunks,
        "failed": len(report.failed),
        "pipeline_s": pipeline_s,
        "pipeline_chunks_per_s": report.chunks / pipeline_s,
        "raw_encode_chunks_per_s": len(sample) / raw_s,
        "raw_sample": len(sample),
        "threads": torch.get_num_threads(),
        "backend": embedder.backend,
        "batch_size": settings.embed_batch_size,
        "peak_rss_mb": peak_mb,
        "pdf_chunks": pages,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("corpus", nargs="*", help="folders to ingest besides the synthetic ones")
    parser.add_argument("--files", type=int, default=2000, help="synthetic small files (2000)")
    parser.add_argument("--pdf-pages", type=int, default=520, help="pages of the long PDF (520)")
    parser.add_argument(
        "--raw-sample",
        type=int,
        default=2000,
        help="chunks (a random sample of the stored ones) for the raw encode; 0 = all (2000)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    synthetic = work / "synthetic"
    make_small_files(synthetic, args.files)
    long_pdf = make_long_pdf(work / "long-report.pdf", args.pdf_pages)
    corpus = [synthetic, *[Path(c).resolve() for c in args.corpus]]
    home = work / "home"
    env = dict(os.environ, RAG_HOME=str(home))

    first = in_process_ingest(corpus, home, args.raw_sample)
    reingest_s, again = run_cli(["ingest", *map(str, corpus), "--json"], env)
    pdf_s, pdf_rss, pdf_report = peak_rss_of(
        ["ingest", str(long_pdf), "--json", "-c", "bigpdf"], env
    )
    # Removal is timed in the whole corpus's collection, whose keyword index is rebuilt without it.
    run_cli(["ingest", str(long_pdf), "--json"], env)
    remove_s, removed = run_cli(["ingest", "remove", str(long_pdf), "--json"], env)

    result = {
        "machine": machine(),
        "corpus": {
            "folders": [str(c) for c in corpus],
            "files": first["files"],
            "chunks": first["chunks"],
            "failed": first["failed"],
        },
        "files_per_s": first["files"] / first["pipeline_s"],
        "chunks_per_s": first["pipeline_chunks_per_s"],
        "pages_per_s": args.pdf_pages / pdf_s,
        "peak_rss_mb": round(first["peak_rss_mb"], 1),
        "raw_encode_chunks_per_s": first["raw_encode_chunks_per_s"],
        "encode_ratio": first["pipeline_chunks_per_s"] / first["raw_encode_chunks_per_s"],
        "embed_speedup": first["pipeline_chunks_per_s"] / first["raw_encode_chunks_per_s"],
        "backend": first["backend"],
        "first_ingest_s": first["pipeline_s"],
        "reingest_s": reingest_s,
        "reingest_new_chunks": (again or {}).get("chunks"),
        "reingest_fraction": reingest_s / first["pipeline_s"],
        "big_pdf_pages": args.pdf_pages,
        "big_pdf_chunks": pdf_report.get("chunks"),
        "big_pdf_seconds": pdf_s,
        "big_pdf_peak_rss_mb": round(pdf_rss, 1),
        "big_pdf_parser_peak_rss_mb": pdf_report.get("parser_peak_rss_mb"),
        "remove_seconds": remove_s,
        "removed_files": (removed or {}).get("removed"),
        "threads": first["threads"],
        "batch_size": first["batch_size"],
        "raw_sample_chunks": first["raw_sample"],
    }
    result = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    return emit(result, args.out, args.json, print_table)


def emit(result: dict, out: Path | None, as_json: bool, table) -> int:
    """A benchmark's result: written to `out` when given, then printed as JSON or as a table."""
    if out:
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        table(result)
    return 0


def print_table(result: dict) -> None:
    rows = [
        ("files/s", result["files_per_s"], ""),
        ("chunks/s (pipeline)", result["chunks_per_s"], ""),
        ("chunks/s (raw encode)", result["raw_encode_chunks_per_s"], ""),
        ("(a) embed_speedup", result["embed_speedup"], f"target >= 1.5 ({result['backend']})"),
        ("(b) reingest_fraction", result["reingest_fraction"], "target <= 0.05"),
        ("(c) big_pdf_peak_rss_mb", result["big_pdf_peak_rss_mb"], "target < 1500"),
        ("    its parser process", result["big_pdf_parser_peak_rss_mb"] or 0.0, "target < 1500"),
        ("(d) remove_seconds", result["remove_seconds"], "target < 5"),
        ("pages/s (long PDF)", result["pages_per_s"], ""),
        ("peak RSS MB (corpus)", result["peak_rss_mb"], ""),
    ]
    print(f"corpus: {result['corpus']['files']} files, {result['corpus']['chunks']} chunks")
    for name, value, target in rows:
        print(f"{name:28} {value:>10.3f}  {target}")


if __name__ == "__main__":
    raise SystemExit(main())
