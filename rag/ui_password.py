"""The password of the browser page, for `rag ui` bound to an address other than loopback.

Only a salted scrypt hash is kept, in RAG_HOME/ui-password.json (readable by its owner only);
`rag ui --password-file FILE` sets or replaces it. There is no default password: without a
stored one, `rag ui` refuses to listen off loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rag.errors import UserError
from rag.private_file import write_private_json

FILE_NAME = "ui-password.json"
# Set for the page by `rag ui` when it must ask for the password, and where the hash is.
REQUIRE_PASSWORD_ENV = "RAG_UI_REQUIRE_PASSWORD"
PASSWORD_FILE_ENV = "RAG_UI_PASSWORD_FILE"
SET_HINT = "set one with `rag ui --password-file FILE`"
# scrypt cost: about 16 MiB and a few tens of milliseconds per try, on every machine we run on.
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
SALT_BYTES = 16
HASH_BYTES = 32


# Wrong passwords: from the FREE_TRIES-th failure on (counted over FORGET_S), an address waits
# FIRST_WAIT_S before its next try, doubling with each further failure up to MAX_WAIT_S. A person
# who mistypes is not slowed; guessing a password of 8 random letters takes years.
FREE_TRIES = 5
FIRST_WAIT_S = 30.0
MAX_WAIT_S = 900.0
FORGET_S = 3600.0


class UiPasswordError(UserError):
    """A password that cannot be read, set or checked."""


def password_path(home: Path) -> Path:
    return Path(home) / FILE_NAME


def read_password_file(path: Path) -> str:
    """The password on the first line of `path`, without surrounding spaces."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise UiPasswordError(f"the password file {path} cannot be read ({reason})") from exc
    password = first.strip()
    if not password:
        raise UiPasswordError(
            f"the password file {path} is empty; put the password on its first line"
        )
    return password


def hash_password(password: str, salt: bytes | None = None) -> dict:
    """A record of `password`'s scrypt hash with a random salt (the password itself is not kept)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, SCRYPT)
    return {"algorithm": "scrypt", **SCRYPT, "salt": salt.hex(), "hash": digest.hex()}


def store_password(home: Path, password: str) -> Path:
    """Replace the stored hash with one of `password`; the file is readable by its owner only."""
    path = password_path(home)
    write_private_json(path, hash_password(password))
    return path


def has_password(home: Path) -> bool:
    return password_path(home).is_file()


def verify_password(path: Path, attempt: str) -> bool:
    """True when `attempt` is the password whose hash is stored at `path`."""
    record = _load(path)
    try:
        cost = {key: int(record[key]) for key in SCRYPT}
        salt, wanted = bytes.fromhex(record["salt"]), bytes.fromhex(record["hash"])
        if record.get("algorithm") != "scrypt":
            raise ValueError(f"unknown algorithm {record.get('algorithm')!r}")
        got = _scrypt(attempt, salt, cost, len(wanted))
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(path, exc) from exc
    return hmac.compare_digest(got, wanted)


def _load(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UiPasswordError(f"no password is stored in {path}; {SET_HINT}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _damaged(path, exc) from exc
    if not isinstance(record, dict):
        raise _damaged(path, TypeError("not a JSON object"))
    return record


def _damaged(path: Path, exc: Exception) -> UiPasswordError:
    return UiPasswordError(f"the password file {path} cannot be used ({exc}); {SET_HINT}")


def _scrypt(password: str, salt: bytes, cost: dict, length: int = HASH_BYTES) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=cost["n"],
        r=cost["r"],
        p=cost["p"],
        dklen=length,
    )


class SignInThrottle:
    """Counts wrong passwords per address, shared by every session of the page's process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # address: (count, time of the last)

    def wait_s(self, address: str) -> int:
        """Whole seconds `address` must wait before its next try (0: it may try now)."""
        with self._lock:
            count, last = self._current(address)
        if count < FREE_TRIES:
            return 0
        wait = min(FIRST_WAIT_S * 2 ** (count - FREE_TRIES), MAX_WAIT_S)
        return max(0, math.ceil(last + wait - self._clock()))

    def failed(self, address: str) -> None:
        with self._lock:
            count, _ = self._current(address)
            self._failures[address] = (count + 1, self._clock())

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)

    def _current(self, address: str) -> tuple[int, float]:
        count, last = self._failures.get(address, (0, 0.0))
        if count and self._clock() - last > FORGET_S:
            self._failures.pop(address, None)
            return 0, 0.0
        return count, last


_THROTTLES: dict[str, SignInThrottle] = {}
_THROTTLES_LOCK = threading.Lock()


def throttle_for(path: Path) -> SignInThrottle:
    """The process-wide throttle of the password stored at `path`."""
    with _THROTTLES_LOCK:
        return _THROTTLES.setdefault(str(Path(path).resolve()), SignInThrottle())
