"""One line per call for a terminal: used by `ConsoleSink` and by `litelens tail`.

It reads both shapes a call comes in: a full call record (`usage.input_tokens`, `error.type`) and a
row of the query API's `/api/calls` (`input_tokens`, `error_type`), so both commands print alike:

    06:01:02  ok    gpt-4o-mini        812 ms  ttft  120 ms    412 →   96 tok   $0.00012  chat
    06:01:03  ERR   gpt-4o            3012 ms                    0 →    0 tok          -  chat  RateLimitError: ...

Standard library only: this module is part of the zero-dependency core.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["format_call", "format_cost"]

_STATUS = {"ok": "ok", "error": "ERR", "cancelled": "CANC"}
_COLORS = {"ok": "\x1b[32m", "error": "\x1b[31m", "cancelled": "\x1b[33m"}
_RESET = "\x1b[0m"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _clock(start: float | None) -> str:
    """`HH:MM:SS` of a start time; dashes for one no clock can show (NaN, year 10^290 from a bad line)."""
    try:
        return time.strftime("%H:%M:%S", time.localtime(start)) if start is not None else "--:--:--"
    except (OverflowError, ValueError, OSError):
        return "--:--:--"


def format_cost(value: float) -> str:
    """Dollars with two significant digits however small (the terminal's and the dashboard's one rule):
    an embedding of a few tokens costs under a millionth of a dollar, and "$0.000000" reads as a call
    that cost nothing."""
    if value == 0 or not math.isfinite(value):
        return "$0" if value == 0 else f"${value}"
    if abs(value) < 0.01:
        return f"${value:.{max(5, 1 - math.floor(math.log10(abs(value))))}f}"
    return f"${value:,.2f}" if abs(value) >= 100 else f"${value:.4f}"


def format_call(call: Mapping[str, Any], color: bool = False, width: int = 60) -> str:
    """Time, status, model, latency, time to first token, tokens in → out, cost, call type, error."""
    raw_usage, raw_error = call.get("usage"), call.get("error")
    usage: Mapping[str, Any] = raw_usage if isinstance(raw_usage, Mapping) else {}
    error: Mapping[str, Any] = raw_error if isinstance(raw_error, Mapping) else {}
    status = str(call.get("status") or "?")
    start = _num(call.get("start_time"))
    clock = _clock(start)
    model = str(call.get("response_model") or call.get("request_model") or call.get("model") or "?")
    duration = _num(call.get("duration_ms"))
    ttft = _num(call.get("ttft_ms"))
    tokens_in = _num(usage.get("input_tokens", call.get("input_tokens"))) or 0
    tokens_out = _num(usage.get("output_tokens", call.get("output_tokens"))) or 0
    cost = _num(call.get("cost_usd"))
    label = _STATUS.get(status, status[:4])
    if color and status in _COLORS:
        label = f"{_COLORS[status]}{label:<4}{_RESET}"
    parts = [
        clock,
        f"{label:<4}",
        f"{model[:24]:<24}",
        f"{duration:>7.0f} ms" if duration is not None else f"{'-':>10}",
        f"ttft {ttft:>5.0f} ms" if ttft is not None else " " * 13,
        f"{tokens_in:>6.0f} → {tokens_out:>5.0f} tok",
        f"{format_cost(cost) if cost is not None else '-':>10}",
        str(call.get("call_type") or ""),
    ]
    error_type = error.get("type") or call.get("error_type")
    if status != "ok" and error_type:
        message = " ".join(str(error.get("message") or "").split())
        parts.append(f"{error_type}: {message}"[:width] if message else str(error_type))
    return "  ".join(parts).rstrip()
