"""What every route needs: the caller's project (from its API key) and store calls off the event loop."""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from litelens.server import ingest
from litelens.server.auth import KeyCache
from litelens.server.store.base import InvalidCursor, StoreUnavailable

log = logging.getLogger("litelens.server")

# While the database is away every request fails the same way: a line now and then says so, rather than
# a traceback per request (hundreds a minute under steady ingest, for one known cause).
_UNAVAILABLE_LOG_EVERY_S = 30.0
_unavailable_said = [float("-inf")]


class BadCursor(ingest.IngestError):
    """A page cursor the store did not hand out (edited, or made for another sort): a 400 that says so."""


class Unavailable(Exception):
    """The store could not take the request now (database down, locked): the sender should retry."""


async def project_id(request: Request) -> int:
    """The project the request's key belongs to; 401 without a valid key (unless --no-auth)."""
    state = request.app.state
    if state.settings.no_auth:
        return int(state.default_project_id)
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(
            401, "missing API key: send Authorization: Bearer <key> (litelens keys create --project NAME)"
        )
    found = await lookup_key(state.keys, key.strip())
    if found is None:
        raise HTTPException(401, "unknown or revoked API key")
    return int(found)


Project = Annotated[int, Depends(project_id)]


async def lookup_key(keys: KeyCache, key: str) -> int | None:
    """The project of `key` (None: unknown); 503 while the database cannot be reached.

    The key lookup is the first store call of every request: while the database was away every ingest,
    API read and page was a 500 with a traceback, rather than the 503 senders retry. Only that is mapped
    here; any other failure stays unexpected, a 500 whose traceback is in the log.
    """
    try:
        return await run_in_threadpool(keys.project_for, key)
    except StoreUnavailable as exc:
        _say_unavailable(str(exc))
        # Without the driver's words, which name the database's host and port: whoever asks here has not
        # shown a valid key yet. The log has them.
        raise Unavailable("the database does not answer") from None


async def store_call(fn: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(fn, *args)
    except ingest.IngestError:
        raise  # the writer's 429: already the answer
    except InvalidCursor as exc:
        # A read's fault, not a batch's: "could not store the batch" misled whoever paged the API.
        raise BadCursor(400, str(exc)[:200]) from None
    except StoreUnavailable as exc:
        _say_unavailable(str(exc))
        raise Unavailable(str(exc)[:200]) from None
    except (ValueError, TypeError, OverflowError) as exc:
        # The store refusing a value is the data's fault: a 4xx, never a 500.
        raise ingest.IngestError(400, f"could not store the batch: {str(exc)[:200]}") from None
    except Exception as exc:
        log.exception("store failed")
        raise Unavailable(str(exc)[:200]) from None


def _say_unavailable(reason: str) -> None:
    now = time.monotonic()
    if now - _unavailable_said[0] >= _UNAVAILABLE_LOG_EVERY_S:
        _unavailable_said[0] = now
        log.warning("storage unavailable, answering 503 until it is back: %s", reason)
