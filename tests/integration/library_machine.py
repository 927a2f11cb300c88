"""The document library as a state machine: random file changes and commands, checked after each step.

A Hypothesis `RuleBasedStateMachine` changes files in a temporary folder (add, edit, move, copy,
delete) and runs the real commands over it, as a user does: `ingest FOLDER [--sync]`,
`ingest remove PATH`, an `ingest` killed with SIGKILL midway, and a second command started while an
`ingest` runs. Once every process has ended, after each step that could have changed the store:

- nothing is left in the manifest's journal, and the chunk ids of the manifest, of the Chroma
  store and of the saved keyword index (RAG_HOME/keyword/<collection>/) are the same;
- `ingest check --json` reports the collection clean;
- after `ingest FOLDER --sync`, `ingest list --json` holds exactly the files on disk;
- every file stored since its last change is found by its marker word (retrieval only).

A killed run may leave a journal that the next writer finishes, so after a kill the invariants
are checked again only once an `ingest` has completed.

tests/integration/test_library_state_machine.py takes a short walk in `make test`; bench/soak.py
takes long ones. `python -m tests.integration.library_machine probe` is the helper process that
reads the three stores and retrieves (it needs the embedding model, so it runs once per check).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from rag.store import Store
from tests.integration.server_pass import fresh_store

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Small chunks so that a few lines make several chunks; tiny write batches so that one run
# writes many batches (more moments for a kill or a second command to land in).
CHUNK_ENV = {"RAG_CHUNK_SIZE": "64", "RAG_CHUNK_OVERLAP": "8", "RAG_INGEST_BATCH_CHUNKS": "2"}
FOLDERS = ("", "sub", "sub/deep")
MAX_FILES = 16
TOP_K = 5
TIMEOUT = 600
REPEAT_SECOND = 100  # most runs of the second command during one ingest
SECOND_COMMANDS = ("list", "remove-unknown", "retrieve", "ingest")


@dataclass
class Stats:
    """What the walks did, summed over all examples (bench/soak.py prints it)."""

    steps: Counter = field(default_factory=Counter)
    commands: Counter = field(default_factory=Counter)
    command_seconds: float = 0.0
    kills: int = 0
    kills_too_late: int = 0
    concurrent: int = 0
    concurrent_overlapped: int = 0
    checks: int = 0
    examples: int = 0
    verbose: bool = False  # print one line per walk
    budget_s: float | None = None  # seconds of commands after which walks only change files

    def to_json(self) -> dict:
        return {
            "examples": self.examples,
            "steps": dict(self.steps),
            "commands": dict(self.commands),
            "command_seconds": round(self.command_seconds, 1),
            "kills": self.kills,
            "kills_after_the_run_ended": self.kills_too_late,
            "concurrent_runs": self.concurrent,
            "concurrent_runs_overlapped": self.concurrent_overlapped,
            "invariant_checks": self.checks,
        }


STATS = Stats()


def walk_settings(examples: int, steps: int, shrink: bool = True) -> settings:
    """Hypothesis settings for walks of real commands: no deadline, no example database."""
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if shrink else [])
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        phases=phases,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


def marker_token(number: int) -> str:
    """A unique word no other file holds, e.g. `zqa41c7`: the keyword search finds exactly it."""
    return "zq" + hashlib.sha1(str(number).encode()).hexdigest()[:4] + str(number)


def note_text(token: str, number: int, lines: int, markdown: bool) -> str:
    title = f"# Note {number}" if markdown else f"Note {number}"
    body = [
        f"Line {i} of note {number} tells of harbours, ferry timetables and the weather."
        for i in range(lines)
    ]
    return "\n\n".join([title, f"{token} marker for file {number}.", *body]) + "\n"


def is_under(rel: str, root: str) -> bool:
    return not root or rel == root or rel.startswith(root.rstrip("/") + "/")


@dataclass
class Finished:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        tail = self.stderr.strip().splitlines()[-3:]
        return f"`{' '.join(self.argv)}` exited {self.returncode}: {' | '.join(tail)}"


class LibraryMachine(RuleBasedStateMachine):
    """One library folder and one RAG_HOME, changed by random rules; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        STATS.examples += 1
        self.root = Path(tempfile.mkdtemp(prefix="library-machine-")).resolve()
        self.folder = self.root / "library"
        self.home = self.root / "home"
        for sub in FOLDERS:
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        # no setting leaks in from the shell, but the Chroma server of the server pass
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("RAG_") or k == "RAG_CHROMA_URL"
        }
        self.env.update(CHUNK_ENV, RAG_HOME=str(self.home))
        fresh_store(self.env)  # each walk starts from an empty store, as from an empty RAG_HOME
        self.files: dict[str, str] = {}  # path under the folder -> marker token, as on disk
        self.indexed: dict[str, str] = {}  # files whose current bytes a completed ingest stored
        self.known: set[str] = set()  # every path a file ever had (for `ingest remove`)
        self.number = 0
        self.dirty = False  # a killed ingest may have left work for the next one
        self.unchecked = False  # the store may have changed since the invariants were checked
        self.ingest_seconds = (
            10.0  # the longest `ingest` so far: kills and second commands aim in it
        )
        self.running: list[subprocess.Popen] = []
        self.steps: list[str] = []
        self.started = time.monotonic()

    def step(self, name: str) -> None:
        STATS.steps[name] += 1
        self.steps.append(name)

    def teardown(self) -> None:
        for process in self.running:
            stop(process)
        shutil.rmtree(self.root, ignore_errors=True)
        if STATS.verbose:
            print(
                f"walk {STATS.examples}: {len(self.steps)} steps in "
                f"{time.monotonic() - self.started:.0f}s ({', '.join(self.steps)})",
                flush=True,
            )

    # --- processes -----------------------------------------------------------------------

    def start(self, *argv: str) -> subprocess.Popen:
        """Start one of the console scripts in its own process group, as a user would."""
        STATS.commands[command_name(argv)] += 1
        process = subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]],
            env=self.env,
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        process.argv = list(argv)  # type: ignore[attr-defined]
        process.started = time.monotonic()  # type: ignore[attr-defined]
        self.running.append(process)
        return process

    def finish(self, process: subprocess.Popen, quiet: bool = False) -> Finished:
        try:
            out, err = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            stop(process)
            out, err = process.communicate()
        self.running.remove(process)
        seconds = time.monotonic() - process.started  # type: ignore[attr-defined]
        STATS.command_seconds += seconds
        done = Finished(process.argv, process.returncode, out, err, seconds)  # type: ignore[attr-defined]
        if done.returncode or not quiet:
            ok = f"`{' '.join(done.argv)}` ok"
            note(f"  {done.describe() if done.returncode else ok} ({seconds:.1f}s)")
        return done

    def command(self, *argv: str) -> Finished:
        return self.finish(self.start(*argv))

    def ingest_argv(self, sync: bool = False) -> list[str]:
        return ["ingest", str(self.folder), "--json", *(["--sync"] if sync else [])]

    def completed_ingest(self, before: dict[str, str], run: Finished) -> None:
        """An `ingest FOLDER` ended well: every file unchanged since it started is stored."""
        assert run.returncode == 0, run.describe()
        json.loads(run.stdout)
        self.indexed = {rel: t for rel, t in before.items() if self.files.get(rel) == t}
        self.dirty = False
        self.unchecked = True
        self.ingest_seconds = max(self.ingest_seconds, run.seconds)

    # --- files ---------------------------------------------------------------------------

    def write(self, rel: str, lines: int) -> None:
        self.number += 1
        token = marker_token(self.number)
        path = self.folder / rel
        path.write_text(note_text(token, self.number, lines, rel.endswith(".md")))
        self.files[rel] = token
        self.indexed.pop(rel, None)
        self.known.add(rel)

    def fresh_name(self, folder: str, suffix: str) -> str:
        self.number += 1
        return f"{folder}/note{self.number}{suffix}".lstrip("/")

    def pick(self, index: int) -> str:
        names = sorted(self.files)
        return names[index % len(names)]

    @initialize(count=st.integers(1, 4), lines=st.integers(0, 12), two_ingests=st.booleans())
    def first_files(self, count: int, lines: int, two_ingests: bool) -> None:
        """Every walk starts with a few files, so that its first command has work to do; half
        the walks begin with two `ingest` runs started at once on the new RAG_HOME."""
        for n, folder in zip(range(count), FOLDERS * 2, strict=False):
            self.write(self.fresh_name(folder, ".md" if n % 2 else ".txt"), lines + 2 * n)
        if two_ingests and self.within_budget():
            self.step("two first ingests at once")
            before = dict(self.files)
            both = [self.start(*self.ingest_argv()), self.start(*self.ingest_argv())]
            for run in [self.finish(process) for process in both]:
                assert run.returncode == 0, f"two first ingests at once: {run.describe()}"
                self.completed_ingest(before, run)

    @precondition(lambda self: len(self.files) < MAX_FILES)
    @rule(
        count=st.integers(1, 4),
        folder=st.sampled_from(FOLDERS),
        suffix=st.sampled_from([".md", ".txt"]),
        lines=st.integers(0, 12),
    )
    def add_files(self, count: int, folder: str, suffix: str, lines: int) -> None:
        self.step("add_files")
        for n in range(count):
            self.write(self.fresh_name(folder, suffix), lines + 3 * n)

    @precondition(lambda self: self.files)
    @rule(index=st.integers(0, 1000), lines=st.integers(0, 12))
    def edit_file(self, index: int, lines: int) -> None:
        self.step("edit_file")
        self.write(self.pick(index), lines)

    @precondition(lambda self: self.files)
    @rule(index=st.integers(0, 1000), folder=st.sampled_from(FOLDERS))
    def move_file(self, index: int, folder: str) -> None:
        self.step("move_file")
        rel = self.pick(index)
        new = self.fresh_name(folder, Path(rel).suffix)
        (self.folder / rel).rename(self.folder / new)
        self.files[new] = self.files.pop(rel)
        self.indexed.pop(rel, None)
        self.known.add(new)

    @precondition(lambda self: self.files and len(self.files) < MAX_FILES)
    @rule(index=st.integers(0, 1000), folder=st.sampled_from(FOLDERS))
    def copy_file(self, index: int, folder: str) -> None:
        self.step("copy_file")
        rel = self.pick(index)
        new = self.fresh_name(folder, Path(rel).suffix)
        shutil.copyfile(self.folder / rel, self.folder / new)
        self.files[new] = self.files[rel]
        self.known.add(new)

    @precondition(lambda self: self.files)
    @rule(index=st.integers(0, 1000))
    def delete_file(self, index: int) -> None:
        self.step("delete_file")
        rel = self.pick(index)
        (self.folder / rel).unlink()
        del self.files[rel]
        self.indexed.pop(rel, None)

    # --- commands ------------------------------------------------------------------------

    def within_budget(self) -> bool:
        return STATS.budget_s is None or STATS.command_seconds < STATS.budget_s

    @precondition(lambda self: self.within_budget() or self.dirty)
    @rule(sync=st.booleans())
    def ingest(self, sync: bool) -> None:
        self.step("ingest --sync" if sync else "ingest")
        before = dict(self.files)
        self.completed_ingest(before, self.command(*self.ingest_argv(sync)))
        if sync:
            self.check_mirror()

    @precondition(lambda self: self.within_budget())
    @rule(index=st.integers(0, 1000))
    def remove(self, index: int) -> None:
        """`ingest remove` of a file (present, deleted or moved away), a subfolder, or a stranger."""
        self.step("remove")
        targets = [*sorted(self.known), "sub", "sub/deep", "never-stored.md"]
        rel = targets[index % len(targets)]
        run = self.command("ingest", "remove", str(self.folder / rel), "--json")
        assert run.returncode == 0, run.describe()
        json.loads(run.stdout)
        self.indexed = {r: t for r, t in self.indexed.items() if not is_under(r, rel)}
        self.unchecked = True

    def wait_until(self, process: subprocess.Popen, at_writes: bool, percent: int) -> None:
        """Wait for the moment a kill or a second command aims at: `percent` of the longest
        run so far, or, `at_writes`, the run's first write to the manifest plus 0-1 s."""
        if not at_writes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.ingest_seconds * percent / 100)
            return
        before = manifest_marks(self.home)
        deadline = time.monotonic() + TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            marks = manifest_marks(self.home)
            if marks is not None and (marks[0] or marks[1:] != (before or (0, 0, 0.0))[1:]):
                break
            time.sleep(0.02)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=percent / 100)

    @precondition(lambda self: self.within_budget())
    @rule(at_writes=st.booleans(), percent=st.integers(0, 100), sync=st.booleans())
    def kill_ingest(self, at_writes: bool, percent: int, sync: bool) -> None:
        """SIGKILL an `ingest` (and its workers) midway."""
        self.step("kill_ingest")
        before = dict(self.files)
        process = self.start(*self.ingest_argv(sync))
        self.wait_until(process, at_writes, percent)
        stop(process)
        run = self.finish(process)
        if run.returncode == -signal.SIGKILL:
            STATS.kills += 1
            self.dirty = True
            self.unchecked = True
            note(f"  killed after {run.seconds:.1f}s")
        else:  # the run was over before the kill came
            STATS.kills_too_late += 1
            self.completed_ingest(before, run)

    @precondition(lambda self: self.within_budget())
    @rule(
        second=st.sampled_from(SECOND_COMMANDS),
        new_files=st.integers(0, 10),
        at_writes=st.booleans(),
        percent=st.integers(0, 100),
    )
    def second_command_during_ingest(
        self, second: str, new_files: int, at_writes: bool, percent: int
    ) -> None:
        """Add `new_files` and ingest them; while that `ingest` runs, run another command again
        and again (each run has its own moment in the ingest's writes): every run of both must
        end well, and nothing may be lost."""
        self.step(f"during ingest: {second}")
        STATS.concurrent += 1
        for n in range(new_files):
            self.write(self.fresh_name(FOLDERS[n % len(FOLDERS)], ".md"), 2 + n)
        before = dict(self.files)
        first = self.start(*self.ingest_argv())
        self.wait_until(first, at_writes, percent // 2)
        runs: list[Finished] = []
        overlapped = 0  # runs that ended while the ingest was still running
        while not runs or (first.poll() is None and len(runs) < REPEAT_SECOND):
            runs.append(self.finish(self.start(*self.second_argv(second)), quiet=True))
            overlapped += first.poll() is None
            if runs[-1].returncode != 0:
                break
        first_run = self.finish(first)
        STATS.concurrent_overlapped += bool(overlapped)
        note(
            f"  ran `{command_name(tuple(runs[0].argv))}` {len(runs)} time(s), "
            f"{overlapped} of them ended while the ingest ran"
        )
        for run in runs:
            assert run.returncode == 0, f"second command: {run.describe()}"
            if run.stdout.strip():
                json.loads(run.stdout)
        assert first_run.returncode == 0, f"ingest with a second command: {first_run.describe()}"
        self.completed_ingest(before, first_run)

    def second_argv(self, second: str) -> list[str]:
        if second == "list":
            return ["ingest", "list", "--json"]
        if second == "remove-unknown":
            return ["ingest", "remove", str(self.root / "not-stored" / "x.md"), "--json"]
        if second == "ingest":
            return self.ingest_argv()
        if not self.indexed:  # nothing to search yet; `rag eval` on an empty collection exits 1
            return ["ingest", "list", "--json"]
        rel, token = sorted(self.indexed.items())[0]
        questions = self.root / "questions.jsonl"
        questions.write_text(json.dumps({"id": "q", "question": token, "source_file": rel}) + "\n")
        return ["rag", "eval", str(questions), "--no-generate", "--json"]

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def library_is_consistent(self) -> None:
        if self.dirty or not self.unchecked:
            return
        self.unchecked = False
        STATS.checks += 1
        tokens = sorted(set(self.indexed.values()))
        state = self.probe(tokens)
        assert state["pending"] == 0, (
            f"{state['pending']} journal entries left after all runs ended"
        )
        manifest_ids = set(state["manifest_ids"])
        store_ids = set(state["store"])
        assert manifest_ids == store_ids, id_diff(
            "manifest", manifest_ids, "Chroma store", store_ids, state
        )
        keyword_ids = set(state["keyword"] or [])
        assert keyword_ids == store_ids, id_diff(
            "keyword index", keyword_ids, "Chroma store", store_ids, state
        )
        assert len(state["keyword"] or []) == len(keyword_ids), "keyword index repeats chunk ids"
        self.check_retrieval(state)
        self.check_command()

    def probe(self, tokens: list[str]) -> dict:
        started = time.monotonic()
        process = subprocess.run(
            [str(BIN / "python"), "-m", "tests.integration.library_machine", "probe"],
            input=json.dumps({"queries": tokens, "top_k": TOP_K}),
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        STATS.command_seconds += time.monotonic() - started
        assert process.returncode == 0, f"probe failed: {process.stderr.strip()[-1500:]}"
        return json.loads(process.stdout)

    def check_retrieval(self, state: dict) -> None:
        files = state["files"]
        for rel, token in sorted(self.indexed.items()):
            path = str(self.folder / rel)
            digest = hashlib.sha256((self.folder / rel).read_bytes()).hexdigest()
            holders = {
                p for p, r in files.items() if r["status"] == "stored" and r["sha256"] == digest
            }
            assert path in holders, f"{rel} was ingested and not removed, but is not stored"
            found = state["hits"].get(token, [])
            assert holders & set(found), (
                f"searching {token!r} (the marker of {rel}) did not find it; top files: {found}"
            )

    def check_command(self) -> None:
        run = self.command("ingest", "check", "--json")
        assert run.returncode in (0, 1), run.describe()
        report = json.loads(run.stdout)
        assert report["clean"] is True and not report["problems"], (
            f"ingest check: {json.dumps(report)[:1500]}"
        )
        assert run.returncode == 0, run.describe()

    def check_mirror(self) -> None:
        """After `ingest FOLDER --sync`, the library lists exactly the files on disk."""
        run = self.command("ingest", "list", "--json")
        assert run.returncode == 0, run.describe()
        listed = {r["file"]: r["status"] for r in json.loads(run.stdout)}
        on_disk = {str(self.folder / rel) for rel in self.files}
        assert set(listed) == on_disk, (
            f"after --sync, listed but not on disk: {sorted(set(listed) - on_disk)}; "
            f"on disk but not listed: {sorted(on_disk - set(listed))}"
        )
        assert set(listed.values()) <= {"stored"}, listed


def manifest_marks(home: Path) -> tuple[int, int, float] | None:
    """(journal entries, files, newest ingest time) of the manifest, read-only; None when it
    cannot be read now. A change means the running `ingest` has started writing."""
    path = home / "manifests" / "default.sqlite3"
    if not path.exists():
        return None
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        ) as db:
            journal = db.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
            files, newest = db.execute("SELECT COUNT(*), MAX(ingested_at) FROM files").fetchone()
    except sqlite3.Error:
        return None
    return journal, files, newest or 0.0


def command_name(argv: tuple[str, ...]) -> str:
    """`ingest`, `ingest remove`, `rag eval`…: the command without its paths."""
    words = [argv[0], *(a for a in argv[1:2] if not a.startswith(("/", "-")))]
    return " ".join(words)


def stop(process: subprocess.Popen) -> None:
    """SIGKILL a command and the workers it started (its process group)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def id_diff(name_a: str, a: set[str], name_b: str, b: set[str], state: dict) -> str:
    """Which files' chunks one side has and the other lacks."""
    owner = {i: path for path, r in state["files"].items() for i in r["ids"]}
    owner.update({i: f for i, f in state["store"].items() if i not in owner})

    def files_of(ids: set[str]) -> str:
        counts = Counter(Path(owner.get(i) or "?").name for i in ids)
        return ", ".join(f"{name} ({n})" for name, n in sorted(counts.items()))

    return (
        f"{name_a} and {name_b} differ: only in the {name_a}: {len(a - b)} chunks "
        f"[{files_of(a - b)}]; only in the {name_b}: {len(b - a)} chunks [{files_of(b - a)}]"
    )


def keyword_ids(settings) -> list[str] | None:
    """The chunk ids the saved keyword index holds (one per indexed document, so a repeat
    shows); None when there is no index."""
    from rag.keyword import KeywordIndexError, KeywordIndexes

    try:
        return KeywordIndexes(settings).read(settings.collection).ids()
    except KeywordIndexError:
        return None


def probe(request: dict) -> dict:
    """Read the manifest, the store and the keyword index, then retrieve each query (top files)."""
    from rag import store
    from rag.app import build_app
    from rag.manifest import Manifest
    from rag.settings import load_settings

    settings = load_settings()
    manifest = Manifest(settings.home, settings.collection)
    try:
        files = {}
        for record in manifest.records():
            found = manifest.content(record.content_key) if record.content_key else None
            ids = found[0] if found and record.status == "stored" else []
            files[record.path] = {"status": record.status, "sha256": record.sha256, "ids": ids}
        manifest_ids = sorted(manifest.all_chunk_ids())
        pending = len(manifest.pending())
    finally:
        manifest.close()
    collection = Store(settings).collection(create=False)
    chunks = store.metadata_where(collection) if collection is not None else []
    stored = {chunk_id: meta.get("file") for chunk_id, meta in chunks}
    keyword = keyword_ids(settings)
    hits: dict[str, list[str]] = {}
    if request["queries"] and stored:  # read the keyword index above first: a query may rebuild it
        engine = build_app(settings).engine
        for query in request["queries"]:
            sources = engine.retrieve(query, top_k=request["top_k"]).sources
            hits[query] = [source.file for source in sources]
    return {
        "files": files,
        "manifest_ids": manifest_ids,
        "pending": pending,
        "store": stored,
        "keyword": keyword,
        "hits": hits,
    }


if __name__ == "__main__" and sys.argv[1:] == ["probe"]:
    from rag.cli_support import quiet_libraries

    quiet_libraries()
    print(json.dumps(probe(json.loads(sys.stdin.read()))))
