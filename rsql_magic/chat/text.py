"""The panel's one-line texts: the usage line from ``GET me`` and what a 429 means for the user."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rsql_magic.errors import ProxyError
from rsql_magic.render import window_until

__all__ = ["error_text", "rate_limit_text", "usage_line", "utc_time"]


def utc_time(stamp: Any) -> str:
    """``2026-11-22T09:40:59Z`` -> ``09:40:59 UTC`` (the date only when it is not today)."""
    text = str(stamp)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    except ValueError:
        return text
    today = dt.datetime.now(dt.timezone.utc).date()
    return t.strftime("%H:%M:%S UTC" if t.date() == today else "%Y-%m-%d %H:%M UTC")


def rate_limit_text(e: ProxyError) -> str:
    """One line for a 429: which limit, when it resets, when to retry."""
    parts = [f"Rate limited: {e.limit or 'a limit'} reached"]
    if e.reset:
        parts.append(
            f"resets {e.reset}"
            if str(e.reset).startswith("in ")
            else f"resets at {utc_time(e.reset)}"
        )
    if e.retry_after is not None:
        parts.append(f"retry in {e.retry_after:g} s")
    return "; ".join(parts) + ". The input stays open: ask again after the reset."


def usage_line(me: dict[str, Any], model: str | None = None) -> str:
    """``alice · model: m · requests left: 58 of 60/minute, 990 of 1000/day · budget left: $4.90
    of $5.00 today · window: exam (off) until 2026-11-23 18:00 UTC (19:00 CET)``: the panel's
    header. `model`: the one the panel asks (default: the user's default from ``GET me``)."""
    parts: list[str] = []
    who = me.get("user")
    if who:
        parts.append(str(who))
    model = model or (me.get("default_model") if isinstance(me.get("default_model"), str) else None)
    if model:
        parts.append(f"model: {model}")
    limits = [x for x in me.get("limits") or [] if isinstance(x, dict)]
    if limits:
        shown = []
        for lim in limits:
            s = f"{lim.get('remaining', '?')} of {lim.get('limit', '?')}"
            if lim.get("remaining") == 0 and lim.get("resets_at"):
                s += f" (resets {utc_time(lim['resets_at'])})"
            shown.append(s)
        parts.append("requests left: " + ", ".join(shown))
    elif "limits" in me:
        parts.append("requests: no limit")
    budget = me.get("budget")
    if isinstance(budget, dict) and budget.get("daily_usd") is not None:
        parts.append(
            f"budget left: ${float(budget.get('remaining_usd') or 0):.2f} of "
            f"${float(budget['daily_usd']):.2f} today"
        )
    elif "budget" in me:
        parts.append("budget: none set")
    window = me.get("window")
    if isinstance(window, dict):
        until = window_until(window)
        parts.append(
            f"window: {window.get('name', '?')} ({window.get('mode', '?')})"
            + (f" {until}" if until else "")
        )
    return " · ".join(parts)


def error_text(e: BaseException) -> str:
    """What the panel says about a failed call: a 429 as :func:`rate_limit_text`, a proxy
    error as it reads, anything else with its type."""
    if isinstance(e, ProxyError):
        return rate_limit_text(e) if e.status == 429 else f"rsql: {e}"
    return f"rsql: {type(e).__name__}: {e}"
