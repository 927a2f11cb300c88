"""Retrieval quality per embedding backend, on the same documents and questions in one run.

    python -m bench.quality QUESTIONS.jsonl DOCS [--backends onnx,torch] [--json] [--out FILE]

Each backend gets its own library of DOCS (`ingest`, timed after the model was prepared) and one
`rag eval QUESTIONS --no-generate --json`. Reported per backend: hit@1, hit@5, MRR@10, page hit@5,
refusal and false-refusal rates, per language too; then each backend's difference from the first
one listed after it (torch by default) and whether hit@5 and MRR@10 stay within 0.01.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import machine  # noqa: E402

BIN = Path(sys.executable).parent
KEYS = ("hit@1", "hit@5", "mrr@10", "page_hit@5", "refusal_rate", "false_refusal_rate")
TOLERANCE = 0.01


def measure(backend: str, questions: Path, docs: Path, work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {
        "RAG_HOME": str(work / backend),
        "RAG_EMBED_BACKEND": backend,
        "RAG_MODEL_CACHE": str(work / "models"),
    }
    warm = dict(env, RAG_HOME=str(work / f"{backend}-warm-up"))  # prepares the model (ONNX export)
    sample = ROOT / "sample_docs" / "onboarding-checklist.md"
    subprocess.run([str(BIN / "ingest"), str(sample)], env=warm, capture_output=True, check=True)
    started = time.perf_counter()
    ingest = subprocess.run(
        [str(BIN / "ingest"), str(docs), "--json"], env=env, capture_output=True, text=True
    )
    ingest_s = time.perf_counter() - started
    if ingest.returncode not in (0, 1):
        raise SystemExit(f"ingest ({backend}) failed: {ingest.stderr.strip()[-400:]}")
    done = subprocess.run(
        [str(BIN / "rag"), "eval", str(questions), "--no-generate", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"rag eval ({backend}) failed: {done.stderr.strip()[-400:]}")
    report = json.loads(done.stdout)
    row = {key: report["overall"][key] for key in KEYS}
    row["by_language"] = {
        lang: {key: values[key] for key in ("hit@5", "mrr@10")}
        for lang, values in report["by_language"].items()
    }
    row["ingest_s"] = round(ingest_s, 1)
    row["chunks"] = json.loads(ingest.stdout).get("chunks")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("questions", type=Path)
    parser.add_argument("docs", type=Path)
    parser.add_argument("--backends", default="torch,onnx", help="comma-separated (torch,onnx)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="rag-quality-"))
    names = args.backends.split(",")
    rows = {name: measure(name, args.questions, args.docs, work) for name in names}
    reference = rows[names[0]]
    deltas = {
        name: {key: round(row[key] - reference[key], 4) for key in ("hit@5", "mrr@10")}
        for name, row in rows.items()
        if name != names[0]
    }
    result = {
        "machine": machine(),
        "reference": names[0],
        "backends": rows,
        "delta": deltas,
        "within_tolerance": all(abs(v) <= TOLERANCE for d in deltas.values() for v in d.values()),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'backend':10}" + "".join(f"{k:>20}" for k in KEYS) + f"{'ingest_s':>10}")
        for name, row in rows.items():
            print(f"{name:10}" + "".join(f"{row[k]:>20}" for k in KEYS) + f"{row['ingest_s']:>10}")
        print(f"delta vs {names[0]}: {deltas}; within {TOLERANCE}: {result['within_tolerance']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
