"""Placeholders mapped back to the caller's own values in an answer (JSON or a stream)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from ..bodies.streams import DONE, event_json, sse
from ..interface import Reply
from .redact import Redactor, restore_text


def restored(reply: Reply, redactor: Redactor | None, endpoint: str, client: str) -> Reply:
    """The answer to a request to `endpoint` from a `client` kind, with placeholders mapped back
    to this caller's values, where safe.

    Never for SQL clients: their answer is SQL that runs, and a value mapped into it would
    be data turned into code; never inside ```sql fences (``Restorer``). The cache holds
    the redacted answer, so one user's values never reach another through it."""
    if redactor is None or not redactor.counts:
        return reply
    reply.headers["X-RSQL-Redactions"] = ",".join(
        f"{k}={n}" for k, n in sorted(redactor.counts.items())
    )
    if client == "sql" or endpoint == "embeddings" or not redactor.placeholders:
        return reply
    values = {v: k for k, v in redactor.placeholders.items()}
    field_name = "text" if endpoint == "completions" else "content"
    if reply.events is None:
        obj = reply.answer  # as the engine read it; a cache hit's bytes are read here
        if obj is None:
            try:
                obj = json.loads(reply.body)
            except ValueError:
                return reply
        changed = False
        for choice in obj.get("choices") or [] if isinstance(obj, dict) else []:
            holder = choice if field_name == "text" else (choice or {}).get("message")
            if isinstance(holder, dict) and isinstance(holder.get(field_name), str):
                holder[field_name] = restore_text(holder[field_name], values)
                changed = True
        if changed:  # the answer restored in place: the bytes written again, and both agree
            reply.body = json.dumps(obj).encode()
            reply.answer = obj
        return reply
    reply.events = restore_events(reply.events, redactor, field_name)
    return reply


async def restore_events(
    events: AsyncIterator[bytes], redactor: Redactor, field_name: str
) -> AsyncGenerator[bytes, None]:
    """A stream with placeholders mapped back, per choice; a placeholder split across chunks is
    held back until it is complete (or the choice finishes)."""
    restorers: dict[Any, Any] = {}
    last: dict[str, Any] | None = None

    def leftovers() -> bytes:
        parts = []
        for idx, r in restorers.items():
            rest = r.flush()
            if rest and last is not None:
                delta = {"text": rest} if field_name == "text" else {"delta": {"content": rest}}
                parts.append(
                    sse({**last, "choices": [{"index": idx, **delta, "finish_reason": None}]})
                )
        return b"".join(parts)

    try:
        async for ev in events:
            obj = event_json(ev)
            choices = obj.get("choices") if obj is not None else None
            if obj is None or not isinstance(choices, list) or not choices:
                if ev.startswith(DONE[:12]):
                    ev = leftovers() + ev
                yield ev
                continue
            last = {k: v for k, v in obj.items() if k not in ("choices", "usage")}
            changed = False
            for choice in choices:
                if not isinstance(choice, dict):
                    continue
                holder = choice if field_name == "text" else choice.get("delta")
                if not isinstance(holder, dict):
                    continue
                r = restorers.get(choice.get("index", 0))
                if r is None:
                    r = restorers[choice.get("index", 0)] = redactor.restorer()
                text = holder.get(field_name)
                if isinstance(text, str):
                    holder[field_name] = r.feed(text)
                    changed = True
                if choice.get("finish_reason") is not None:
                    rest = r.flush()
                    if rest:
                        holder[field_name] = (holder.get(field_name) or "") + rest
                        changed = True
            yield sse(obj) if changed else ev
        tail = leftovers()
        if tail:
            yield tail
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
