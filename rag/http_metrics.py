"""The HTTP API's Prometheus metrics: requests, latency, time to first token, queue depth,
answers in progress, and documents and chunks per collection (read from the manifests)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from rag.answer import Answer
from rag.app import App
from rag.errors import UserError


class Metrics:
    """The API's Prometheus metrics, in a registry of its own (one per API object)."""

    def __init__(self, app: App, gate) -> None:
        """`gate` is the API's http_answers.Admission: its count is the answers in progress."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "rag_request_seconds", "Time to the whole response", ["route"], registry=self.registry
        )
        self.first_token = Histogram(
            "rag_first_token_seconds",
            "Time from the request to the first piece of an answer",
            registry=self.registry,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80),
        )
        queue = Gauge("rag_queue_depth", "Answers waiting for the model", registry=self.registry)
        queue.set_function(lambda: app.engine.queue_length)
        inside = Gauge(
            "rag_answers_in_progress", "Answers admitted and not finished", registry=self.registry
        )
        inside.set_function(lambda: gate.inside)
        self.registry.register(LibraryCollector(app))

    def text(self) -> bytes:
        return generate_latest(self.registry)


class LibraryCollector:
    """Documents and chunks per collection, read when scraped (from the manifests)."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self):
        documents = GaugeMetricFamily("rag_documents", "Stored files", labels=["collection"])
        chunks = GaugeMetricFamily("rag_chunks", "Stored chunks", labels=["collection"])
        try:
            names = self.app.store.names()
        except UserError:
            names = []
        for name in names:
            stats = self.app.engine.stats(name)
            documents.add_metric([name], stats["files"])
            chunks.add_metric([name], stats["chunks"])
        yield documents
        yield chunks


def observe_first_token(metrics: Metrics, answer: Answer) -> None:
    if "first_token_s" in answer.timings:
        metrics.first_token.observe(answer.timings["first_token_s"])
