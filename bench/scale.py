"""How the product's costs grow with the library: 10k, 100k and 1M chunks in the embedded store.

    python -m bench.scale [--sizes 10000,100000,1000000] [--home DIR] [--json] [--out FILE]
                          [--docs DIR] [--questions FILE] [--pool 2000] [--torch-threads N]

Building a library of a million chunks by ingesting files would take days on a small CPU (the
embedding model writes about 30 chunks/s), so each library is built from a pool of real chunks:

1. Pool: the documents of --docs are loaded and split by the product's own loaders and chunker,
   and --pool of their chunks are embedded once with the configured model (cached in the home
   folder as pool-N.npy / pool-N.json).
2. Chunks: every synthetic chunk starts from one pool chunk (its base): it takes a run of the
   base's sentences mixed with sentences of other real chunks until it holds 800 to 1,000
   characters; its vector is the base's vector plus a small Gaussian perturbation (sigma 0.02 a
   dimension, cosine to the base about 0.93), normalised.
3. Documents: the chunks are grouped in documents of 100 chunks (/library/docNNNNN.pdf), each
   drawing its bases from one real source document, plus one document of 1,000 chunks
   (/library/doc00000.pdf) that the benchmark removes. A document is generated from its number
   alone, so it can be written again identically.
4. Writing goes through the product's layers, as an ingest would: the manifest's journal intent,
   `rag.store.upsert_nodes` with llama-index TextNodes carrying their embeddings, the manifest's
   `put_content` / `put_file` in one transaction per batch, then the keyword index.

Each size lives in HOME/nSIZE; with --home a built library is reused (built.json says how it
was made), so a size is built once and measured again as often as needed. The measurements run
in a fresh process per size (its memory is the library's, not the build's), through the public
paths the front-ends use (`rag.app.build_app`): `Engine.retrieve` over varied real questions
(3 warm-ups first), `Engine.stats` (the page's document and chunk counts), `Ingestor.records`
(`ingest list`), `Ingestor.ingest` of a new ~100-chunk text file with the real model (the
embedding of its chunks is timed apart), and `Ingestor.remove` of the 1,000-chunk document
(written back afterwards, so the library keeps its size).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/scale.py` as well as `python -m bench.scale`

from bench.scale_build import (  # noqa: E402
    BIG_DOCUMENT,
    NAME,
    PER_DOCUMENT,
    SIGMA,
    Pool,
    SynthDoc,
    build_library,
    catch_up_keywords,
    document_files,
    make_pool,
    rewrite_document,
)
from rag.app import App, build_app  # noqa: E402
from rag.models import backend_name  # noqa: E402
from rag.settings import Settings, load_settings  # noqa: E402

DEVSET = ROOT.parent / "shared" / "devset"
SIZES = (10_000, 100_000, 1_000_000)
ROUNDS = 3  # every question is timed this many times (retrieve p50/p95 over all of them)
ASSESSED = 20  # questions also timed with the evidence read (assess=True: seconds each)
GOALS = {  # at 1M chunks
    "retrieve_p95_ms": 150.0,
    "remove_s": 1.0,
    "add100_s": 2.0,
    "count_ms": 50.0,
    "growth_retrieve_p95": 5.0,
}


# --- measuring ---------------------------------------------------------------------------


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_mb(folder: Path) -> float:
    total = (
        sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
    )
    return round(total / 1024**2, 1)


def timed(function: Callable, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def summary_ms(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def load_questions(path: Path | None, count: int, pool: Pool, seed: int = 11) -> list[str]:
    """`count` questions of the devset (varied: a seeded sample), else made from pool chunks."""
    if path is not None and path.is_file():
        found = [json.loads(line)["question"] for line in path.read_text().splitlines() if line]
    else:
        found = [f"What does the guide say about {s.split('.')[0][:80]}?" for s in pool.texts]
    rng = random.Random(seed)
    return rng.sample(found, min(count, len(found)))


def note_file(folder: Path, pool: Pool, chunks: int = 100, chunk_chars: int = 620) -> Path:
    """A new plain-text file of real sentences, about `chunks` chunks long, unique to this run."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(time.time_ns())
    lines = [f"Field notes {time.time_ns()}.", ""]
    length = 0
    while length < chunks * chunk_chars:  # the chunker's 220 tokens: ~620 characters here
        line = " ".join(rng.choice(pool.all_sentences) for _ in range(4))
        lines.append(line)
        length += len(line) + 1
    path = folder / f"notes-{time.time_ns()}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def measure(app: App, pool: Pool, built: dict, questions: list[str]) -> dict:
    """Every figure for one built library, through the product's public paths."""
    from rag import store
    from rag.manifest import reading

    engine, settings = app.engine, app.settings
    out: dict = {"rss_start_mb": round(rss_mb(), 1), "load_average": os.getloadavg()[0]}
    embedder = app.models.embedder
    embedder.get_query_embedding("warm up")
    out["rss_models_mb"] = round(rss_mb(), 1)
    collection = app.store.collection(NAME, create=False)
    vector = embedder.get_query_embedding(questions[0])
    # the first count and the first query of a process read the store from disk (every
    # command pays them once; the page and the API once per start)
    out["first_count_s"], _ = timed(store.count_chunks, collection)
    out["first_dense_s"], _ = timed(store.nearest, collection, vector, settings.candidates)
    out["rss_store_loaded_mb"] = round(rss_mb(), 1)
    out["store_mb"] = round(out["rss_store_loaded_mb"] - out["rss_models_mb"], 1)
    out["keyword_load_s"], index = timed(app.keywords.load, NAME, collection)
    out["rss_keyword_loaded_mb"] = round(rss_mb(), 1)
    out["keyword_mb"] = round(out["rss_keyword_loaded_mb"] - out["rss_store_loaded_mb"], 1)

    for question in questions[:3]:  # warm-ups
        engine.retrieve(question, top_k=settings.top_k, assess=False)
    encode_s = encode_timer(embedder)
    rounds: list[list[float]] = []
    library: list[float] = []  # each call less the model's time encoding the question
    for _ in range(ROUNDS):
        rounds.append([])
        for question in questions:
            before = len(encode_s) if encode_s is not None else 0
            seconds, _ = timed(engine.retrieve, question, top_k=settings.top_k, assess=False)
            rounds[-1].append(seconds)
            library.append(seconds - (sum(encode_s[before:]) if encode_s is not None else 0))
    out.update({f"retrieve_{k}": v for k, v in summary_ms(sum(rounds, [])).items()})
    # each question's best round: what the library costs, without the neighbours' load
    best = summary_ms([min(times) for times in zip(*rounds, strict=True)])
    out.update({f"retrieve_best_{k}": v for k, v in best.items()})
    out.update({f"retrieve_library_{k}": v for k, v in summary_ms(library).items()})
    assessed = [timed(engine.retrieve, q, top_k=settings.top_k)[0] for q in questions[:ASSESSED]]
    out.update({f"retrieve_assess_{k}": v for k, v in summary_ms(assessed).items()})
    parts: dict[str, list[float]] = {"embed": [], "dense": [], "keyword": []}
    for question in questions:
        seconds, vector = timed(embedder.get_query_embedding, question)
        parts["embed"].append(seconds)
        parts["dense"].append(timed(store.nearest, collection, vector, settings.candidates)[0])
        parts["keyword"].append(timed(index.search, question, settings.candidates)[0])
    out["retrieve_parts_p50_ms"] = {k: summary_ms(v)["p50_ms"] for k, v in parts.items()}
    out["retrieve_parts_p95_ms"] = {k: summary_ms(v)["p95_ms"] for k, v in parts.items()}

    counts = [timed(engine.stats, NAME)[0] for _ in range(20)]
    out["count_ms"] = summary_ms(counts)["p50_ms"]
    out["count_p95_ms"] = summary_ms(counts)["p95_ms"]
    out["count_parts_ms"] = {
        "store_count": summary_ms([timed(store.count_chunks, collection)[0] for _ in range(20)])[
            "p50_ms"
        ],
        "manifest_documents": summary_ms(
            [timed(engine.document_count, NAME)[0] for _ in range(20)]
        )["p50_ms"],
    }
    ingestor = app.ingestor()
    listing = [timed(ingestor.records, NAME)[0] for _ in range(5)]
    out["list_ms"] = summary_ms(listing)["p50_ms"]
    with reading(settings.home, NAME) as manifest:  # O(library) reads a writer makes each run
        out["manifest_parts_ms"] = {
            "chunk_ids_by_content": round(timed(manifest.chunk_ids_by_content)[0] * 1000, 1),
            "records": round(timed(manifest.records)[0] * 1000, 1),
            "all_chunk_ids": round(timed(manifest.all_chunk_ids)[0] * 1000, 1),
        }

    keyword_s = keyword_timer(app)

    def add_note() -> tuple[Path, float, Any, float | None]:
        """A new ~100-chunk note ingested: its path, the seconds, the report and the model's
        share of the seconds (None without a timed encoder)."""
        if encode_s is not None:
            encode_s.clear()
        note = note_file(settings.home / "new-files", pool)
        seconds, report = timed(ingestor.ingest, [note], NAME)
        return note, seconds, report, None if encode_s is None else round(sum(encode_s), 3)

    note, out["add100_s"], report, embed_s = add_note()
    if embed_s is not None:
        out["add100_embed_s"] = embed_s
        out["add100_overhead_s"] = round(out["add100_s"] - embed_s, 3)
    out["add100_chunks"] = report.chunks
    out["add100_keyword_s"] = round(sum(keyword_s), 3)
    keyword_s.clear()
    out["remove100_s"], _ = timed(ingestor.remove, [note], NAME)
    out["remove100_keyword_s"] = round(sum(keyword_s), 3)
    note.unlink()
    # the next file, as the page or the API adds it: the parser process of the first is kept
    second, out["add100_next_s"], _, embed_s = add_note()
    if embed_s is not None:
        out["add100_next_embed_s"] = embed_s
    ingestor.remove([second], NAME)
    second.unlink()

    keyword_s.clear()
    out["remove_s"], (removed, _) = timed(ingestor.remove, [built["big_path"]], NAME)
    out["remove_keyword_s"] = round(sum(keyword_s), 3)
    out["removed_chunks"] = built["big_chunks"] if removed else 0
    big = SynthDoc(0, built["big_chunks"])
    out["readd_s"], _ = timed(rewrite_document, app, pool, big)
    out["chunks_after"] = store.count_chunks(collection)
    out["rss_mb"] = round(rss_mb(), 1)
    out["load_average_end"] = os.getloadavg()[0]
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    home = settings.home
    out["disk_mb"] = disk_mb(home)
    out["disk_parts_mb"] = {
        part: disk_mb(home / part) for part in ("chroma", "keyword", "manifests")
    }
    for key, value in list(out.items()):
        if isinstance(value, float) and key.endswith("_s"):
            out[key] = round(value, 3)
    return out


def encode_timer(embedder) -> list[float] | None:
    """Seconds the embedding model spends encoding, appended per call (a timing wrapper on
    this loaded model's `encode`); None for an embedder without one (the tests' fake)."""
    model = getattr(embedder, "model", None)
    original = getattr(model, "encode", None)
    if original is None:
        return None
    spent: list[float] = []

    def encode(*args, **kwargs):
        seconds, result = timed(original, *args, **kwargs)
        spent.append(seconds)
        return result

    model.encode = encode
    return spent


def keyword_timer(app: App) -> list[float]:
    """Seconds spent bringing the keyword index up to date, appended per call (a timing
    wrapper on this App's KeywordIndexes only)."""
    spent: list[float] = []
    original = app.keywords.update

    def update(*args, **kwargs):
        seconds, result = timed(original, *args, **kwargs)
        spent.append(seconds)
        return result

    app.keywords.update = update
    return spent


# --- one size, one process ---------------------------------------------------------------


def settings_for(home: Path) -> Settings:
    os.environ["RAG_HOME"] = str(home)
    return load_settings(home=home)


def pool_stem(root: Path, limit: int) -> Path:
    """Where the pool of `limit` chunks embedded by the configured backend is kept: one per
    backend, as the libraries built from it hold that backend's vectors."""
    return root / f"pool-{limit}-{backend_name(load_settings())}"


def pool_for(root: Path, docs: Path, limit: int) -> Pool:
    """The pool cached under `root`, made (and saved) on first use."""
    stem = pool_stem(root, limit)
    if stem.with_suffix(".json").is_file() and stem.with_suffix(".npy").is_file():
        return Pool.load(stem)
    settings = settings_for(root / "pool-home")
    app = build_app(settings)
    print(f"pool: embedding {limit} chunks of {docs} ...", file=sys.stderr)
    started = time.perf_counter()
    pool = make_pool(settings, app.models.embedder, document_files(docs), limit)
    print(
        f"pool: {len(pool.texts)} chunks in {time.perf_counter() - started:.0f}s", file=sys.stderr
    )
    root.mkdir(parents=True, exist_ok=True)
    pool.save(stem)
    shutil.rmtree(root / "pool-home", ignore_errors=True)
    return pool


def run_build(home: Path, size: int, pool_stem: Path) -> dict:
    """Build one size in this process (a child of main) and write HOME/built.json."""
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    pool = Pool.load(pool_stem)
    app = build_app(settings_for(home))
    started = time.perf_counter()
    built = build_library(app, pool, size)
    built["build_s"] = round(time.perf_counter() - started, 1)
    built["build_peak_rss_mb"] = round(peak_rss_mb(), 1)
    built["pool"] = pool_stem.name
    (home / "built.json").write_text(json.dumps(built, indent=2))
    app.close()
    return built


def run_measure(
    home: Path, pool_stem: Path, questions_path: Path | None, count: int, threads: int = 0
) -> dict:
    if threads:
        import torch

        torch.set_num_threads(threads)
    pool = Pool.load(pool_stem)
    built = json.loads((home / "built.json").read_text())
    app = build_app(settings_for(home))
    result = measure(app, pool, built, load_questions(questions_path, count, pool))
    result["questions"] = count
    result["build_s"] = built["build_s"]
    result["build_timings_s"] = {k: round(v, 1) for k, v in built["timings"].items()}
    result["build_peak_rss_mb"] = built.get("build_peak_rss_mb")
    app.close()
    return result


def child(args: list[str]) -> dict:
    """Run this script in a fresh process for one step; its JSON answer."""
    command = [sys.executable, "-m", "bench.scale", *args]
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed with exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import chromadb

    from bench.ingest import machine as host

    return {
        **host(),
        "chromadb": chromadb.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


METHOD = (
    "Pool of {pool} real chunks ({docs}, product loaders and chunker, embedded once with the "
    "configured model); each synthetic chunk recombines a base chunk's sentences with other real "
    "sentences (800-1,000 chars) and takes the base's vector plus Gaussian noise (sigma "
    f"{SIGMA}/dim), normalised; documents of {PER_DOCUMENT} chunks plus one of {BIG_DOCUMENT}, "
    "written through the manifest's journal, rag.store.upsert_nodes, put_content/put_file and "
    "the keyword index. Measured in a fresh process per size through build_app: Engine.retrieve "
    "(top_k from settings, assess=False; 3 warm-ups, 3 rounds) over {questions} devset questions, "
    "Engine.stats, Ingestor.records, Ingestor.ingest of a new ~100-chunk text file (embedding "
    "timed apart), Ingestor.remove of the 1,000-chunk document (written back afterwards)."
)


def table(result: dict) -> str:
    rows = [
        ("chunks", lambda r: f"{r['chunks_after']:,}"),
        ("retrieve p50 / p95 ms", lambda r: f"{r['retrieve_p50_ms']} / {r['retrieve_p95_ms']}"),
        ("  less question encoding p95 ms", lambda r: f"{r['retrieve_library_p95_ms']}"),
        ("  with assess p95 ms", lambda r: f"{r['retrieve_assess_p95_ms']}"),
        ("remove 1,000 chunks s", lambda r: f"{r['remove_s']}"),
        ("add 100 chunks s (embed)", lambda r: f"{r['add100_s']} ({r['add100_embed_s']})"),
        (
            "  the next 100, parser kept s (embed)",
            lambda r: f"{r['add100_next_s']} ({r.get('add100_next_embed_s', '-')})",
        ),
        ("list ms", lambda r: f"{r['list_ms']}"),
        ("count ms", lambda r: f"{r['count_ms']}"),
        ("rss MB", lambda r: f"{r['rss_mb']}"),
        ("disk MB", lambda r: f"{r['disk_mb']}"),
        ("build s", lambda r: f"{r['build_s']}"),
    ]
    sizes = result["sizes"]
    per = result["per_size"]
    lines = ["| figure | " + " | ".join(f"{s:,}" for s in sizes) + " |"]
    lines.append("| --- |" + " --- |" * len(sizes))
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(per[str(s)]) for s in sizes) + " |")
    return "\n".join(lines)


def growth(per_size: dict, sizes: list[int], key: str) -> float:
    return round(per_size[str(sizes[-1])][key] / per_size[str(sizes[0])][key], 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--home", type=Path, help="keep (and reuse) built libraries here")
    parser.add_argument("--docs", type=Path, default=DEVSET / "docs")
    parser.add_argument("--questions", type=Path, default=DEVSET / "questions.jsonl")
    parser.add_argument("--count", type=int, default=50, help="questions timed")
    parser.add_argument("--pool", type=int, default=2000, help="real chunks embedded")
    parser.add_argument("--rebuild", action="store_true", help="build again even when kept")
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="torch threads while measuring (0: torch's)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--build-one", nargs=3, metavar=("HOME", "SIZE", "POOL"), help="internal")
    parser.add_argument("--measure-one", nargs=2, metavar=("HOME", "POOL"), help="internal")
    parser.add_argument("--catch-up-one", metavar="HOME", help="internal")
    args = parser.parse_args(argv)
    if args.build_one:
        home, size, stem = args.build_one
        print(json.dumps(run_build(Path(home), int(size), Path(stem))))
        return 0
    if args.catch_up_one:
        app = build_app(settings_for(Path(args.catch_up_one)))
        seconds, _ = timed(catch_up_keywords, app)
        print(json.dumps({"keyword_catchup_s": round(seconds, 3)}))
        return 0
    if args.measure_one:
        home, stem = args.measure_one
        result = run_measure(Path(home), Path(stem), args.questions, args.count, args.torch_threads)
        print(json.dumps(result))
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    docs = args.docs if args.docs.is_dir() else ROOT / "sample_docs"
    root = args.home or Path(tempfile.mkdtemp(prefix="rag-scale-"))
    root = root.absolute()
    try:
        pool = pool_for(root, docs, args.pool)
        stem = pool_stem(root, args.pool)
        per_size = {}
        for size in sizes:
            home = root / f"n{size}"
            marker = home / "built.json"
            kept = marker.is_file() and json.loads(marker.read_text()).get("pool") == stem.name
            if args.rebuild or not kept:
                print(f"building {size:,} chunks in {home}", file=sys.stderr)
                child(["--build-one", str(home), str(size), str(stem)])
            # a library kept from an older keyword index format is brought up to date first,
            # in its own process (nothing to do for one built by this code)
            caught_up = child(["--catch-up-one", str(home)])
            print(f"measuring {size:,} chunks", file=sys.stderr)
            per_size[str(size)] = caught_up | child(
                [
                    "--measure-one",
                    str(home),
                    str(stem),
                    "--questions",
                    str(args.questions),
                    "--count",
                    str(args.count),
                    "--torch-threads",
                    str(args.torch_threads),
                ]
            )
    finally:
        if args.home is None:
            shutil.rmtree(root, ignore_errors=True)
    result = {
        "sizes": sizes,
        "per_size": per_size,
        "growth_retrieve_library_p95": growth(per_size, sizes, "retrieve_library_p95_ms"),
        "growth_retrieve_best_p95": growth(per_size, sizes, "retrieve_best_p95_ms"),
        "torch_threads": args.torch_threads or "torch's default",
        "growth_retrieve_p95": growth(per_size, sizes, "retrieve_p95_ms"),
        "machine": machine(),
        "method": METHOD.format(pool=len(pool.texts), docs=docs, questions=min(args.count, 70)),
        "goals_at_largest": GOALS,
    }
    largest = per_size[str(sizes[-1])]
    result["goals_met"] = {
        key: (result["growth_retrieve_p95"] if key.startswith("growth") else largest[key]) <= goal
        for key, goal in GOALS.items()
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
