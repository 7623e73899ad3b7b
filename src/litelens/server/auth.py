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

    A revoked key stops working within `ttl_s` seconds on every replica.
    """

    def __init__(self, store: Store, ttl_s: float = 30.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[float, int | None]] = {}
        self._lock = threading.Lock()

    def project_for(self, key: str) -> int | None:
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        project_id = self._store.project_for_key_hash(digest)
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[digest] = (now + self._ttl, project_id)
        return project_id
