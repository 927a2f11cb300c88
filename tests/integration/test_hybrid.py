"""Hybrid retrieval with the real embedding model: exact identifiers that dense search misses."""

import pytest

from rag.app import build_app
from rag.models import load_embedder
from tests.conftest import FakeLLM

pytestmark = pytest.mark.integration

TOPICS = [
    "The replication service reports an error when the disk is full; free some space and retry.",
    "Error codes from the storage layer mean the write was rejected; check the logs for details.",
    "When the service returns an error code, look it up in the troubleshooting table.",
    "A timeout error means the server did not answer in time; raise the timeout setting.",
    "Permission errors mean the account lacks rights; ask an administrator for access.",
    "Configuration errors are reported at start-up with the name of the faulty option.",
    "Network errors usually clear after the connection is restored; the client retries.",
    "An authentication error means the token expired; sign in again to get a new one.",
    "Quota errors appear when a team exceeds its storage allowance for the month.",
    "Checksum errors mean a file was damaged in transit; the upload is repeated.",
    "Disk errors on the backup volume mean a drive is failing; replace it before the next run.",
    "A parsing error means the input file is malformed; the message names the line to fix.",
    "Rate-limit errors mean too many requests arrived at once; the client waits and retries.",
    "Certificate errors mean the server's certificate expired; renew it to restore access.",
]
TARGET = (
    "Office plants are watered on Mondays by the facilities team. Code QX-7731 is printed on the "
    "watering schedule kept in the kitchen."
)


@pytest.fixture(scope="module")
def embedder():
    from rag.settings import load_settings

    return load_embedder(load_settings())


def test_hybrid_finds_an_exact_identifier_that_dense_ranks_below_5(settings, embedder, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for n, text in enumerate(TOPICS):
        (folder / f"errors-{n:02d}.txt").write_text(text)
    (folder / "plants.txt").write_text(TARGET)
    build_app(settings, embedder=embedder).ingestor().ingest([folder])
    question = "What does error code QX-7731 mean?"

    def rank(mode):
        engine = build_app(
            settings.model_copy(update={"retrieval_mode": mode}), embedder=embedder, llm=FakeLLM()
        ).engine
        files = [s.file_name for s in engine.retrieve(question, top_k=10).sources]
        return files.index("plants.txt") + 1 if "plants.txt" in files else None

    dense, hybrid = rank("dense"), rank("hybrid")
    assert dense is None or dense > 5, f"dense search already ranks it {dense}"
    assert hybrid is not None and hybrid <= 3, f"hybrid ranks it {hybrid}"
