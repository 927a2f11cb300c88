"""Parse files in worker processes while the main process embeds (when there are cores to spare)."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from ingest.chunking import Chunker
from ingest.errors import FileProblem, SkipFile
from ingest.loaders import load_file
from rag.models import load_chunk_tokenizer
from rag.settings import Settings

_worker_chunker: Chunker | None = None
_worker_options: dict = {}


def load_options(settings: Settings, ocr: bool) -> dict:
    """Keyword arguments for load_file taken from the settings."""
    return {
        "ocr": ocr,
        "ocr_languages": settings.ocr_languages,
        "max_unzipped_mb": settings.max_unzipped_mb,
    }


def parse_file(path: Path, chunker: Chunker, content_key: str, sha256: str, options: dict):
    """Load and split one file: (nodes, parser, warnings), or the FileProblem that stopped it."""
    try:
        loaded = load_file(path, **options)
        nodes = chunker.chunk(path, loaded, sha256, key=content_key)
        if not nodes:
            raise SkipFile("no text to store after splitting")
        return nodes, loaded.parser, loaded.warnings
    except FileProblem as problem:
        return problem


def _init_worker(settings_json: str, ocr: bool) -> None:
    global _worker_chunker, _worker_options
    settings = Settings.model_validate_json(settings_json)
    tokenizer = load_chunk_tokenizer(settings)
    _worker_chunker = Chunker(
        settings.chunk_size, settings.chunk_overlap, tokenizer, settings.embed_headings
    )
    _worker_options = load_options(settings, ocr)


def _parse_in_worker(path: Path, content_key: str, sha256: str):
    assert _worker_chunker is not None
    return parse_file(path, _worker_chunker, content_key, sha256, _worker_options)


class ParsePool:
    """Yields (path, record, result) in input order; parses ahead in workers when configured."""

    def __init__(self, settings: Settings, chunker: Chunker, ocr: bool) -> None:
        self.settings = settings
        self.chunker = chunker
        self.ocr = ocr
        self.options = load_options(settings, ocr)
        self.workers = settings.ingest_workers
        self._executor: ProcessPoolExecutor | None = None

    def map(self, items: list) -> Iterator[tuple]:
        if self.workers <= 0 or len(items) < 2:
            for path, record in items:
                yield (
                    path,
                    record,
                    parse_file(path, self.chunker, record.content_key, record.sha256, self.options),
                )
            return
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a process holding torch
            initializer=_init_worker,
            initargs=(self.settings.model_dump_json(), self.ocr),
        )
        window: deque[tuple[Path, object, Future]] = deque()
        queue = iter(items)
        ahead = self.workers * 4  # bounded read-ahead keeps memory flat on big folders
        for path, record in queue:
            window.append(
                (
                    path,
                    record,
                    self._executor.submit(
                        _parse_in_worker, path, record.content_key, record.sha256
                    ),
                )
            )
            if len(window) >= ahead:
                done_path, done_record, future = window.popleft()
                yield done_path, done_record, future.result()
        while window:
            done_path, done_record, future = window.popleft()
            yield done_path, done_record, future.result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
