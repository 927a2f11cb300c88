"""build_app(settings) -> App: the one place where the store, the keyword indexes, the models, the
engine and the ingestor are made. The `rag` and `ingest` commands, the page and the HTTP API each
build one App and hand it down; tests build one with fake models.

The ingestor is the writer side (package `ingest`, which builds on `rag`); it is made here on
first use, so that `rag` itself never needs `ingest` unless something is written.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rag.engine import Engine
from rag.keyword import KeywordIndexes
from rag.models import ChatModel, Models
from rag.settings import Settings
from rag.store import Store

if TYPE_CHECKING:
    from ingest.pipeline import Ingestor


@dataclass
class App:
    """Everything one configuration needs, made once and shared by every caller."""

    settings: Settings
    store: Store
    keywords: KeywordIndexes
    models: Models
    engine: Engine
    _ingestors: dict[bool, Ingestor] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ingestor(self, ocr: bool = False) -> Ingestor:
        """The writer for this App's store (one per OCR choice: it changes what is stored)."""
        from ingest.pipeline import Ingestor

        with self._lock:
            if ocr not in self._ingestors:
                self._ingestors[ocr] = Ingestor(
                    self.settings, self.store, self.keywords, self.models, ocr=ocr
                )
            return self._ingestors[ocr]

    def close(self) -> None:
        """Let go of the store's client (the next App on the same folder opens it afresh)."""
        self.store.forget(stop=False)


def build_app(settings: Settings, *, embedder=None, llm: ChatModel | None = None) -> App:
    """Wire one App; `embedder` and `llm` replace the configured models (tests pass fakes)."""
    store = Store(settings)
    keywords = KeywordIndexes(settings)
    models = Models(settings, embedder=embedder, llm=llm)
    engine = Engine(settings, store, keywords, models)
    return App(settings, store, keywords, models, engine)
