"""Start-up benchmark: what one command costs a user, from launch to exit, with the default settings.

    python -m bench.startup [--devset DOCS] [--runs 3] [--json] [--out FILE]

  ask_wall_s / ask_rss_mb        `rag ask --json QUESTION` on the sample documents (best of N runs)
  ask_imports_torch              whether that command imported torch (it should not)
  examples_wall_s                one run of `rag ask --json` for each example question of the README
  ingest_wall_s / ingest_rss_mb  `ingest FILE --json` of one small file into a new library (best of N)
  ingest_devset_rss_mb           peak memory of `ingest DOCS` (the development set's 42 documents):
                                 the command's process plus its parser process, both at their peaks
Models prepared once on this machine (the ONNX export) are shared by every run through
RAG_MODEL_CACHE, as they are between a user's commands; the first preparation is timed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/startup.py` as well as `python -m bench.startup`

from bench.ingest import children_of, emit, hwm_kb, machine  # noqa: E402

BIN = Path(sys.executable).parent
SAMPLES = ROOT / "sample_docs"
DEVSET = ROOT.parent / "shared" / "devset" / "docs"
# The README's first example question; every example is also timed once (answers differ in length).
QUESTION = "How many days of paid annual leave do full-time employees get?"
EXAMPLES = (
    QUESTION,
    "Who must approve an expense claim of £3,000?",
    "What does error code E-214 mean and how do I fix it?",
    "How long does the K2 take to charge, and what is its IP rating?",
    "When was firmware 3.2.0 released and what did it add?",
    "When does the Nordvik Logistics pilot go live?",
    "Berapa kecepatan maksimum robot K2 di zona pejalan kaki?",
)
SMALL_FILE = SAMPLES / "onboarding-checklist.md"
# Prints whether torch was imported once the command is done (sys.modules at exit).
WATCH_TORCH = (
    "import atexit, sys; atexit.register(lambda: print('TORCH', 'torch' in sys.modules, "
    "file=sys.stderr)); from rag.cli import main; sys.argv[0] = 'rag'; sys.exit(main())"
)


def measure(command: list[str], env: dict) -> dict:
    """Wall time and peak resident memory (VmHWM) of one command and of its child processes."""
    started = time.perf_counter()
    peak_kb = child_kb = 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=ROOT)
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            peak_kb = max(peak_kb, hwm_kb(status))
            for child in children_of(process.pid):
                child_kb = max(child_kb, hwm_kb(Path(f"/proc/{child}/status")))
            time.sleep(0.01)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {stderr[-500:]}")
    return {
        "wall_s": wall,
        "rss_mb": peak_kb / 1024,
        "child_rss_mb": child_kb / 1024,
        "stdout": stdout,
        "stderr": stderr,
    }


def best(runs: list[dict]) -> dict:
    return {
        "wall_s": min(r["wall_s"] for r in runs),
        "rss_mb": min(r["rss_mb"] + r["child_rss_mb"] for r in runs),
    }


def run(devset: Path | None, runs: int, work: Path) -> dict:
    cache = work / "models"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {"RAG_MODEL_CACHE": str(cache)}
    library = dict(env, RAG_HOME=str(work / "library"))

    prepare = measure([str(BIN / "ingest"), str(SAMPLES), "--json"], library)
    asks = [measure([str(BIN / "rag"), "ask", "--json", QUESTION], library) for _ in range(runs)]
    answer = json.loads(asks[-1]["stdout"])
    watched = measure([sys.executable, "-c", WATCH_TORCH, "ask", "--json", QUESTION], library)
    examples = {q: measure([str(BIN / "rag"), "ask", "--json", q], library) for q in EXAMPLES}
    ingests = []
    for n in range(runs):
        fresh = dict(env, RAG_HOME=str(work / f"one-{n}"))
        ingests.append(measure([str(BIN / "ingest"), str(SMALL_FILE), "--json"], fresh))
    result = {
        "machine": machine(),
        "backend": os.environ.get("RAG_EMBED_BACKEND", "onnx"),
        "runs": runs,
        "question": QUESTION,
        "first_ingest_with_model_preparation_s": prepare["wall_s"],
        "ask_wall_s": best(asks)["wall_s"],
        "ask_rss_mb": best(asks)["rss_mb"],
        "ask_runs_wall_s": [r["wall_s"] for r in asks],
        "ask_imports_torch": "TORCH True" in watched["stderr"],
        "ask_refused": bool(answer.get("refused")),
        "ask_timings": answer.get("timings"),
        "ask_answer": answer.get("answer"),
        "examples_wall_s": {q: r["wall_s"] for q, r in examples.items()},
        "examples_wall_s_median": sorted(r["wall_s"] for r in examples.values())[
            len(examples) // 2
        ],
        "examples_rss_mb_max": max(r["rss_mb"] for r in examples.values()),
        "ingest_wall_s": best(ingests)["wall_s"],
        "ingest_rss_mb": best(ingests)["rss_mb"],
    }
    if devset is not None:
        whole = measure(
            [str(BIN / "ingest"), str(devset), "--json"], dict(env, RAG_HOME=str(work / "devset"))
        )
        report = json.loads(whole["stdout"])
        result |= {
            "ingest_devset_rss_mb": whole["rss_mb"] + whole["child_rss_mb"],
            "ingest_devset_main_rss_mb": whole["rss_mb"],
            "ingest_devset_parser_rss_mb": whole["child_rss_mb"],
            "ingest_devset_wall_s": whole["wall_s"],
            "ingest_devset_chunks": report.get("chunks"),
        }
    result["examples_wall_s"] = {q: round(v, 3) for q, v in result["examples_wall_s"].items()}
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--devset",
        type=Path,
        default=DEVSET if DEVSET.is_dir() else None,
        help=f"folder ingested for ingest_devset_rss_mb (default {DEVSET}, when present)",
    )
    parser.add_argument("--no-devset", action="store_true", help="skip the large ingest")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command (best is kept)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="rag-startup-"))
    try:
        result = run(None if args.no_devset else args.devset, max(1, args.runs), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return emit(result, args.out, args.json, print_table)


def print_table(result: dict) -> None:
    rows = [
        ("ask_wall_s", result["ask_wall_s"], "goal <= 3"),
        ("ask_rss_mb", result["ask_rss_mb"], "goal <= 500"),
        ("ask wall, README examples", result["examples_wall_s_median"], "median of one run each"),
        ("ingest_wall_s (one file)", result["ingest_wall_s"], ""),
        ("ingest_rss_mb (one file)", result["ingest_rss_mb"], ""),
    ]
    if "ingest_devset_rss_mb" in result:
        rows.append(("ingest_devset_rss_mb", result["ingest_devset_rss_mb"], "goal <= 1000"))
    print(f"backend {result['backend']}; torch imported by ask: {result['ask_imports_torch']}")
    for name, value, goal in rows:
        print(f"{name:28} {value:>10.3f}  {goal}")


if __name__ == "__main__":
    raise SystemExit(main())
