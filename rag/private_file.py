"""Small secrets files under RAG_HOME (API key digests, the page's password hash): written whole
or not at all, readable by their owner only."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_private_json(path: Path, data: object) -> None:
    """Replace `path` with `data` as JSON: written beside it, made owner-only, then renamed, so
    a reader never sees half a file and nobody else can read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
