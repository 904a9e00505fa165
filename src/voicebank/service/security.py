"""API keys: created, listed and revoked with ``voicebank keys ...``, hashed at rest, checked in constant time.

A key reads ``vbk_<id>_<secret>``: ``id`` (8 hex digits) names the key in listings and logs; ``secret`` (32
random bytes, URL-safe base64) is shown once, at creation, and only its SHA-256 is kept.  A plain hash
suffices because the secret is random and long (no dictionary to try); the comparison uses
:func:`hmac.compare_digest` so that timing reveals nothing about the stored hash.

The keys live in one JSON file (default ``service-keys.json`` in the library directory, mode 0600), written
atomically.  A running server notices changes (a key created or revoked from the CLI) by the file's
modification time and size, checked at most every ``RELOAD_INTERVAL_S``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, cast

from ..errors import VoicebankError
from ..fileio import atomic_write

log = logging.getLogger(__name__)

Scope = Literal["read", "read-write"]
SCOPES: tuple[Scope, ...] = ("read", "read-write")
PREFIX = "vbk_"
RELOAD_INTERVAL_S = 0.5


class ApiKeyError(VoicebankError, ValueError):
    """A keys-file problem: unreadable file, unknown key id, bad scope."""


@dataclass(frozen=True)
class ApiKey:
    """One stored key (never the secret): ``id``, a label, its ``scope``, the SHA-256 of its secret."""

    id: str
    name: str
    scope: Scope
    sha256: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, object]:
        """What listings show: everything but the hash."""
        out = asdict(self)
        del out["sha256"]
        out["active"] = self.active
        return out


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def checked_key(item: dict[str, object]) -> ApiKey:
    """A stored key record as read (``ValueError``/``TypeError`` when it is not one)."""
    rec = ApiKey(**item)  # type: ignore[arg-type]
    if rec.scope not in SCOPES:
        raise ValueError(f"unknown scope {rec.scope!r}")
    return rec


def split_key(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed key, else ``None``."""
    if not token.startswith(PREFIX):
        return None
    rest = token[len(PREFIX):]
    key_id, sep, secret = rest.partition("_")
    if not sep or len(key_id) != 8 or not secret or len(secret) > 128:
        return None
    return key_id, secret


class KeyStore:
    """The keys file of one service.  Thread-safe; re-reads the file when another process changed it.

    Subclasses keep the keys elsewhere by overriding :meth:`_read_all`, :meth:`_stamp_now` and :meth:`_put`
    (:class:`~voicebank.service.keystores.CatalogueKeyStore`: a shared library's catalogue)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._keys: dict[str, ApiKey] = {}
        self._stamp: object = None
        self._checked = 0.0
        self._load()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def where(self) -> str:
        """Where the keys are kept, for messages."""
        return str(self.path)

    # --- storage (the keys file) -------------------------------------------------------------------------

    def _stamp_now(self) -> object:
        """A value that changes when the stored keys may have changed (the file's time and size)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _read_all(self) -> dict[str, ApiKey]:
        """Every stored key (:class:`ApiKeyError` when they cannot be read)."""
        keys: dict[str, ApiKey] = {}
        if self._stamp_now() is None:
            return keys
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            for item in raw.get("keys", []):
                keys[item["id"]] = checked_key(item)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ApiKeyError(f"{self.path}: unreadable API keys file ({e}); fix or remove it") from e
        return keys

    def _put(self, rec: ApiKey) -> None:
        """Store ``rec`` (new, or a revoked key's new record) with the keys read last."""
        keys = {**self._keys, rec.id: rec}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"format_version": 1, "keys": [asdict(k) for k in keys.values()]}, indent=2).encode()
        atomic_write(self.path, lambda f: f.write(data))
        os.chmod(self.path, 0o600)
        self._keys = keys

    # --- the keys in memory ------------------------------------------------------------------------------

    def _load(self) -> None:
        stamp = self._stamp_now()
        self._keys, self._stamp, self._checked = self._read_all(), stamp, time.monotonic()

    def _refresh(self) -> None:
        if time.monotonic() - self._checked < RELOAD_INTERVAL_S:
            return
        before = self._keys
        try:
            if self._stamp_now() != self._stamp:
                self._load()
                if self._keys != before:
                    log.info("API keys reloaded from %s (%d active)", self.where,
                             sum(k.active for k in self._keys.values()))
        except VoicebankError as e:  # keep serving with the keys we had rather than locking everyone out
            log.error("API keys not reloaded, the last ones read still hold: %s", e)
        self._checked = time.monotonic()

    def active(self) -> list[ApiKey]:
        """The keys not revoked."""
        with self._lock:
            self._refresh()
            return [k for k in self._keys.values() if k.active]

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self._lock:
            self._load()
            return sorted(self._keys.values(), key=lambda k: (k.created_at, k.id))

    @property
    def enabled(self) -> bool:
        """Whether any key was ever made (then every request but the health checks needs an active one).

        Revoked keys count: revoking the last key locks everyone out rather than opening the server."""
        with self._lock:
            self._refresh()
            return bool(self._keys)

    def create(self, name: str, scope: str = "read") -> tuple[ApiKey, str]:
        """A new key: ``(stored record, the full key to hand out once)``."""
        if scope not in SCOPES:
            raise ApiKeyError(f"unknown scope {scope!r}: choose one of {', '.join(SCOPES)}")
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        with self._lock:
            self._load()
            key_id = secrets.token_hex(4)
            while key_id in self._keys:
                key_id = secrets.token_hex(4)
            rec = ApiKey(key_id, name, cast(Scope, scope), _hash(secret), _now())
            self._put(rec)
            self._stamp, self._checked = self._stamp_now(), time.monotonic()
        return rec, f"{PREFIX}{key_id}_{secret}"

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke key ``key_id`` (kept in the file, marked revoked)."""
        with self._lock:
            self._load()
            rec = self._keys.get(key_id)
            if rec is None:
                raise ApiKeyError(f"no API key with id {key_id!r}; `voicebank keys list` shows them")
            if rec.active:
                rec = ApiKey(**{**asdict(rec), "revoked_at": _now()})
                self._put(rec)
                self._stamp, self._checked = self._stamp_now(), time.monotonic()
            return rec

    def verify(self, token: str) -> ApiKey | None:
        """The active key ``token`` is, else ``None`` (the hash comparison takes constant time)."""
        parts = split_key(token)
        with self._lock:
            self._refresh()
            rec = self._keys.get(parts[0]) if parts else None
        given = _hash(parts[1] if parts else token)
        stored = rec.sha256 if rec is not None else "0" * 64
        ok = hmac.compare_digest(given.encode(), stored.encode())
        return rec if ok and rec is not None and rec.active else None
