"""The proxy's answers as the kernel reads them: a chat completion, whole (JSON) or streamed
(server-sent events, tool calls arriving in fragments), into a :class:`ChatResult`, and an
error body with its rate-limit headers into a :class:`~rsql_magic.errors.ProxyError`.

Parsing is lenient where the proxy or a provider may be sloppy (a malformed error body is
still one error) and strict where it matters: a stream cut off before ``[DONE]`` is an error,
never a partial success.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProxyError

__all__ = ["ChatResult", "EngineHeaders", "error_from", "json_result", "stream_result"]


@dataclass
class ChatResult:
    """One chat completion's answer, with what the proxy (or the replay store) said about it."""

    text: str
    model: str
    usage: dict = field(default_factory=dict)
    cost_usd: float | None = None
    cache_hit: bool = False
    latency_s: float = 0.0
    upstream: str | None = None
    request_id: str | None = None
    replayed_at: str | None = None  # set when the answer came from the replay store (ISO, UTC)
    fallback: str | None = None  # the proxy's local fallback answered (X-RSQL-Fallback)
    # the course's rules the proxy applied (issue 75): "tutor" when its tutoring instruction
    # went first (X-RSQL-Mode), the students' group when the course log keeps this exchange
    # (X-RSQL-Course-Log); None outside a course
    mode: str | None = None
    course_log: str | None = None
    # the tools the answer calls for (asked with ``tools``): OpenAI's tool_calls, each with
    # an id and a function name; its arguments are the model's text, never run here
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def _float(v: Any) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def error_from(status: int, body: bytes | str, headers: Any) -> ProxyError:
    """Build a ProxyError from an OpenAI-format error body and the rate-limit headers."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    err: dict[str, Any] = {}
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict):
            e = parsed.get("error", parsed)
            err = e if isinstance(e, dict) else {"message": str(e)}
    except ValueError:
        body_text = text.strip()
        if body_text.startswith("<"):  # an HTML page: not the proxy speaking (wrong URL?)
            err = {
                "message": f"HTTP {status} with an HTML page, not the proxy's JSON "
                "(is the URL the proxy's root, e.g. .../rsql/?)"
            }
        else:
            err = {"message": body_text[:500] or f"HTTP {status}"}
    get = headers.get if headers is not None else (lambda _k, _d=None: None)
    retry_after = _float(get("Retry-After"))
    limit = err.get("limit") or None
    if limit is None and status == 429:
        limit = get("RateLimit-Policy") or None
    reset = err.get("reset")
    if reset is None and status == 429 and retry_after is not None:
        reset = f"in {retry_after:g}s"
    return ProxyError(
        status,
        str(err.get("message") or f"HTTP {status}"),
        limit=str(limit) if limit is not None else None,
        retry_after=retry_after,
        reset=str(reset) if reset is not None else None,
        **_policy_fields(err),
    )


def _policy_fields(err: dict[str, Any]) -> dict[str, Any]:
    """A 403's code, policy window and allowed models, as bounded plain values (shown, never run)."""
    window, names = err.get("window"), err.get("allowed_models")
    return {
        "code": err.get("code") if isinstance(err.get("code"), str) else None,
        "window": {
            str(k)[:40]: v if v is None or isinstance(v, (int, float)) else str(v)[:600]
            for k, v in list(window.items())[:20]
        }
        if isinstance(window, dict)
        else None,
        "allowed_models": [str(v)[:200] for v in names[:200]] if isinstance(names, list) else None,
    }


class EngineHeaders(dict):
    """The in-process engine's headers, looked up without regard to case as HTTP's are."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__((k.lower(), v) for k, v in headers.items())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


# -- a streamed answer -----------------------------------------------------------------------


def stream_result(resp: Any, on_delta: Callable[[str], None] | None, t0: float) -> ChatResult:
    """A streamed chat completion (the open ``text/event-stream`` response `resp`), read to its
    end; `on_delta` gets each text piece as it arrives, `t0` is when the request was sent."""
    text, model_out, usage, extra, calls = _read_stream(resp, on_delta)
    return _result(text, model_out, usage, extra, resp.headers, t0, calls)


def _sse_events(resp: Any) -> Iterator[str]:
    """``data:`` payloads of an SSE stream (multi-line events joined)."""
    buf: list[str] = []
    for raw in resp:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if buf:
                yield "\n".join(buf)
                buf = []
            continue
        if line.startswith("data:"):
            buf.append(line[5:].lstrip(" "))
    if buf:
        yield "\n".join(buf)


def _read_stream(
    resp: Any, on_delta: Callable[[str], None] | None
) -> tuple[str, str, dict, dict, list[dict[str, Any]]]:
    """The text, model, usage, ``rsql`` object and tool calls of a chat stream."""
    parts: list[str] = []
    calls: dict[int, dict[str, Any]] = {}  # tool_calls[].index -> the call so far
    model_out = ""
    usage: dict = {}
    extra: dict = {}
    done = False
    try:
        for payload in _sse_events(resp):
            if payload.strip() == "[DONE]":
                done = True
                break
            try:
                obj = json.loads(payload)
            except ValueError:
                continue
            if "error" in obj:  # an error after the stream started (e.g. upstream died)
                err = obj["error"] if isinstance(obj["error"], dict) else {"message": obj["error"]}
                raise ProxyError(
                    int(err.get("status") or 502),
                    str(err.get("message") or "stream failed"),
                    limit=err.get("limit"),
                    reset=err.get("reset"),
                    **_policy_fields(err),
                )
            model_out = obj.get("model") or model_out
            if obj.get("usage"):
                usage = obj["usage"]
            if isinstance(obj.get("rsql"), dict):
                extra.update(obj["rsql"])
            for ch in obj.get("choices") or []:
                delta = ch.get("delta") or {}
                piece = delta.get("content")
                if piece:
                    parts.append(piece)
                    if on_delta:
                        on_delta(piece)
                for fragment in delta.get("tool_calls") or []:  # put together by index
                    _add_fragment(calls, fragment)
    except (OSError, ConnectionError, http.client.HTTPException) as e:
        raise ProxyError(502, f"the stream broke off: {e}") from None
    if not done:  # an incomplete answer (a call's arguments half there?) is not passed off
        if not parts and not calls:
            raise ProxyError(502, "the stream ended without an answer")
        raise ProxyError(502, "the stream broke off before the answer was complete")
    whole = _tool_calls([calls[i] for i in sorted(calls)])  # checked as a JSON answer's
    return "".join(parts), model_out, usage, extra, whole


def _add_fragment(calls: dict[int, dict[str, Any]], fragment: Any) -> None:
    """A streamed ``delta.tool_calls[]`` entry onto the call at its ``index`` (id and name
    first, then the arguments' pieces, concatenated); without one, a whole call of its own."""
    if not isinstance(fragment, dict):
        return
    index = fragment["index"] if isinstance(fragment.get("index"), int) else len(calls)
    call = calls.setdefault(index, {"id": "", "function": {"name": "", "arguments": ""}})
    if isinstance(fragment.get("id"), str) and fragment["id"]:
        call["id"] = fragment["id"]
    fn, whole = fragment.get("function"), call["function"]
    if isinstance(fn, dict):
        for part in ("name", "arguments"):
            piece = fn.get(part)
            # a server that sends the arguments parsed, whole: as their JSON text
            whole[part] += json.dumps(piece) if isinstance(piece, dict) else str(piece or "")


# -- a whole (JSON) answer -------------------------------------------------------------------


def json_result(
    status: int,
    raw: bytes,
    headers: Any,
    model: str | None,
    on_delta: Callable[[str], None] | None,
    t0: float,
) -> ChatResult:
    """A JSON chat completion answered with ``status`` and ``headers``."""
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ProxyError(status, f"proxy answered with non-JSON: {e}") from None
    if isinstance(data, dict) and "error" in data:
        raise error_from(status if status >= 400 else 502, json.dumps(data), headers)
    text = _message_text(data)
    if on_delta and text:
        on_delta(text)
    return _result(
        text,
        data.get("model") or model or "",
        data.get("usage") or {},
        data.get("rsql") or {},
        headers,
        t0,
        _tool_calls((data["choices"][0].get("message") or {}).get("tool_calls")),
    )


def _tool_calls(calls: Any) -> list[dict[str, Any]]:
    """The well-formed tool calls of an answer (an id, a function name, its arguments as text);
    any other entry is left out."""
    out: list[dict[str, Any]] = []
    for call in calls if isinstance(calls, list) else []:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"]:
            args = fn.get("arguments")
            out.append(
                {
                    "id": str(call.get("id") or f"call_{len(out)}"),
                    "type": "function",
                    "function": {
                        "name": fn["name"],
                        "arguments": args if isinstance(args, str) else json.dumps(args or {}),
                    },
                }
            )
    return out


def _result(
    text: str, model_out: str, usage: Any, extra: dict, headers: Any, t0: float, calls: list[Any]
) -> ChatResult:
    """The answer with what the proxy said about it: its ``X-RSQL-*`` headers, else (a
    stream's end, where headers are long sent) the ``rsql`` object or the usage chunk."""
    h = headers
    cost = _float(h.get("X-RSQL-Cost-USD"))
    if cost is None:
        cost = _float(extra.get("cost_usd"))
    if cost is None and isinstance(usage, dict):
        cost = _float(usage.get("cost_usd"))
    cache = (h.get("X-RSQL-Cache") or str(extra.get("cache") or "")).lower() == "hit"
    return ChatResult(
        text=text,
        model=model_out or "",
        usage=dict(usage or {}),
        cost_usd=cost,
        cache_hit=cache,
        latency_s=time.monotonic() - t0,
        upstream=h.get("X-RSQL-Upstream") or extra.get("upstream"),
        request_id=h.get("X-Request-Id") or extra.get("request_id"),
        fallback=h.get("X-RSQL-Fallback") or extra.get("fallback") or None,
        tool_calls=calls,
        mode=_word(h.get("X-RSQL-Mode") or extra.get("mode")),
        course_log=_word(h.get("X-RSQL-Course-Log") or extra.get("course_log")),
    )


_WORD = re.compile(r"[A-Za-z0-9_.:@+-]{1,64}")


def _word(value: Any) -> str | None:
    """A header's one word (a mode, a group's name), or None: it is shown, so nothing else."""
    text = str(value).strip() if isinstance(value, str) else ""
    return text if _WORD.fullmatch(text) else None


def _message_text(data: dict) -> str:
    try:
        content = data["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ProxyError(502, "the proxy's answer has no choices[0].message") from None
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""
