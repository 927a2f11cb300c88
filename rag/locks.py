"""OS file locks that keep processes from stepping on each other's writes.

- One writer per collection: `ingest`, `ingest remove`, `ingest check` and uploads from the page hold
  `RAG_HOME/locks/<collection>.lock` for their whole run. The lock is an flock on an open file, so
  it is released by the kernel when its holder dies: whoever holds it knows that any unfinished
  write in the journal was left by a process that is gone.
- Opening the embedded store for the first time creates its tables; two processes doing that at
  once collide, so that step is serialized by `RAG_HOME/locks/store.lock`.
Readers (questions, `ingest list`, the page's counts) take no lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from rag.errors import ExitStatus, UserError
from rag.settings import Settings


class CollectionBusyError(UserError):
    """Another command is changing the collection and the caller chose not to wait."""

    exit_status = ExitStatus.BUSY


def lock_dir(settings: Settings) -> Path:
    folder = settings.home / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def owner_of(path: Path) -> str:
    """What the lock holder wrote next to its lock: 'pid 123: ingest', or '' when unknown."""
    try:
        return path.with_suffix(".owner").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


@contextmanager
def writer_lock(
    settings: Settings,
    collection: str,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
    purpose: str = "ingest",
) -> Iterator[None]:
    """Hold the collection's writer lock; wait for it (telling `on_wait` once) or fail at once."""
    path = lock_dir(settings) / f"{collection}.lock"
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        holder = owner_of(path) or "another command"
        if not wait:
            raise CollectionBusyError(
                f"collection '{collection}' is being changed by {holder}; "
                "wait for it to finish or run again without --no-wait"
            ) from exc
        if on_wait is not None:
            on_wait(f"waiting for {holder} to finish changing collection '{collection}'…")
        lock.acquire()
    try:
        path.with_suffix(".owner").write_text(f"pid {os.getpid()}: {purpose}", encoding="utf-8")
        yield
    finally:
        lock.release()


def is_writing(settings: Settings, collection: str) -> bool:
    """True while some process holds the collection's writer lock."""
    path = lock_dir(settings) / f"{collection}.lock"
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


@contextmanager
def store_init_lock(settings: Settings) -> Iterator[None]:
    """Serialize creating the embedded store's tables across processes."""
    with FileLock(str(lock_dir(settings) / "store.lock"), thread_local=False):
        yield
