"""`ingest --ray` without a cluster: what actors send back, how the driver stores it, and the
one-line errors. The real two-node run is tests/integration/test_ray_ingest.py."""

import dataclasses
import hashlib
import shutil
import socket
import sys

import pytest

import ingest.cli
from ingest.cluster import (
    ClusterOptions,
    FileTask,
    file_result,
    join_failure,
    parse_and_embed,
    parse_on_node,
)
from ingest.errors import LoadError
from ingest.parallel import ParsePool
from rag import store
from rag.app import build_app
from rag.settings import load_settings
from tests.conftest import DATA, FakeEmbedding

FILES = ["notes.md", "sample.docx", "three-pages.pdf", "corrupt.pdf", "empty.txt"]


class CountingEmbedding(FakeEmbedding):
    """The fake embedding model, counting the texts it is asked to embed."""

    texts: int = 0

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self.texts += len(texts)
        return [self._vector(t) for t in texts]


class ActorLikePool:
    """What RayPool yields, made in this process: files parsed by the actors' code and embedded
    with another model, sent through the same JSON payload."""

    def __init__(self, settings, ocr: bool) -> None:
        self.parser = ParsePool(settings, ocr, parse=parse_on_node)
        self.embedder = FakeEmbedding(dims=64)  # not the driver's model: its vectors must stay

    def map(self, items):
        for path, record in items:
            task = (path, FileTask(record.content_key, record.sha256))
            [payload] = parse_and_embed(self.parser, self.embedder, 3, [task])
            yield path, record, file_result(payload)

    def close(self) -> None:
        self.parser.close()


@pytest.fixture
def library(tmp_path):
    folder = tmp_path / "library"
    folder.mkdir()
    for name in FILES:
        shutil.copy(DATA / name, folder / name)
    shutil.copy(DATA / "notes.md", folder / "copy-of-notes.md")
    return folder


def contents(app, name):
    """{chunk id: (text, metadata, vector)} of a collection, and its manifest without times."""
    got = app.store.collection(name).get(include=["documents", "metadatas", "embeddings"])
    chunks = {
        i: (text, meta, [round(float(x), 6) for x in vector])
        for i, text, meta, vector in zip(
            got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
        )
    }
    records = [{**dataclasses.asdict(r), "ingested_at": None} for r in app.ingestor().records(name)]
    return chunks, records


def test_chunks_embedded_by_the_pool_are_stored_as_sent_and_match_a_local_ingest(settings, library):
    driver_model = CountingEmbedding()
    app = build_app(settings, embedder=driver_model)
    local = app.ingestor().ingest([library], "local")
    texts_embedded_locally = driver_model.texts
    on_pool = dataclasses.replace(app.ingestor(), parse_pool=ActorLikePool)
    report = on_pool.ingest([library], "pooled")

    assert driver_model.texts == texts_embedded_locally > 0  # the driver embedded nothing more
    local_chunks, local_records = contents(app, "local")
    pooled_chunks, pooled_records = contents(app, "pooled")
    assert pooled_records == local_records
    assert pooled_chunks.keys() == local_chunks.keys()
    for chunk_id, (text, meta, vector) in pooled_chunks.items():
        assert (text, meta) == local_chunks[chunk_id][:2]
        assert len(vector) == 64  # the pool's vector (the driver's model makes 256)
    for field in ("files", "chunks", "moved", "skipped", "failed", "warnings"):
        assert getattr(report, field) == getattr(local, field)
    assert [f["file"].rsplit("/", 1)[1] for f in report.failed] == ["corrupt.pdf"]
    assert store.count_chunks(app.store.collection("pooled")) == local.chunks
    app.close()


def test_an_actor_that_sees_other_bytes_or_no_file_reports_it(tmp_path):
    path = tmp_path / "notes.md"
    shutil.copy(DATA / "notes.md", path)
    planned = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text("# Changed\n\nOther words.\n")
    changed = parse_on_node(path, None, "key", planned, {})
    assert isinstance(changed, LoadError) and "differ from those planned" in changed.reason
    missing = parse_on_node(tmp_path / "gone.md", None, "key", planned, {})
    assert isinstance(missing, LoadError)
    assert "not found on Ray node" in missing.reason and "shared storage" in missing.reason


def test_ray_not_installed_is_one_line_naming_the_extra(app, capsys, monkeypatch, library):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    for name in ("RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_DEDUP_LOGS"):
        monkeypatch.setenv(name, "0")
    code = ingest.cli.main([str(library), "--ray"], app=app)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "pip install .[cluster]" in err and err.startswith("error: ingest: ")
    assert not store.count_chunks(app.store.collection("default"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("form", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}"])
def test_an_unreachable_cluster_is_one_line_naming_it(app, capsys, library, form):
    address = form.format(port=free_port())
    code = ingest.cli.main([str(library), "--ray", address], app=app)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"cannot reach the Ray cluster at {address}" in err
    assert not store.count_chunks(app.store.collection("default"))


def test_ray_address_setting_is_used_when_ray_has_no_address(
    monkeypatch, capsys, library, fake_embedder
):
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAG_RAY_ADDRESS", address)
    app = build_app(load_settings(), embedder=fake_embedder)
    assert ingest.cli.main([str(library), "--ray"], app=app) == 2
    assert f"cannot reach the Ray cluster at {address}" in capsys.readouterr().err
    app.close()


def test_a_malformed_address_and_actors_without_ray_are_refused(app, capsys, library):
    assert ingest.cli.main([str(library), "--ray", "nowhere"], app=app) == 2
    assert "not a Ray address" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        ingest.cli.main([str(library), "--ray-actors", "2"], app=app)
    assert stop.value.code == 2
    assert "--ray-actors needs --ray" in capsys.readouterr().err


def test_ingest_help_explains_ray(capsys):
    with pytest.raises(SystemExit):
        ingest.cli.main(["add", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--ray [ADDRESS]" in out and "Ray cluster" in out and "shared storage" in out
    assert "RAG_RAY_ADDRESS" in out and "--ray-actors N" in out


def test_a_refused_join_says_whether_a_token_is_wanted(monkeypatch):
    options = ClusterOptions("10.0.0.9:6379")
    failed = ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379")
    refused = "gcs_client.cc:210: Failed to get cluster ID: Unauthenticated: InvalidAuthToken"
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert "set RAY_AUTH_MODE=token" in join_failure(options, failed, refused)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert "refused the token" in join_failure(options, failed, refused)
    other = join_failure(options, failed, "")
    assert other.startswith("cannot join the Ray cluster at 10.0.0.9:6379 (ConnectionError")
