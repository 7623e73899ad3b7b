"""litelens: every LiteLLM call recorded — latency, time to first token, tokens, cost, errors.

The core layer needs nothing but the standard library and LiteLLM:

    import litellm, litelens
    litelens.init()                      # or: litellm.callbacks = [litelens.Callback()]

On a LiteLLM proxy, one line in config.yaml:

    litellm_settings:
      callbacks: ["litelens.handler"]
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from litelens.config import Limits, Settings

if TYPE_CHECKING:
    from litelens.callback import Callback

__version__ = "0.1.0"

__all__ = ["Callback", "Limits", "Settings", "__version__", "flush", "init", "shutdown", "stats"]

_lock = threading.Lock()
_default: Callback | None = None


def init(**kwargs: Any) -> Callback:
    """Create the process's litelens callback and register it with LiteLLM; return it.

    Arguments are those of `litelens.Callback`. Calling `init()` again replaces the earlier callback
    (it is flushed and removed from LiteLLM's lists), so there is never more than one.
    """
    global _default
    import litellm

    from litelens.callback import Callback

    callback = Callback(**kwargs)
    with _lock:
        previous, _default = _default, callback
    if previous is not None:
        _unregister(previous)
        previous.shutdown(timeout=previous.settings.exit_flush_s)
    if callback not in litellm.callbacks:
        litellm.callbacks.append(callback)
    return callback


def _unregister(callback: Callback) -> None:
    from litelens.callback import unregister

    unregister(callback)


def _get_default() -> Callback:
    """The callback `init()` made, or one made now from the environment (the proxy's path).

    The proxy ends on a SIGTERM that skips `atexit`: the callback made here flushes on that signal.
    """
    global _default
    with _lock:
        if _default is None:
            from litelens.callback import Callback, flush_on_sigterm

            _default = Callback()
            flush_on_sigterm(_default)
            # A proxy restarted after the server was away resends what it spooled before any call.
            _default.start()
        return _default


def flush(timeout: float | None = None) -> bool:
    """Flush the callback made by `init()` (or `litelens.handler`); True when everything was delivered."""
    return True if _default is None else _default.flush(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Flush and stop the callback made by `init()`."""
    return True if _default is None else _default.shutdown(timeout)


def stats() -> dict[str, int]:
    """Counters (queued, sent, spooled, dropped, failed, ...) of the callback made by `init()`."""
    return {} if _default is None else _default.stats()


def __getattr__(name: str) -> Any:
    # `Callback` is imported lazily so that `import litelens` does not import LiteLLM (the collector
    # and the CLI do not need it). `handler` is what a LiteLLM proxy config names:
    # `callbacks: ["litelens.handler"]`, configured by the LITELENS_* environment variables.
    if name == "Callback":
        from litelens.callback import Callback

        return Callback
    if name == "handler":
        return _get_default()
    raise AttributeError(f"module 'litelens' has no attribute {name!r}")
