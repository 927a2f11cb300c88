"""Soak test: long random walks of the document library state machine, with the real commands.

    python bench/soak.py [--examples 50] [--steps 30] [--no-shrink] [--out FILE]

Runs tests/integration/library_machine.py (the machine `make test` walks briefly) for many more
examples and steps, prints what the walks did and whether an invariant broke (with the shortest
sequence of steps Hypothesis found), and writes the same as JSON. Exit status 1 when one broke.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/soak.py` as well as `python -m bench.soak`

from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

from tests.integration.library_machine import STATS, LibraryMachine, walk_settings  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=50, help="random walks (50)")
    parser.add_argument("--steps", type=int, default=30, help="most steps per walk (30)")
    parser.add_argument(
        "--no-shrink", action="store_true", help="report a failure as found, without shrinking"
    )
    parser.add_argument("--out", type=Path, help="write the summary as JSON to this file")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the check helper runs as `python -m tests.integration.library_machine`
    STATS.verbose = True
    started = time.perf_counter()
    failure = None
    try:
        run_state_machine_as_test(
            LibraryMachine,
            settings=walk_settings(args.examples, args.steps, shrink=not args.no_shrink),
        )
    except Exception as exc:  # an invariant broke, or a command failed
        failure = describe(exc)
    seconds = time.perf_counter() - started
    summary = {
        "examples_requested": args.examples,
        "steps_per_example": args.steps,
        "seconds": round(seconds, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **STATS.to_json(),
        "passed": failure is None,
        "failure": failure,
    }
    print_summary(summary)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if failure is None else 1


def describe(exc: BaseException) -> str:
    """The error, the steps Hypothesis noted, and the same for each error of a group (a failure
    that did not come back on replay is reported as a group holding the original one)."""
    text = "".join(traceback.format_exception_only(exc)).strip()
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            text += "\n--- " + describe(inner).replace("\n", "\n    ")
    return text


def print_summary(summary: dict) -> None:
    print(f"\n{'walks (incl. shrinking)':32} {summary['examples']}")
    print(f"{'time':32} {summary['seconds'] / 60:.1f} min")
    for name, count in sorted(summary["steps"].items()):
        print(f"  step {name:27} {count}")
    for name, count in sorted(summary["commands"].items()):
        print(f"  command {name:24} {count}")
    print(
        f"{'kills mid-run / after the end':32} {summary['kills']} / "
        f"{summary['kills_after_the_run_ended']}"
    )
    print(
        f"{'second commands overlapping':32} {summary['concurrent_runs_overlapped']} of "
        f"{summary['concurrent_runs']}"
    )
    print(f"{'invariant checks':32} {summary['invariant_checks']}")
    print("PASSED" if summary["passed"] else f"FAILED\n{summary['failure']}")


if __name__ == "__main__":
    raise SystemExit(main())
