"""The HTTP API under load: concurrent askers plus an uploader, then a consistency check.

    .venv/bin/python bench/load.py [--clients 20] [--seconds 60] [--max-queue 8] [--home DIR] [--json]

In a fresh RAG_HOME (or --home), on loopback only: ingests sample_docs/, creates an API key,
starts `rag serve` on a free 127.0.0.1 port and asks one warm-up question. Then, for --seconds,
--clients threads (each with its own httpx.Client) ask varied questions about sample_docs, every
other one with "stream": true (time to the first delta is measured), while one more client
uploads a small generated text file and deletes it again. A client that gets 503 waits for its
Retry-After (a 503 without one is an error). Every response is counted: 200, 503, or an error by
kind. Requests still running at the deadline are finished and counted. Afterwards the server is
stopped and `ingest check --json` says whether manifest, store and keyword index still agree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python bench/load.py` as well as `python -m bench.load`

import httpx  # noqa: E402

from tests.integration.conftest import free_port, wait_for_http  # noqa: E402

BIN = Path(sys.executable).parent
COLLECTION = "default"
REQUEST_TIMEOUT_S = 300.0  # one answer, queue included; bounds the run past --seconds
QUESTIONS = [
    "What is new in firmware 3.2.0 for the Kestrel K2?",
    "How do I restart a K2 that has stopped responding?",
    "How many K2 robots were shipped in Q1 and how many are in service?",
    "What was decided about the Nordvik Logistics pilot?",
    "What must a new starter collect from the IT Service Desk on day 1?",
    "How much does the company pay for the lunch with the onboarding buddy?",
    "What does error E-214 mean and what was fixed about it?",
    "What is the battery swap mode?",
    "Berapa lama pelatihan operator K2?",
    "How narrow can an aisle be for the robot to route through it?",
    "What is the maximum payload of the K2 robot?",
    "How many days of annual leave do employees get?",
]
NOTE = (
    "Load test note {n}. The loading dock at the {site} depot opens at {hour}:00 and the "
    "visiting engineer for this week is number {n}. Pallets are checked twice before dispatch.\n"
)


class Tally:
    """Outcomes of every request, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: Counter[str] = Counter()  # ok / busy_503 / other
        self.errors: Counter[str] = Counter()
        self.by_route: Counter[str] = Counter()
        self.latency: list[float] = []  # completed asks, seconds
        self.spans: list[tuple[float, float]] = []  # completed asks, (sent, done) monotonic
        self.ttft: list[float] = []  # streamed asks, seconds to the first delta
        self.refused = 0
        self.uploads = 0
        self.deletes = 0
        self.streamed = 0

    def ok(self, route: str) -> None:
        with self.lock:
            self.status["ok"] += 1
            self.by_route[f"{route} 200"] += 1

    def busy(self, route: str) -> None:
        with self.lock:
            self.status["busy_503"] += 1
            self.by_route[f"{route} 503"] += 1

    def error(self, route: str, kind: str) -> None:
        with self.lock:
            self.status["other"] += 1
            self.errors[f"{route}: {kind}"] += 1
            self.by_route[f"{route} error"] += 1


def classify(response: httpx.Response, route: str, tally: Tally) -> float | None:
    """Count a non-200 response; the seconds to wait before the next try (None: no wait)."""
    if response.status_code == 503:
        retry = response.headers.get("retry-after")
        if retry is None:
            tally.error(route, "503 without Retry-After")
            return None
        tally.busy(route)
        try:
            return float(retry)
        except ValueError:
            return 1.0
    try:
        kind = response.json()["error"]["type"]
    except (ValueError, KeyError, TypeError):
        kind = "no JSON error body"
    tally.error(route, f"{response.status_code} {kind}")
    return None


def asker(
    index: int, base: str, key: str, deadline: float, tally: Tally, stop: threading.Event
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    url = f"/v1/collections/{COLLECTION}/ask"
    turn = 0
    with httpx.Client(base_url=base, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
        while time.monotonic() < deadline and not stop.is_set():
            question = QUESTIONS[(index + turn) % len(QUESTIONS)]
            stream = (index + turn) % 2 == 0
            turn += 1
            route = "ask stream" if stream else "ask"
            wait = None
            try:
                if stream:
                    wait = streamed_ask(client, url, question, tally)
                else:
                    wait = plain_ask(client, url, question, tally)
            except httpx.HTTPError as exc:
                tally.error(route, type(exc).__name__)
                wait = 1.0  # do not spin if the server is gone
            if wait:
                stop.wait(min(wait, max(0.0, deadline - time.monotonic())))


def plain_ask(client: httpx.Client, url: str, question: str, tally: Tally) -> float | None:
    sent = time.monotonic()
    started = time.perf_counter()
    response = client.post(url, json={"question": question})
    if response.status_code != 200:
        return classify(response, "ask", tally)
    body = response.json()
    if not isinstance(body.get("answer"), str):
        tally.error("ask", "200 without an answer")
        return None
    with tally.lock:
        tally.latency.append(time.perf_counter() - started)
        tally.spans.append((sent, time.monotonic()))
        tally.refused += bool(body.get("refused"))
    tally.ok("ask")
    return None


def streamed_ask(client: httpx.Client, url: str, question: str, tally: Tally) -> float | None:
    sent = time.monotonic()
    started = time.perf_counter()
    first = None
    final = None
    with client.stream("POST", url, json={"question": question, "stream": True}) as response:
        if response.status_code != 200:
            response.read()
            return classify(response, "ask stream", tally)
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[len("data: ") :])
            if event.get("type") == "delta" and first is None:
                first = time.perf_counter() - started
            elif event.get("type") == "final":
                final = event
    if final is None:
        tally.error("ask stream", "stream ended without a final event")
        return None
    with tally.lock:
        tally.latency.append(time.perf_counter() - started)
        tally.spans.append((sent, time.monotonic()))
        if first is not None:
            tally.ttft.append(first)
        tally.refused += bool(final.get("refused"))
        tally.streamed += 1
    tally.ok("ask stream")
    return None


def uploader(base: str, key: str, deadline: float, tally: Tally, stop: threading.Event) -> None:
    """Upload a new small text file, find it in the list, delete it; again until the deadline."""
    headers = {"Authorization": f"Bearer {key}"}
    docs = f"/v1/collections/{COLLECTION}/documents"
    n = 0
    with httpx.Client(base_url=base, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
        while time.monotonic() < deadline and not stop.is_set():
            n += 1
            name = f"load-note-{os.getpid()}-{n}.txt"
            text = NOTE.format(
                n=n, site=("Bristol", "Surabaya", "Rotterdam")[n % 3], hour=6 + n % 4
            )
            wait = None
            try:
                response = client.post(docs, files={"files": (name, text.encode(), "text/plain")})
                if response.status_code != 200:
                    wait = classify(response, "upload", tally)
                else:
                    tally.ok("upload")
                    with tally.lock:
                        tally.uploads += 1
                    wait = delete_named(client, docs, name, tally)
            except httpx.HTTPError as exc:
                tally.error("upload/delete", type(exc).__name__)
                wait = 1.0
            if wait:
                stop.wait(min(wait, max(0.0, deadline - time.monotonic())))


def delete_named(client: httpx.Client, docs: str, name: str, tally: Tally) -> float | None:
    """Delete the document stored under `name` (retrying a busy answer until it is gone)."""
    for _ in range(20):
        listing = client.get(docs)
        if listing.status_code != 200:
            wait = classify(listing, "list", tally)
            time.sleep(wait or 1.0)
            continue
        tally.ok("list")
        found = [d for d in listing.json()["documents"] if Path(d["file"]).name == name]
        if not found:
            tally.error("list", "uploaded document not listed")
            return None
        response = client.delete(f"{docs}/{found[0]['id']}")
        if response.status_code == 200:
            tally.ok("delete")
            with tally.lock:
                tally.deletes += 1
            return None
        wait = classify(response, "delete", tally)
        if wait is None:
            return None
        time.sleep(wait)
    return None


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most answered asks that were in the server at the same moment: with --max-queue N
    this should not exceed about N + 1 (the answer being written plus N waiting)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def run_cli(args: list[str], env: dict) -> tuple[int, dict | list | None, str]:
    """One of our console scripts: (exit status, its JSON output, stderr)."""
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:]], env=env, capture_output=True, text=True, check=False
    )
    try:
        data = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    return done.returncode, data, done.stderr


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=20, help="concurrent askers (20)")
    parser.add_argument("--seconds", type=float, default=60, help="how long they ask (60)")
    parser.add_argument("--max-queue", type=int, default=8, help="`rag serve --max-queue` (8)")
    parser.add_argument("--home", help="RAG_HOME to use (default: a new temporary one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    home = Path(args.home or tempfile.mkdtemp(prefix="rag-load-")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, RAG_HOME=str(home))
    status, ingested, err = run_cli(["ingest", str(ROOT / "sample_docs"), "--json"], env)
    if status not in (0, 1) or not isinstance(ingested, dict):
        raise SystemExit(f"ingest sample_docs failed ({status}): {err.strip()[-500:]}")
    status, created, err = run_cli(
        ["rag", "keys", "create", "--collection", COLLECTION, "--json"], env
    )
    if status != 0 or not isinstance(created, dict):
        raise SystemExit(f"rag keys create failed ({status}): {err.strip()[-500:]}")
    key = created["key"]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = home / "serve.log"
    command = [str(BIN / "rag"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--max-queue", str(args.max_queue)]
    tally = Tally()
    stop = threading.Event()
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_http(f"{base}/healthz", timeout=120, process=server)
            warmup_s = warm_up(base, key)
            deadline = time.monotonic() + args.seconds
            started = time.perf_counter()
            threads = [
                threading.Thread(target=asker, args=(i, base, key, deadline, tally, stop))
                for i in range(args.clients)
            ]
            threads.append(
                threading.Thread(target=uploader, args=(base, key, deadline, tally, stop))
            )
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall_s = time.perf_counter() - started
        finally:
            stop.set()
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    status, check, err = run_cli(["ingest", "check", "--json"], env)
    index_matches = (
        isinstance(check, dict) and bool(check.get("clean")) and not check.get("problems")
    )
    sample_files = ingested.get("files")
    result = {
        "requests": sum(tally.status.values()),
        "ok": tally.status["ok"],
        "busy_503": tally.status["busy_503"],
        "other_errors": tally.status["other"],
        "p50_s": rounded(percentile(tally.latency, 50)),
        "p95_s": rounded(percentile(tally.latency, 95)),
        "ttft_p50_s": rounded(percentile(tally.ttft, 50)),
        "index_matches": index_matches,
        "asks_completed": len(tally.latency),
        "asks_admitted_at_once": most_at_once(tally.spans),
        "asks_streamed": tally.streamed,
        "asks_refused": tally.refused,
        "uploads": tally.uploads,
        "deletes": tally.deletes,
        "errors_by_kind": dict(tally.errors),
        "by_route": dict(sorted(tally.by_route.items())),
        "clients": args.clients,
        "seconds": args.seconds,
        "wall_s": rounded(wall_s),
        "warmup_s": rounded(warmup_s),
        "max_queue": args.max_queue,
        "sample_files": sample_files,
        "check": {k: check.get(k) for k in ("files", "chunks", "store_chunks", "problems")}
        if isinstance(check, dict)
        else err.strip()[-300:],
        "home": str(home),
        "server_log": str(log_path),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0 if result["other_errors"] == 0 and index_matches else 1


def warm_up(base: str, key: str) -> float:
    """One question before the clock starts, so the models are loaded (not counted)."""
    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as client:
        response = client.post(
            f"/v1/collections/{COLLECTION}/ask",
            json={"question": QUESTIONS[0]},
            headers={"Authorization": f"Bearer {key}"},
        )
    if response.status_code != 200:
        raise SystemExit(f"warm-up ask failed: {response.status_code} {response.text[:300]}")
    return time.perf_counter() - started


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def print_table(result: dict) -> None:
    print(
        f"{result['clients']} askers + 1 uploader for {result['seconds']:g} s "
        f"(--max-queue {result['max_queue']}), wall {result['wall_s']} s"
    )
    rows = [
        ("requests", result["requests"]),
        ("ok (200)", result["ok"]),
        ("busy (503 + Retry-After)", result["busy_503"]),
        ("other errors", result["other_errors"]),
        ("asks completed", result["asks_completed"]),
        ("  most in the server at once", result["asks_admitted_at_once"]),
        ("  of them streamed", result["asks_streamed"]),
        ("  of them refused", result["asks_refused"]),
        ("uploads / deletes", f"{result['uploads']} / {result['deletes']}"),
        ("ask latency p50 s", result["p50_s"]),
        ("ask latency p95 s", result["p95_s"]),
        ("time to first delta p50 s", result["ttft_p50_s"]),
        ("index matches (ingest check)", result["index_matches"]),
    ]
    for name, value in rows:
        print(f"{name:30} {'-' if value is None else value!s:>10}")
    for kind, count in result["errors_by_kind"].items():
        print(f"  error {kind}: {count}")


if __name__ == "__main__":
    raise SystemExit(main())
