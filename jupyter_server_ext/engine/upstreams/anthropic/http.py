"""Anthropic's HTTP envelope in OpenAI's terms: error bodies (``openai_error``, and
``error_object`` for a stream's error event) and rate-limit headers (``rate_headers``), what the
failover and the pool read. The package re-exports both; references: docs.anthropic.com/en/api/
errors and /en/api/rate-limits.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from ...bodies.reading import read_json, scrub

# -- errors --------------------------------------------------------------------------------

# Anthropic's error types (docs.anthropic.com/en/api/errors) -> (status, OpenAI type, code)
ERRORS: dict[str, tuple[int, str, str]] = {
    "invalid_request_error": (400, "invalid_request_error", "invalid_request"),
    "authentication_error": (401, "invalid_request_error", "invalid_api_key"),
    "billing_error": (402, "insufficient_quota", "insufficient_quota"),
    "permission_error": (403, "permission_error", "permission_denied"),
    "not_found_error": (404, "invalid_request_error", "not_found"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "rate_limit_error", "rate_limit_exceeded"),
    "api_error": (500, "server_error", "server_error"),
    "timeout_error": (504, "server_error", "timeout"),
    "overloaded_error": (529, "server_error", "overloaded"),
}
_TYPE_BY_STATUS = {status: kind for kind, (status, _, _) in ERRORS.items()}
# Anthropic's messages start with the field they are about ("max_tokens: Field required"); the
# OpenAI field it came from, where there is one (a message index shifts, so only "messages")
_PARAMS = {
    "model": "model",
    "max_tokens": "max_tokens",
    "messages": "messages",
    "system": "messages",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop_sequences": "stop",
    "tools": "tools",
    "tool_choice": "tool_choice",
    "metadata": "user",
}
_FIELD = re.compile(r"([a-z_]+)(?:\.[\w.]+)?: ")


def openai_error(status: int, body: bytes) -> bytes:
    """An Anthropic error answer body -> an OpenAI error body {"error": {"message", "type", "param", "code"}}."""
    obj = read_json(body)
    error = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind, message = str(error.get("type") or _status_type(status)), error["message"]
    else:
        kind, message = _status_type(status), _plain_message(status, body)
    return json.dumps({"error": error_object(kind, message, status)}).encode()


def _status_type(status: int) -> str:
    return _TYPE_BY_STATUS.get(status) or (
        "api_error" if status >= 500 else "invalid_request_error"
    )


def _plain_message(status: int, body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    if not text or text.startswith("<"):  # an HTML page from a proxy in front (Cloudflare's 413)
        return f"Anthropic answered HTTP {status} with no error message"
    return f"Anthropic answered HTTP {status}: {text[:200]}"


def error_object(kind: str, message: str, status: int = 500) -> dict[str, Any]:
    """OpenAI's error object for an Anthropic error of type `kind` (`status`: for a type not
    listed, whether it was the caller's fault or the provider's)."""
    _, openai_type, code = ERRORS.get(kind) or (
        status,
        "server_error" if status >= 500 else "invalid_request_error",
        kind,
    )
    field = _FIELD.match(message)
    if kind == "not_found_error" and field and field.group(1) == "model":
        code = "model_not_found"  # what OpenAI says of an unknown model; forwarding reads it
    param = _PARAMS.get(field.group(1)) if field and kind == "invalid_request_error" else None
    return {"message": scrub(message), "type": openai_type, "param": param, "code": code}


# -- rate limits ---------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([Zz])|([+-])(\d\d):?(\d\d))\Z"
)


def rate_headers(headers: Mapping[str, str], now: float) -> dict[str, str]:
    """Anthropic's anthropic-ratelimit-* and retry-after headers -> the OpenAI-style names the pool
    reads (x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests as a
    duration like "12.5s", the same for -tokens, retry-after in seconds). `now` is wall-clock epoch
    seconds (Anthropic's resets are RFC 3339 times).

    The pool knows one token count per request, so -tokens is the tightest of Anthropic's tokens
    family (its most restrictive limit in effect) and input-tokens; output tokens join only when
    they are used up, since then no request passes whatever its size."""
    h = {k.lower(): v for k, v in headers.items()}
    family = {
        name: _family(h, name, now)
        for name in ("requests", "tokens", "input-tokens", "output-tokens")
    }
    out: dict[str, str] = {}
    _put(out, "requests", family["requests"])
    tokens = [family["tokens"], family["input-tokens"]]
    if family["output-tokens"].get("remaining") == 0:
        tokens.append(family["output-tokens"])
    given = [f for f in tokens if f]
    if given:
        _put(out, "tokens", min(given, key=lambda f: f.get("remaining", math.inf)))
    wait = _retry_after(h.get("retry-after"), now)
    if wait is not None:
        out["retry-after"] = wait
    return out


def _family(h: dict[str, str], name: str, now: float) -> dict[str, Any]:
    """The parsable parts of one anthropic-ratelimit-<name>-* family."""
    out: dict[str, Any] = {}
    for part in ("limit", "remaining"):
        value = _int(h.get(f"anthropic-ratelimit-{name}-{part}"))
        if value is not None:
            out[part] = value
    at = _epoch(h.get(f"anthropic-ratelimit-{name}-reset"))
    if at is not None:
        out["reset"] = max(0.0, at - now)
    return out


def _put(out: dict[str, str], name: str, family: dict[str, Any]) -> None:
    for part in ("limit", "remaining"):
        if part in family:
            out[f"x-ratelimit-{part}-{name}"] = str(family[part])
    if "reset" in family:
        out[f"x-ratelimit-reset-{name}"] = _duration(family["reset"])


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"  # "12.5s", as window.parse_duration reads


def _int(text: str | None) -> int | None:
    try:
        return max(0, int(text.strip())) if text is not None else None
    except ValueError:
        return None


def _epoch(text: str | None) -> float | None:
    """An RFC 3339 time as epoch seconds (Python 3.10's fromisoformat reads no "Z")."""
    m = _RFC3339.match(text.strip()) if text else None
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    offset = (
        0
        if m.group(8)
        else (int(m.group(10)) * 60 + int(m.group(11))) * (1 if m.group(9) == "+" else -1)
    )
    try:
        at = datetime(
            year, month, day, hour, minute, second, tzinfo=timezone(timedelta(minutes=offset))
        )
    except ValueError:  # a 13th month, a 61st second
        return None
    return at.timestamp() + float(m.group(7) or 0)


def _retry_after(value: str | None, now: float) -> str | None:
    """Seconds to wait: Anthropic sends seconds; an HTTP-date is read too."""
    if not value:
        return None
    try:
        seconds = max(0.0, float(value))
    except ValueError:
        try:
            seconds = max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, IndexError):
            return None
    if not math.isfinite(seconds):
        return None
    return str(math.ceil(seconds))
