"""Stress: commands run while `ingest` writes, many rounds over; nothing stored may be lost.

Each round, in a fresh RAG_HOME: `ingest` of 20 text files while two loops run beside it,
one `ingest remove /some/path/not/stored` and one `rag ask`, again and again; then `ingest check`
must be clean and every file must have its chunks. Then, in the same home, a folder is removed
while questions run. Any failed command, empty answer or unclean check is a failure.

    .venv/bin/python bench/concurrent_writers.py --rounds 10 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
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


def repeat_while(process: subprocess.Popen, command: list[str], env: dict, ok) -> list[str]:
    """Run `command` again and again in a thread while `process` runs; its failures."""
    problems: list[str] = []
    runs = [0]

    def loop() -> None:
        while process.poll() is None:
            result = cli(*command, env=env)
            runs[0] += 1
            if not ok(result):
                problems.append(f"{command[0]} {command[1]}: {result.stderr.strip()[-300:]}")

    thread = threading.Thread(target=loop)
    thread.start()
    process.wait()
    thread.join()
    problems.insert(0, str(runs[0]))
    return problems


def answered(result: subprocess.CompletedProcess) -> bool:
    if result.returncode != 0:
        return "is empty" in result.stderr  # asked before the first batch was stored
    return bool(json.loads(result.stdout)["sources"])


def round_trip(work: Path, seed: int) -> dict:
    library = work / "library"
    make_library(library, seed)
    env = dict(os.environ, RAG_HOME=str(work / "home"))
    ask = ["rag", "ask", "What is code b3q7z?", "--json"]
    problems: list[str] = []
    ingest = subprocess.Popen(
        [str(BIN / "ingest"), str(library), "--json"], env=env, stdout=subprocess.DEVNULL
    )
    removing = threading.Thread(
        target=lambda: removes.extend(
            repeat_while(
                ingest,
                ["ingest", "remove", "/some/path/not/stored"],
                env,
                lambda r: r.returncode == 0,
            )
        )
    )
    removes: list[str] = []
    removing.start()
    asks = repeat_while(ingest, ask, env, answered)
    removing.join()
    problems += removes[1:] + asks[1:]
    if ingest.returncode != 0:
        problems.append("ingest failed")
    files = json.loads(cli("ingest", "list", "--json", env=env).stdout)
    empty = [f["file"] for f in files if f["chunks"] == 0]
    if len(files) != 20 or empty:
        problems.append(f"{len(files)} files listed, {len(empty)} without chunks")
    check = cli("ingest", "check", "--json", env=env)
    if check.returncode != 0:
        problems.append(f"check: {check.stdout.strip()}")
    remove = subprocess.Popen(
        [str(BIN / "ingest"), "remove", str(library / "a")], env=env, stdout=subprocess.DEVNULL
    )
    asks_during_remove = repeat_while(remove, ask, env, answered)
    problems += asks_during_remove[1:]
    if remove.returncode != 0:
        problems.append("remove of a folder failed")
    check = cli("ingest", "check", "--json", env=env)
    if check.returncode != 0:
        problems.append(f"check after remove: {check.stdout.strip()}")
    return {
        "removes": int(removes[0]),
        "asks": int(asks[0]),
        "asks_during_remove": int(asks_during_remove[0]),
        "problems": problems,
    }


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
            f"round {number + 1}: {result['removes']} removes and {result['asks']} questions "
            f"during the ingest, {result['asks_during_remove']} questions during a removal, "
            f"{result['seconds']} s: {status}",
            flush=True,
        )
    failed = sum(1 for r in results if r["problems"])
    print(f"{args.rounds - failed}/{args.rounds} rounds clean")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
