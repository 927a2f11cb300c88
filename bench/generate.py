"""Generation benchmark: the `rag ask` path against raw llama-cpp-python, in one run.

    python bench/generate.py [--model GGUF] [--runs 3] [--max-tokens 128] [--json] [--out FILE]

Reports, for the embedded GGUF (or --model):
  (a) gen_ratio              generation tokens/s of our path / raw create_completion tokens/s
  (b) prefill_ratio          prompt tokens/s of our path / raw (same prompt, threads, batch)
  (c) ttft_breakdown_s       query embedding, retrieval, prompt building, prefill
  (d) warm_cold_ttft_ratio   TTFT of a second question / the first one in a fresh process
  (e) threads_ratio          generation tokens/s with our threads / llama-cpp-python's default

Our side is the product's own path: `Engine.prepare(question)` searches and builds the messages,
and the App's chat model streams them. Every side starts each run from an empty prompt cache (the
product through `reset_cache()`, the raw models through `Llama.reset()`), so every prefill is cold
and the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.models import chat_formatter  # noqa: E402

QUESTIONS = [
    "How many days of paid annual leave do full-time employees get?",
    "What does error code E-214 mean and how do I fix it?",
    "When was firmware 3.2.0 released and what did it add?",
]


def measure_stream(pieces, count_tokens) -> dict:
    """First-token time and generation rate of a stream of text pieces.

    Tokens are counted in the finished text (a stream may hold text back to check for stop
    strings, so pieces are not tokens); the rate is tokens after the first / time after it.
    """
    started = time.perf_counter()
    first = last = None
    text = []
    for piece in pieces:
        now = time.perf_counter()
        first = first or now
        last = now
        text.append(piece)
    if first is None:
        return {"ttft_s": None, "tokens": 0, "gen_tok_s": None}
    tokens = count_tokens("".join(text))
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else None
    return {"ttft_s": first - started, "tokens": tokens, "gen_tok_s": rate}


def raw_llama(model: str, n_ctx: int, threads: int | None, n_batch: int):
    from llama_cpp import Llama

    kwargs = {"n_threads": threads, "n_threads_batch": threads} if threads else {}
    return Llama(model_path=model, n_ctx=n_ctx, n_batch=n_batch, verbose=False, **kwargs)


def format_prompt(llama, messages: list[dict]) -> str:
    """The prompt text the GGUF's own chat template makes of these messages (as our path does)."""
    return chat_formatter(llama)(messages=messages).prompt


def raw_run(llama, prompt: str, max_tokens: int, temperature: float) -> dict:
    stream = llama.create_completion(
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=temperature,
        repeat_penalty=1.1,
        stream=True,
    )
    return measure_stream((chunk["choices"][0]["text"] for chunk in stream), count_with(llama))


def count_with(llama):
    return lambda text: len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))


def cold_and_warm(home: Path, model: str | None) -> dict:
    """A fresh process: first question (models load on first use) then a second one."""
    code = (
        "import json,time,sys;from rag.settings import load_settings;"
        "from rag.app import build_app;e=build_app(load_settings()).engine;out=[]\n"
        "for q in sys.argv[1:3]:\n"
        " t=time.perf_counter();s=e.stream(q);it=iter(s);next(it);out.append(time.perf_counter()-t)\n"
        " [None for _ in it]\n"
        "print(json.dumps(out))"
    )
    env = dict(os.environ, RAG_HOME=str(home))
    if model:
        env["RAG_LLM_MODEL"] = model
    result = subprocess.run(
        [sys.executable, "-c", code, QUESTIONS[0], QUESTIONS[0] + " Please be brief."],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    cold, warm = json.loads(result.stdout)
    return {"cold_ttft_s": cold, "warm_ttft_s": warm}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", help="a GGUF file (default: the embedded SmolLM2)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions per measurement (3)")
    parser.add_argument(
        "--max-tokens", type=int, default=128, help="tokens generated per run (128)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="rag-genbench-"))
    os.environ["RAG_HOME"] = str(home)
    if args.model:
        os.environ["RAG_LLM_MODEL"] = str(Path(args.model).resolve())
    os.environ["RAG_MAX_ANSWER_TOKENS"] = str(args.max_tokens)
    subprocess.run(
        [str(Path(sys.executable).parent / "ingest"), str(ROOT / "sample_docs"), "--json"],
        check=True,
        capture_output=True,
    )

    from rag.app import build_app
    from rag.settings import load_settings

    settings = load_settings()
    app = build_app(settings)
    engine, llm = app.engine, app.models.llm
    engine.prepare(QUESTIONS[0])  # load the embedding model and keyword index outside timings

    breakdown: dict[str, list[float]] = {
        "embed_s": [],
        "retrieve_s": [],
        "prompt_s": [],
        "prefill_s": [],
    }
    ours: list[dict] = []
    raws: list[dict] = []
    defaults: list[dict] = []
    raw = raw_llama(settings.llm_model, settings.n_ctx, settings.threads, settings.n_batch)
    default = raw_llama(settings.llm_model, settings.n_ctx, None, settings.n_batch)
    prompt_tokens = []
    for run in range(args.runs):
        question = QUESTIONS[run % len(QUESTIONS)]
        t0 = time.perf_counter()
        app.models.embedder.get_query_embedding(question)
        embed_s = time.perf_counter() - t0
        prepared = engine.prepare(question)  # search, then fit the passages and build the prompt
        prompt_built = time.perf_counter()
        messages = prepared.messages
        if not messages:
            raise SystemExit(f"the product refused {question!r}; no prompt to measure")
        llm.reset_cache()  # cold prefill on every side
        mine = measure_stream(
            llm.stream_chat(messages, args.max_tokens, settings.temperature), count_with(raw)
        )
        breakdown["embed_s"].append(embed_s)
        breakdown["retrieve_s"].append(max(0.0, prepared.retrieved - prepared.started - embed_s))
        breakdown["prompt_s"].append(prompt_built - prepared.retrieved)
        breakdown["prefill_s"].append(mine["ttft_s"])
        prompt = format_prompt(raw, messages)
        n_prompt = len(raw.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
        prompt_tokens.append(n_prompt)
        mine["prefill_tok_s"] = n_prompt / mine["ttft_s"]
        raw.reset()
        theirs = raw_run(raw, prompt, args.max_tokens, settings.temperature)
        theirs["prefill_tok_s"] = n_prompt / theirs["ttft_s"]
        default.reset()
        lib_default = raw_run(default, prompt, args.max_tokens, settings.temperature)
        ours.append(mine)
        raws.append(theirs)
        defaults.append(lib_default)

    def med(items: list[dict], key: str) -> float:
        return statistics.median(i[key] for i in items if i[key])

    warm = cold_and_warm(home, args.model)
    result = {
        "model": settings.llm_model,
        "threads": settings.threads,
        "library_default_threads": max(os.cpu_count() // 2, 1),
        "prompt_tokens_median": statistics.median(prompt_tokens),
        "max_tokens": args.max_tokens,
        "runs": args.runs,
        "ours_gen_tok_s": med(ours, "gen_tok_s"),
        "raw_gen_tok_s": med(raws, "gen_tok_s"),
        "gen_ratio": med(ours, "gen_tok_s") / med(raws, "gen_tok_s"),
        "ours_prefill_tok_s": med(ours, "prefill_tok_s"),
        "raw_prefill_tok_s": med(raws, "prefill_tok_s"),
        "prefill_ratio": med(ours, "prefill_tok_s") / med(raws, "prefill_tok_s"),
        "ttft_breakdown_s": {k: statistics.median(v) for k, v in breakdown.items()},
        **warm,
        "warm_cold_ttft_ratio": warm["warm_ttft_s"] / warm["cold_ttft_s"],
        "default_threads_gen_tok_s": med(defaults, "gen_tok_s"),
        "threads_ratio": med(ours, "gen_tok_s") / med(defaults, "gen_tok_s"),
    }
    result = json.loads(json.dumps(result), parse_float=lambda v: round(float(v), 4))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
