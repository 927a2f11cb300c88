"""Where the page keeps uploaded files: one folder per content, so no upload overwrites another.

An upload is stored as RAG_HOME/uploads/<collection>/<first 12 hex of its SHA-256>/<name>.
The same bytes uploaded twice (by anyone, under any name) land in the same folder and are stored
once; different bytes under the same name (or names that sanitise to the same one) each get their
own folder, so the earlier file and its chunks stay.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DIGEST_CHARS = 12


@dataclass
class StoredUpload:
    """One uploaded file after saving: where it is, and whether it was new."""

    name: str  # as the browser sent it
    path: Path
    duplicate: bool  # the same bytes were already stored (path is the earlier copy)
    namesakes: list[Path] = field(default_factory=list)  # other uploads stored under this name

    @property
    def renamed(self) -> bool:
        return self.path.name != self.name

    def message(self, uploads_root: Path) -> str:
        """One line for the reader, naming the stored file."""
        where = self.path.relative_to(uploads_root).as_posix()
        if self.duplicate:
            same = "" if self.path.name == self.name else f" (as {self.path.name})"
            return f"{self.name} is already in the library{same}: uploads/{where}"
        text = f"{self.name} stored as uploads/{where}"
        if self.namesakes:
            count = len(self.namesakes)
            text += (
                f"; {count} earlier upload(s) with the same name but other contents "
                "are kept too, and all are searched"
            )
        return text


def store_upload(folder: Path, name: str, data: bytes) -> StoredUpload:
    """Save `data` under `folder`, content-addressed; never overwrite other contents."""
    digest = hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]
    home = folder / digest
    earlier = stored_files(home)
    if earlier:
        match = next((p for p in earlier if p.name == safe_name(name)), earlier[0])
        return StoredUpload(name, match, duplicate=True)
    home.mkdir(parents=True, exist_ok=True)
    target = home / safe_name(name)
    # Write beside the target, then rename: a reader never sees half a file.
    handle, temporary = tempfile.mkstemp(dir=home, prefix=".upload-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    namesakes = sorted(
        other / target.name
        for other in folder.iterdir()
        if other != home and (other / target.name).is_file()
    )
    return StoredUpload(name, target, duplicate=False, namesakes=namesakes)


def stored_files(home: Path) -> list[Path]:
    if not home.is_dir():
        return []
    return sorted(p for p in home.iterdir() if p.is_file() and not p.name.startswith(".upload-"))


def safe_name(name: str) -> str:
    """Keep an uploaded file's name but never let it leave its folder."""
    cleaned = re.sub(r"[^\w.\- ]+", "_", Path(name.replace("\\", "/")).name).strip(" .")
    return cleaned or "upload"


def upload_limit_mb(max_file_mb: float, server_limit_mb: int) -> int:
    """The per-file limit the uploader enforces: the product's, capped by what the server takes."""
    return max(1, min(math.ceil(max_file_mb), int(server_limit_mb)))
