"""Project API keys: made here, stored only as hashes, checked on every request."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from litelens.server.store.base import Store

KEY_PREFIX = "ll_"


def new_key() -> str:
    """A fresh key: `ll_` and 32 random bytes, URL-safe. Shown once; only its hash is stored."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a plain SHA-256 is enough (no slow KDF needed, unlike passwords).
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(store: Store, project: str) -> str:
    project_id = store.create_project(project)
    key = new_key()
    store.add_key(project_id, hash_key(key), key[:10])
    return key


class KeyCache:
    """Key hash -> project id for a short while, so a busy ingest does not query keys per request.

    A revoked key stops working within `ttl_s` seconds on every replica. Keys that exist and keys that do
    not are cached apart, each up to `max_entries`: when one table was shared, a flood of made-up keys
    emptied it every `max_entries` requests, so every real key went back to the database with them.
    """

    def __init__(self, store: Store, ttl_s: float = 30.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl = ttl_s
        self._max = max_entries
        self._known: dict[str, tuple[float, int | None]] = {}
        self._unknown: dict[str, tuple[float, int | None]] = {}
        self._lock = threading.Lock()

    def project_for(self, key: str) -> int | None:
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            hit = self._known.get(digest) or self._unknown.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        project_id = self._store.project_for_key_hash(digest)
        table = self._unknown if project_id is None else self._known
        with self._lock:
            if len(table) >= self._max and digest not in table:
                # The expired ones go; if none has, the whole table (a flood fills only its own).
                expired = [k for k, (until, _) in table.items() if until <= now]
                for k in expired or list(table):
                    del table[k]
            table[digest] = (now + self._ttl, project_id)
        return project_id
