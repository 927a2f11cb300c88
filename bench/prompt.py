"""Prompt-size study: how answer quality and the time to the first token move with the number of
passages (k), the chunk size and the sentence-level context trim.

    python -m bench.prompt QUESTIONS.jsonl DOCS [--chunk-sizes 220,128] [--json] [--out FILE]

Each configuration is one `rag eval QUESTIONS --json` with generation, on a library of DOCS
ingested at that chunk size (the first ingest of each size is not timed). Reported per
configuration: keyword and citation accuracy, refusal and false-refusal rates, the prompt's tokens
and the prefill time (passages found -> first token), median over the answered questions.
Set RAG_LLM_BACKEND/RAG_LLM_MODEL as for `rag` to study another model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ingest import machine  # noqa: E402

BIN = Path(sys.executable).parent
KEYS = (
    "keyword_accuracy",
    "citation_accuracy",
    "refusal_rate",
    "false_refusal_rate",
    "hit@5",
    "prompt_tokens_p50",
    "prefill_p50_s",
    "generate_p50_s",
)
# (label, top_k, trim margin or None)
CONFIGS = (
    ("k=5", 5, None),
    ("k=3", 3, None),
    ("k=5 trim 0.05", 5, 0.05),
    ("k=5 trim 0.15", 5, 0.15),
    ("k=5 trim 0.30", 5, 0.30),
    ("k=3 trim 0.15", 3, 0.15),
)


def evaluate(questions: Path, env: dict, top_k: int, margin: float | None) -> dict:
    env = dict(env)
    if margin is not None:
        env |= {"RAG_CONTEXT_TRIM": "true", "RAG_CONTEXT_TRIM_MARGIN": str(margin)}
    else:
        env["RAG_CONTEXT_TRIM"] = "false"
    command = [str(BIN / "rag"), "eval", str(questions), "--json", "-k", str(top_k)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"rag eval failed: {done.stderr.strip()[-400:]}")
    overall = json.loads(done.stdout)["overall"]
    return {key: overall.get(key) for key in KEYS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("questions", type=Path)
    parser.add_argument("docs", type=Path)
    parser.add_argument("--chunk-sizes", default="220,128", help="comma-separated (220,128)")
    parser.add_argument("--work", type=Path, help="keep the libraries here (default: a temp dir)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="rag-prompt-"))
    base = {k: v for k, v in os.environ.items() if k not in ("RAG_HOME", "RAG_CHUNK_SIZE")}
    base.setdefault("RAG_MODEL_CACHE", str(work / "models"))
    rows = []
    for size in (int(s) for s in args.chunk_sizes.split(",")):
        env = dict(base, RAG_HOME=str(work / f"chunks-{size}"), RAG_CHUNK_SIZE=str(size))
        subprocess.run(
            [str(BIN / "ingest"), str(args.docs), "--json"],
            env=env,
            capture_output=True,
            check=True,
        )
        configs = CONFIGS if size == 220 else CONFIGS[:1]
        for label, top_k, margin in configs:
            row = {"chunk_size": size, "config": label, "top_k": top_k, "trim_margin": margin}
            row |= evaluate(args.questions, env, top_k, margin)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    result = {
        "machine": machine(),
        "llm_backend": base.get("RAG_LLM_BACKEND", "llama-cpp"),
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'chunks':>6} {'config':16}" + "".join(f"{k[:14]:>15}" for k in KEYS))
        for row in rows:
            cells = "".join(f"{'-' if row[k] is None else row[k]:>15}" for k in KEYS)
            print(f"{row['chunk_size']:>6} {row['config']:16}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
