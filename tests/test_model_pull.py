"""`rag model pull` with the Hugging Face client faked: download, verify, print the setting."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import huggingface_hub
import pytest

import rag.cli
from rag import model_pull
from rag.models import ModelError


class FakeHub:
    """Serves one GGUF file the way huggingface_hub would, and records what was asked."""

    def __init__(self, source: Path, etag: str | None = None, fail: bool = False) -> None:
        self.source = source
        self.etag = etag or hashlib.sha256(source.read_bytes()).hexdigest()
        self.fail = fail
        self.offline_flags: list[str | None] = []

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(
            huggingface_hub, "hf_hub_url", lambda repo, name: f"hub://{repo}/{name}"
        )
        monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", self.metadata)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.download)

    def metadata(self, url):
        self.offline_flags.append(os.environ.get("HF_HUB_OFFLINE"))
        if self.fail:
            raise ConnectionError("no route to host")
        return huggingface_hub.HfFileMetadata(
            commit_hash="abc",
            etag=f'"{self.etag}"',
            location=url,
            size=self.source.stat().st_size,
            xet_file_data=None,
        )

    def download(self, repo, filename, local_dir):
        target = Path(local_dir) / filename
        shutil.copy(self.source, target)
        return str(target)


@pytest.fixture
def gguf(settings) -> Path:
    return Path(settings.llm_model)


def test_pull_downloads_verifies_and_prints_the_setting(settings, gguf, monkeypatch, capsys):
    hub = FakeHub(gguf)
    hub.install(monkeypatch)
    assert rag.cli.main(["model", "pull", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = settings.home / "models" / model_pull.DEFAULT_FILE
    assert data["file"] == str(expected) and expected.is_file()
    assert data["sha256"] == hub.etag and data["size"] == gguf.stat().st_size
    assert hub.offline_flags == ["0"]  # online only during the pull
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert rag.cli.main(["model", "pull"]) == 0
    assert f"export RAG_LLM_MODEL={expected}" in capsys.readouterr().out


def test_pull_offline_is_one_clear_line(settings, gguf, monkeypatch, capsys):
    FakeHub(gguf, fail=True).install(monkeypatch)
    assert rag.cli.main(["model", "pull"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "offline" in err and "RAG_LLM_MODEL" in err
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_pull_rejects_a_corrupted_download(settings, gguf, monkeypatch):
    FakeHub(gguf, etag="0" * 64).install(monkeypatch)
    with pytest.raises(ModelError, match="SHA-256"):
        model_pull.pull(settings)
