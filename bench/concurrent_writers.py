"""Stress: commands run while `ingest` writes, many rounds over; nothing stored may be lost.

Each round, in a fresh RAG_HOME: `ingest` of 20 text files while a loop runs
`ingest remove /some/path/not/stored` and `rag ask` again and again; then `ingest check` must be
clean and every file must have its chunks. Then, in the same home, a folder is removed while
questions run. Any failed command, empty answer or unclean check is a failure.

    .venv/bin/python bench/concurrent_writers.py --rounds 10 [--json out.json]
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

BIN = Path(sys.executable).parent
WORDS = "river mountain engine valve pressure turbine sensor cable harbor lantern".split()


def make_library(folder: Path, seed: int) -> None:
    import random

    rng = random.Random(seed)
    for part in ("a", "b"):
        (folder / part).mkdir(parents=True, exist_ok=True)
        for n in range(10):
            text = "\n\n".join(
                f"Paragraph {k} of report {part}{n}: code {part}{n}q{k}z. "
                + " ".join(rng.choice(WORDS) for _ in range(45))
                for k in range(20)
            )
            (folder / part / f"report{n:02d}.txt").write_text(text)


def cli(*argv: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True, text=True, timeout=900
    )


def round_trip(work: Path, seed: int) -> dict:
    library = work / "library"
    make_library(library, seed)
    env = dict(os.environ, RAG_HOME=str(work / "home"))
    problems: list[str] = []
    ingest = subprocess.Popen(
        [str(BIN / "ingest"), str(library), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    removes = asks = 0
    while ingest.poll() is None:
        result = cli("ingest", "remove", "/some/path/not/stored", env=env)
        removes += 1
        if result.returncode != 0:
            problems.append(f"remove: {result.stderr.strip()}")
        if ingest.poll() is None and removes % 3 == 0:
            result = cli("rag", "ask", "What is code b3q7z?", "--json", env=env)
            asks += 1
            if result.returncode != 0 and "is empty" not in result.stderr:
                problems.append(f"ask: {result.stderr.strip()}")
    out, err = ingest.communicate()
    if ingest.returncode != 0:
        problems.append(f"ingest: {err.strip()}")
    files = json.loads(cli("ingest", "list", "--json", env=env).stdout)
    empty = [f["file"] for f in files if f["chunks"] == 0]
    if len(files) != 20 or empty:
        problems.append(f"{len(files)} files listed, {len(empty)} without chunks")
    check = cli("ingest", "check", "--json", env=env)
    if check.returncode != 0:
        problems.append(f"check: {check.stdout.strip()}")
    remove = subprocess.Popen(
        [str(BIN / "ingest"), "remove", str(library / "a")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while remove.poll() is None:
        result = cli("rag", "ask", "What is code b3q7z?", "--json", env=env)
        asks += 1
        if result.returncode != 0 or not json.loads(result.stdout)["sources"]:
            problems.append(f"ask during remove: {result.stderr.strip()}")
    if remove.wait() != 0:
        problems.append("remove of a folder failed")
    check = cli("ingest", "check", "--json", env=env)
    if check.returncode != 0:
        problems.append(f"check after remove: {check.stdout.strip()}")
    return {"removes": removes, "asks": asks, "problems": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = []
    for number in range(args.rounds):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            result = round_trip(Path(work), number)
        result["seconds"] = round(time.perf_counter() - started, 1)
        results.append(result)
        status = "ok" if not result["problems"] else "; ".join(result["problems"])
        print(
            f"round {number + 1}: {result['removes']} removes, {result['asks']} questions during "
            f"writes, {result['seconds']} s: {status}",
            flush=True,
        )
    failed = sum(1 for r in results if r["problems"])
    print(f"{args.rounds - failed}/{args.rounds} rounds clean")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
