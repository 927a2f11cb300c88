"""`rag model pull`: the one command that goes online, to fetch a Llama 3.1 GGUF into RAG_HOME.

Everything else in the product is offline by construction; this module switches the Hugging Face
client back online for the duration of one download, then verifies what it wrote.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rag.hashing import file_sha256
from rag.models import ModelError, check_gguf
from rag.settings import Settings

DEFAULT_REPO = "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF"
DEFAULT_FILE = "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"


@dataclass
class Pulled:
    path: Path
    size: int
    sha256: str

    def setting(self) -> str:
        return f"export RAG_LLM_MODEL={self.path}"


@contextmanager
def online() -> None:
    """Let the Hugging Face client use the network inside this block only."""
    import huggingface_hub.constants as constants

    saved_env, saved_flag = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "0"
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_flag
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def pull(settings: Settings, repo: str = DEFAULT_REPO, filename: str = DEFAULT_FILE) -> Pulled:
    """Download a GGUF into RAG_HOME/models, check its size, checksum and format."""
    import huggingface_hub

    folder = settings.home / "models"
    folder.mkdir(parents=True, exist_ok=True)
    with online():
        try:
            url = huggingface_hub.hf_hub_url(repo, filename)
            expected = huggingface_hub.get_hf_file_metadata(url)
            local = Path(huggingface_hub.hf_hub_download(repo, filename, local_dir=folder))
        except Exception as exc:
            raise ModelError(
                f"cannot download {repo}/{filename} ({type(exc).__name__}); this machine seems "
                "offline: download the file on a machine that is online, copy it here, and set "
                "RAG_LLM_MODEL to its path"
            ) from exc
    size = local.stat().st_size
    if expected.size is not None and size != expected.size:
        raise ModelError(
            f"{local} is {size} bytes, the hub says {expected.size}; run the pull again"
        )
    digest = file_sha256(local)
    etag = (expected.etag or "").strip('"').removeprefix("W/").strip('"')
    if len(etag) == 64 and etag != digest:  # LFS files carry their SHA-256 as the ETag
        raise ModelError(f"{local} has SHA-256 {digest}, the hub says {etag}; run the pull again")
    check_gguf(str(local))
    return Pulled(local, size, digest)
