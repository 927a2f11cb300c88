"""Parse files in guarded worker processes, so that a hostile file costs one report line.

Every file is parsed in a worker process (a fresh interpreter, never a fork: the main process
holds torch; and unlike multiprocessing's spawn it does not re-run the caller's main script,
so no `if __name__ == "__main__"` guard is needed anywhere). The main process watches each worker's memory and time; one that goes over
RAG_PARSE_MEMORY_MB or RAG_PARSE_TIMEOUT_S on a file is killed and replaced, that file is
reported as failed, and the run goes on. Workers start only when there is a file to parse.

A long-lived process (the page, the API) adds one uploaded file at a time: the workers a run
leaves idle are kept as spares for RAG_PARSE_KEEP_S, so the next run skips starting an
interpreter (about a second, plus the parser's first imports).
"""

from __future__ import annotations

import atexit
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from ingest.errors import FileProblem, LoadError, SkipFile
from rag.settings import Settings

POLL_SECONDS = 0.05  # how often a busy worker's memory and time are checked
START_SECONDS = 120.0  # longest a worker may take to load the tokenizer before its first file
RETIRE_SHARE = 0.5  # a worker above this share of the memory limit after a file is replaced
READY = "ready"


def load_options(settings: Settings, ocr: bool) -> dict:
    """Keyword arguments for load_file taken from the settings."""
    return {
        "ocr": ocr,
        "ocr_languages": settings.ocr_languages,
        "max_unzipped_mb": settings.max_unzipped_mb,
        "max_file_chars": settings.max_file_chars,
        "max_cell_chars": settings.max_cell_chars,
        "max_row_cells": settings.max_row_cells,
    }


def parse_file(path: Path, chunker, content_key: str, sha256: str, options: dict):
    """Load and split one file: (nodes, parser, warnings), or the FileProblem that stopped it."""
    from ingest.loaders import load_file

    try:
        loaded = load_file(path, **options)
        nodes = chunker.chunk(path, loaded, sha256, key=content_key)
        if not nodes:
            raise SkipFile("no text to store after splitting")
        return nodes, loaded.parser, loaded.warnings
    except FileProblem as problem:
        return problem


ParseFunction = Callable[[Path, object, str, str, dict], object]


WORKER_CODE = "import sys; from ingest.parallel import serve; serve(int(sys.argv[1]))"


def serve(fd: int) -> None:
    """A worker's life: load the chunk tokenizer once, then parse the files it is sent."""
    conn = Connection(fd)
    try:
        sys.path[:] = conn.recv()  # the caller's import path, for `parse` functions it names
        settings_json, ocr, parse = conn.recv()
        from ingest.chunking import Chunker

        settings = Settings.model_validate_json(settings_json)
        chunker = Chunker.from_settings(settings)
        options = load_options(settings, ocr)
    except (EOFError, OSError, KeyboardInterrupt):
        return
    except Exception as exc:
        conn.send(LoadError(f"the parser process could not start ({type(exc).__name__}: {exc})"))
        return
    try:
        conn.send(READY)
        while (task := conn.recv()) is not None:
            if task == READY:  # a kept worker asked whether it still answers
                conn.send(READY)
                continue
            path, content_key, sha256 = task
            try:
                result = parse(path, chunker, content_key, sha256, options)
            except Exception as exc:  # a splitter bug on odd text must not end the batch
                result = LoadError(f"parser failed ({type(exc).__name__}: {exc})")
            conn.send(result)
    except (EOFError, OSError, KeyboardInterrupt):  # the main process went away or stopped us
        return


@dataclass
class Worker:
    process: subprocess.Popen
    conn: Connection
    task: int | None = None  # index of the file it is parsing
    ready: bool = False  # tokenizer loaded
    since: float = 0.0  # when it started its task (or its start-up)


def resident_mb(pid: int) -> float:
    """A process's resident memory (VmRSS) in MB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


PING_SECONDS = 2.0  # longest a kept worker may take to answer before it is replaced
SPARES_AT_MOST = 2  # idle parser processes kept, all settings together (about 300 MB each)


class Spares:
    """Ready, idle parser processes kept between runs, each for the run settings it was started
    with; stopped after `keep_s` idle, the oldest first beyond SPARES_AT_MOST."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle: list[tuple[tuple, Worker, float]] = []  # (key, worker, expiry), oldest first
        self._ending: list[tuple[Worker, float]] = []  # asked to exit: (worker, kill after)
        self._reaper: threading.Thread | None = None

    def take(self, key: tuple) -> Worker | None:
        """A kept worker for `key` that still answers, or None."""
        while True:
            with self._lock:
                entry = next((e for e in self._idle if e[0] == key), None)
                if entry is None:
                    return None
                self._idle.remove(entry)
            if self._answers(entry[1]):  # asked outside the lock: it may take a moment
                return entry[1]
            with self._lock:
                self._end(entry[1])

    def give(self, key: tuple, worker: Worker, keep_s: float) -> bool:
        """Keep an idle, ready worker for `keep_s`; False when none are kept (keep_s is 0)."""
        if keep_s <= 0 or worker.process.poll() is not None:
            return False
        with self._lock:
            self._idle.append((key, worker, time.monotonic() + keep_s))
            while len(self._idle) > SPARES_AT_MOST:
                self._end(self._idle.pop(0)[1])
            if self._reaper is None:
                self._reaper = threading.Thread(
                    target=self._reap, name="parser-spares", daemon=True
                )
                self._reaper.start()
            self._wake.notify()
        return True

    def stop_all(self) -> None:
        """Ask every kept worker to exit, without waiting (at interpreter exit)."""
        with self._lock:
            for _, worker, _ in self._idle:
                self._end(worker)
            self._idle = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)

    def _reap(self) -> None:
        """Ask expired workers to exit, and wait for (or kill) those asked."""
        with self._lock:
            while True:
                now = time.monotonic()
                for entry in [e for e in self._idle if e[2] <= now]:
                    self._idle.remove(entry)
                    self._end(entry[1])
                for worker, deadline in list(self._ending):
                    if worker.process.poll() is None and now > deadline:
                        worker.process.kill()
                    if worker.process.poll() is not None:
                        self._ending.remove((worker, deadline))
                soonest = min((e[2] for e in self._idle), default=now + 3600)
                if self._ending:
                    soonest = min(soonest, now + 0.1)
                self._wake.wait(timeout=max(0.05, soonest - now))

    def _end(self, worker: Worker) -> None:
        """Ask a worker to exit (the reaper collects it, or kills it after 2 s)."""
        try:
            worker.conn.send(None)
        except OSError:
            pass
        worker.conn.close()
        self._ending.append((worker, time.monotonic() + 2.0))
        self._wake.notify()

    @staticmethod
    def _answers(worker: Worker) -> bool:
        """The worker is alive and answers at once (one that died while kept would fail the
        next file as if the file had crashed it)."""
        if worker.process.poll() is not None:
            return False
        try:
            if worker.conn.poll():  # an idle worker says nothing unasked: it ended or broke
                return False
            worker.conn.send(READY)
            return worker.conn.poll(PING_SECONDS) and worker.conn.recv() == READY
        except (OSError, EOFError):
            return False


SPARES = Spares()
atexit.register(SPARES.stop_all)


class ParsePool:
    """Yields (path, record, result) in input order, parsing in guarded worker processes.

    RAG_INGEST_WORKERS=0 (the default on 2 cores): one worker parses one file at a time while
    the main process waits; N > 0: N workers parse up to 4 files each ahead of embedding.
    """

    def __init__(
        self, settings: Settings, ocr: bool = False, parse: ParseFunction | None = None
    ) -> None:
        self.settings = settings
        self.ocr = ocr
        self.parse = parse or parse_file
        self.size = max(1, settings.ingest_workers)
        self.ahead = 1 if settings.ingest_workers <= 0 else settings.ingest_workers * 4
        self._workers: list[Worker] = []
        self._broken: LoadError | None = None  # why a worker could not start, if one could not

    def map(self, items: list) -> Iterator[tuple]:
        items = list(items)
        results: dict[int, object] = {}
        waiting = deque(range(len(items)))
        for index, (path, record) in enumerate(items):
            while index not in results:
                if self._broken is not None:  # no worker can start: fail fast, not per file
                    results.update((i, self._broken) for i in waiting)
                    waiting.clear()
                self._dispatch(items, waiting, index + self.ahead)
                self._collect(results)
            yield path, record, results.pop(index)

    def close(self) -> None:
        """Keep idle workers as spares (RAG_PARSE_KEEP_S) or ask them to exit; kill busy ones."""
        for worker in list(self._workers):
            if worker.task is None and worker.ready:
                if SPARES.give(self._key(), worker, self.settings.parse_keep_s):
                    self._workers.remove(worker)
        for worker in self._workers:
            if worker.task is None:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        for worker in list(self._workers):
            if worker.task is None:
                try:
                    worker.process.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            self._kill(worker)

    # --- inside ------------------------------------------------------------------------

    def _dispatch(self, items: list, waiting: deque, before: int) -> None:
        """Hand files (up to index `before`, exclusive) to idle workers, starting some if needed."""
        while waiting and waiting[0] < before:
            worker = next((w for w in self._workers if w.task is None), None)
            if worker is None:
                if len(self._workers) >= self.size:
                    return
                worker = self._start()
            index = waiting.popleft()
            path, record = items[index]
            worker.conn.send((path, record.content_key, record.sha256))
            worker.task = index
            if worker.ready:
                worker.since = time.monotonic()

    def _key(self) -> tuple:
        """What a worker was started with: a spare serves only a run with the same."""
        return (self.settings.model_dump_json(), self.ocr, self.parse, tuple(sys.path))

    def _start(self) -> Worker:
        spare = SPARES.take(self._key())
        if spare is not None:
            spare.since = time.monotonic()
            self._workers.append(spare)
            return spare
        ours, theirs = socket.socketpair()
        with ours, theirs:
            process = subprocess.Popen(
                [sys.executable, "-c", WORKER_CODE, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # stdout may carry the caller's JSON report
            )
            conn = Connection(ours.detach())
        conn.send(sys.path)
        conn.send((self.settings.model_dump_json(), self.ocr, self.parse))
        worker = Worker(process, conn, since=time.monotonic())
        self._workers.append(worker)
        return worker

    def _collect(self, results: dict[int, object]) -> None:
        """Wait a moment for results; kill workers over their memory or time limit."""
        limit_mb = self.settings.parse_memory_mb
        busy = [w for w in self._workers if w.task is not None]
        for conn in wait([w.conn for w in busy], timeout=POLL_SECONDS):
            worker = next(w for w in busy if w.conn is conn)
            try:
                message = conn.recv()
            except (EOFError, OSError):
                self._fail(worker, results, "the parser process died", "")
                continue
            if message == READY:
                worker.ready, worker.since = True, time.monotonic()
                continue
            results[worker.task] = message
            worker.task = None
            if not worker.ready:  # it could not start, and no other worker will
                self._broken = message if isinstance(message, LoadError) else None
                self._kill(worker)
            elif resident_mb(worker.process.pid) > RETIRE_SHARE * limit_mb:
                self._kill(worker)  # left big by its last file: the next one starts fresh
        now = time.monotonic()
        timeout = self.settings.parse_timeout_s
        for worker in [w for w in self._workers if w.task is not None]:
            if resident_mb(worker.process.pid) > limit_mb:
                self._fail(
                    worker,
                    results,
                    f"parser used over {limit_mb} MB (RAG_PARSE_MEMORY_MB)",
                    "split the file or raise the limit",
                )
            elif worker.ready and now - worker.since > timeout:
                self._fail(
                    worker,
                    results,
                    f"parsing took over {timeout:g} s (RAG_PARSE_TIMEOUT_S)",
                    "split the file or raise the limit",
                )
            elif not worker.ready and now - worker.since > max(timeout, START_SECONDS):
                self._fail(worker, results, "the parser process did not start", "try again")
            elif worker.process.poll() is not None and not worker.conn.poll():
                self._fail(worker, results, "the parser process died", "")

    def _fail(self, worker: Worker, results: dict[int, object], what: str, hint: str) -> None:
        """Record the worker's file as failed and take the worker out of service."""
        task, ready = worker.task, worker.ready
        self._kill(worker)
        if not hint:  # it ended by itself: say how
            how = exit_reason(worker.process.returncode)
            if ready:
                what, hint = f"{what} ({how})", "the file may be damaged"
            else:
                what, hint = f"the parser process could not start ({how})", "see the errors above"
                self._broken = LoadError(f"{what}; {hint}")
        results[task] = LoadError(f"{what}; {hint}")

    def _kill(self, worker: Worker) -> None:
        if worker.process.poll() is None:
            worker.process.kill()
        worker.process.wait()
        worker.conn.close()
        worker.task = None
        if worker in self._workers:
            self._workers.remove(worker)
