"""API keys for `rag serve`: each opens named collections only, optionally read-only.

Keys live in RAG_HOME/api-keys.json as SHA-256 digests (a key is 32 random bytes, so a plain
digest cannot be reversed or guessed); the key itself is shown once, when it is created. A key
reads `rag_<id>_<secret>`: the id finds its entry, the secret is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.errors import UserError
from rag.private_file import write_private_json
from rag.settings import validate_collection_name

FILE_NAME = "api-keys.json"


class ApiKeyError(UserError):
    """A key command that cannot be done (unknown id, no collection, unreadable key file)."""


@dataclass
class ApiKey:
    id: str
    digest: str
    collections: list[str]
    read_only: bool = False
    created: float = field(default_factory=time.time)

    def allows(self, collection: str) -> bool:
        return collection in self.collections

    def public(self) -> dict:
        """What `rag keys list` shows: never the digest."""
        return {
            "id": self.id,
            "collections": self.collections,
            "read_only": self.read_only,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created)),
        }


class KeyStore:
    """The keys of one RAG_HOME."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / FILE_NAME

    def load(self) -> list[ApiKey]:
        if not self.path.is_file():
            return []
        try:
            items = json.loads(self.path.read_text(encoding="utf-8"))
            return [ApiKey(**item) for item in items]
        except (OSError, ValueError, TypeError) as exc:
            raise ApiKeyError(
                f"the key file {self.path} cannot be read ({exc}); "
                "move it away and create the keys again with `rag keys create`"
            ) from exc

    def save(self, keys: list[ApiKey]) -> None:
        write_private_json(self.path, [asdict(k) for k in keys])

    def create(self, collections: list[str], read_only: bool = False) -> tuple[ApiKey, str]:
        """A new key for `collections`: its entry, and the key text (shown once)."""
        try:
            names = [validate_collection_name(name) for name in dict.fromkeys(collections)]
        except ValueError as exc:
            raise ApiKeyError(str(exc)) from exc
        if not names:
            raise ApiKeyError("a key needs at least one collection: --collection NAME")
        keys = self.load()
        key_id = secrets.token_hex(4)
        while any(k.id == key_id for k in keys):
            key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        text = f"rag_{key_id}_{secret}"
        entry = ApiKey(key_id, digest(text), names, read_only)
        self.save([*keys, entry])
        return entry, text

    def revoke(self, key_id: str) -> ApiKey:
        keys = self.load()
        for key in keys:
            if key.id == key_id:
                self.save([k for k in keys if k.id != key_id])
                return key
        raise ApiKeyError(f"no key with id '{key_id}'; `rag keys list` shows the ids")

    def find(self, text: str, keys: list[ApiKey] | None = None) -> ApiKey | None:
        """The key entry for a presented key, or None (among `keys` when already loaded)."""
        parts = text.split("_", 2)
        if len(parts) != 3 or parts[0] != "rag":
            return None
        wanted = digest(text)
        for key in self.load() if keys is None else keys:
            if key.id == parts[1] and hmac.compare_digest(key.digest, wanted):
                return key
        return None


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
