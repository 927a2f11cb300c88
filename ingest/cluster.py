"""Parse, split and embed files on a Ray cluster (`ingest PATH --ray`): the only module importing ray.

This process (the driver) does everything a local ingest does — plans the run under the
collection's writer lock, skips unchanged files, writes the store and the manifest with its
journal — and hands only the heavy part to the cluster: a Ray Data actor pool in which every
actor loads the embedding model once and parses, splits and embeds the files it is sent. Each
file comes back as plain lists (chunk ids, texts, metadata, vectors) or as the same FileProblem
a local ingest records, and is stored by the driver like a locally parsed one.

Files reach the actors by path, not as bytes: loaders open files by path (zip-based formats,
PDFium), a file may be up to RAG_MAX_FILE_MB, and sending bytes would pass every file through the
driver's memory and the object store. A cluster of several machines therefore needs the folder on
storage every node mounts at the same path (a shared filesystem); an actor that cannot find a file,
or finds different bytes there, reports that file as failed instead of storing the wrong content.

Inside each actor, files are parsed in the same guarded worker process as a local ingest
(ingest.parallel), so a file over RAG_PARSE_MEMORY_MB or RAG_PARSE_TIMEOUT_S costs one report line,
not the actor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from ingest.errors import FileProblem, LoadError, SkipFile
from ingest.parallel import ParsePool, parse_file
from rag.errors import UserError
from rag.hashing import file_sha256
from rag.settings import Settings

INSTALL_HINT = "install it with `pip install .[cluster]`"
FILES_PER_BATCH = 2  # files one actor parses and embeds per call: small, so work spreads evenly
CONNECT_SECONDS = 5.0  # how long the address is tried before it is called unreachable
PROBLEMS = {"LoadError": LoadError, "SkipFile": SkipFile}


class ClusterError(UserError):
    """Ray is missing, the cluster cannot be reached, or the job on it stopped (one line)."""


@dataclass(frozen=True)
class ClusterOptions:
    """Where to run: `address` None starts a local cluster; `actors` None is one per CPU."""

    address: str | None = None
    actors: int | None = None
    notice: Callable[[str], None] | None = None  # told which cluster and nodes did the work

    def describe(self) -> str:
        return f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"

    def pool(self, settings: Settings, ocr: bool = False) -> RayPool:
        """A pool for Ingestor.parse_pool (called like ParsePool)."""
        return RayPool(settings, ocr, self)


def prepare_ray(local: bool):
    """Import ray with its usage statistics off (and a local cluster on loopback only);
    ClusterError when ray is not installed."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if local:  # a one-machine cluster has no reason to listen beyond this machine
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data comes with the extra; a bare ray lacks it)
    except ImportError as exc:
        raise ClusterError(
            f"--ray needs Ray with Ray Data, which is not installed; {INSTALL_HINT}"
        ) from exc
    return ray


def check_reachable(address: str) -> None:
    """ClusterError naming the address when nothing listens there (Ray itself would retry
    for a minute); `auto` is left to Ray, which fails at once when no cluster runs here."""
    if address == "auto":
        return
    where = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = where.hostname, where.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ClusterError(
            f"--ray {address}: not a Ray address; give 'auto', HOST:PORT or ray://HOST:PORT"
        )
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); "
            "start it with `ray start --head` or check the address"
        ) from exc


def first_line(exc: BaseException) -> str:
    """The first line of what went wrong, looking through Ray's wrappers to the cause."""
    cause = getattr(exc, "cause", None)
    while isinstance(cause, BaseException) and getattr(cause, "cause", None) is not cause:
        exc, cause = cause, getattr(cause, "cause", None)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@contextlib.contextmanager
def ray_output_to(file) -> Iterator[None]:
    """Send what is written to file descriptor 2 to `file` meanwhile (None: leave it): Ray's
    core prints every retry of a failing join there, once a second."""
    if file is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(file.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def join_failure(options: ClusterOptions, exc: BaseException, said: str) -> str:
    """One line: why ray.init failed, and what to do."""
    where = options.describe()
    if not options.address:
        return f"cannot start {where} ({first_line(exc)}); see Ray's messages above"
    if "InvalidAuthToken" in said or "Unauthenticated" in said:
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            return f"{where} uses token authentication; set RAY_AUTH_MODE=token (and its token)"
        return f"{where} refused the token; give its token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
    return f"cannot join {where} ({first_line(exc)}); check the address"


class FileTask(NamedTuple):
    """What ParsePool needs of a record."""

    content_key: str
    sha256: str


def parse_on_node(path: Path, chunker, content_key: str, sha256: str, options: dict):
    """parse_file, after checking that this node sees the very bytes the driver planned."""
    node = socket.gethostname()
    try:
        seen = file_sha256(path)
    except FileNotFoundError:
        return LoadError(
            f"not found on Ray node {node}; every node needs the folder at the same path "
            "(shared storage)"
        )
    except OSError as exc:
        return LoadError(f"cannot be read on Ray node {node} ({exc.strerror or exc})")
    if seen != sha256:
        return LoadError(
            f"its bytes on Ray node {node} differ from those planned (changed meanwhile, or "
            "another file at that path); ingest again"
        )
    return parse_file(path, chunker, content_key, sha256, options)


def file_payload(result, embeddings: list) -> str:
    """One file's outcome as JSON: the FileProblem, or its chunks as plain lists."""
    if isinstance(result, FileProblem):
        return json.dumps({"problem": type(result).__name__, "reason": result.reason})
    nodes, parser, warnings = result
    return json.dumps(
        {
            "parser": parser,
            "warnings": list(warnings),
            "ids": [node.node_id for node in nodes],
            "texts": [node.text for node in nodes],
            "metadata": [node.metadata for node in nodes],
            "hidden": list(nodes[0].excluded_embed_metadata_keys) if nodes else [],
            "embeddings": embeddings,
        },
        ensure_ascii=False,
    )


def file_result(payload: str):
    """The driver's side of file_payload: (nodes with their vectors, parser, warnings), or the
    FileProblem."""
    from llama_index.core.schema import TextNode

    data = json.loads(payload)
    if "problem" in data:
        return PROBLEMS.get(data["problem"], FileProblem)(data["reason"])
    hidden = data["hidden"]
    nodes = [
        TextNode(
            id_=node_id,
            text=text,
            metadata=metadata,
            embedding=vector,
            excluded_embed_metadata_keys=list(hidden),
            excluded_llm_metadata_keys=list(hidden),
        )
        for node_id, text, metadata, vector in zip(
            data["ids"], data["texts"], data["metadata"], data["embeddings"], strict=True
        )
    ]
    return nodes, data["parser"], data["warnings"]


def parse_and_embed(parser: ParsePool, embedder, step: int, tasks: list) -> list[str]:
    """Parse and split the files of `tasks` ((path, FileTask) pairs) in the guarded parser,
    embed all their chunks `step` at a time, and return one file_payload per file."""
    results = [result for _, _, result in parser.map(tasks)]
    nodes = [n for r in results if not isinstance(r, FileProblem) for n in r[0]]
    for start in range(0, len(nodes), step):
        embedder(nodes[start : start + step])  # sets each node's embedding
    return [
        file_payload(r, [] if isinstance(r, FileProblem) else [n.embedding for n in r[0]])
        for r in results
    ]


class FileEmbedder:
    """A Ray Data actor: loads the embedding model once (the chunker lives in its guarded
    parser process), then parses, splits and embeds the files of each batch it is sent."""

    def __init__(self, settings_json: str, ocr: bool) -> None:
        from rag.models import load_embedder

        settings = Settings.model_validate_json(settings_json)
        self.parser = ParsePool(settings, ocr, parse=parse_on_node)
        self.embedder = load_embedder(settings)
        self.step = settings.ingest_batch_chunks
        self.node = node_id()

    def __call__(self, batch: dict) -> dict:
        tasks = [
            (Path(str(path)), FileTask(str(key), str(sha)))
            for path, key, sha in zip(batch["path"], batch["key"], batch["sha256"], strict=True)
        ]
        payloads = parse_and_embed(self.parser, self.embedder, self.step, tasks)
        return {
            "index": list(batch["index"]),
            "payload": payloads,
            "node": [self.node] * len(payloads),
        }

    def __del__(self) -> None:
        parser = getattr(self, "parser", None)
        if parser is not None:
            parser.close()


def node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


class RayPool:
    """Yields (path, record, result) in input order like ParsePool, with each result's nodes
    already embedded. Connects to the cluster only when there is a file to send."""

    def __init__(self, settings: Settings, ocr: bool, options: ClusterOptions) -> None:
        self.settings = settings
        self.ocr = ocr
        self.options = options
        self.nodes: set[str] = set()  # cluster nodes whose actors did the work
        self._ray = None
        self._connected_here = False

    def map(self, items: list) -> Iterator[tuple]:
        items = list(items)
        if not items:
            return
        ray = self.connect()
        rows = [
            {"index": i, "path": str(path), "key": record.content_key, "sha256": record.sha256}
            for i, (path, record) in enumerate(items)
        ]
        actors = self.actor_count(len(items))
        self.tell(f"{len(items)} file(s) to {self.options.describe()} ({actors} actor(s))")
        with warnings.catch_warnings():
            # max_restarts has no named parameter yet in the pinned Ray (2.60)
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = ray.data.from_items(rows).map_batches(
                FileEmbedder,
                fn_constructor_args=(self.settings.model_dump_json(), self.ocr),
                batch_size=FILES_PER_BATCH,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=1,
                # An actor lost stops the job (the next run finishes what is left) rather than
                # being restarted for ever on a batch that kills it.
                max_restarts=0,
            )
        done: dict[int, object] = {}
        following = 0
        try:
            for row in dataset.iter_rows():
                self.nodes.add(str(row["node"]))
                done[int(row["index"])] = file_result(row["payload"])
                while following in done:
                    path, record = items[following]
                    yield path, record, done.pop(following)
                    following += 1
        except Exception as exc:
            if isinstance(exc, UserError):
                raise
            raise ClusterError(
                f"the job on {self.options.describe()} stopped ({first_line(exc)}); files "
                "stored so far are kept, run the command again to finish"
            ) from exc

    def connect(self):
        """Start a local cluster or join the one at the address; ClusterError when it fails."""
        address = self.options.address
        ray = prepare_ray(local=address is None)
        self._ray = ray
        if ray.is_initialized():
            return ray
        if address is not None:
            check_reachable(address)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the ingest command shows its own
        kwargs: dict = {"log_to_driver": False, "logging_level": logging.ERROR}
        if address is None:
            kwargs["include_dashboard"] = False
        with tempfile.TemporaryFile("w+") as said:
            try:
                with ray_output_to(said if address else None):
                    # "local": always a new cluster for this run, never one found here
                    ray.init(address=address or "local", **kwargs)
            except Exception as exc:
                said.seek(0)
                raise ClusterError(join_failure(self.options, exc, said.read())) from exc
        self._connected_here = True
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = int(ray.cluster_resources().get("CPU", 0))
        self.tell(f"joined {self.options.describe()}: {len(nodes)} node(s), {cpus} CPU(s)")
        return ray

    def actor_count(self, files: int) -> int:
        """One actor per CPU (each takes one), or as many as asked when the cluster has the
        CPUs for them, and never more than there are batches of files."""
        cpus = int(self._ray.cluster_resources().get("CPU", 0))
        if cpus < 1:
            raise ClusterError(
                f"{self.options.describe()} has no CPU for an actor; start a node with "
                "`ray start --num-cpus N`"
            )
        wanted = min(self.options.actors or cpus, cpus)
        if self.options.actors and self.options.actors > cpus:
            self.tell(f"--ray-actors {self.options.actors}: the cluster has {cpus} CPU(s)")
        return max(1, min(wanted, (files + FILES_PER_BATCH - 1) // FILES_PER_BATCH))

    def close(self) -> None:
        """Leave the cluster (a local one stops); its actors end with this job."""
        if self.nodes:
            self.tell(f"parsed and embedded on {len(self.nodes)} node(s) of the cluster")
        if self._connected_here and self._ray is not None:
            self._ray.shutdown()
            self._connected_here = False

    def tell(self, message: str) -> None:
        if self.options.notice is not None:
            self.options.notice(message)
