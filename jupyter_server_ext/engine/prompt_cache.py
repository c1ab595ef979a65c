"""Which conversation a request continues, so that the key choice keeps it on the account whose
prompt cache holds its prefix (``upstreams.affinity``).

A conversation is what the client says it is, where it says: Claude Code's
``X-Claude-Code-Session-Id`` header (on every request of a session; its ``metadata.user_id``
names the session too, read before the proxy puts its own pseudonym there), a
``prompt_cache_key`` (Codex sends its thread's; the Responses and Chat Completions APIs take
it). Any other request long enough to be cached (the providers cache from 1,024 tokens) is known
by a fingerprint of its cacheable prefix: its tools, its system text or instructions, and its
turns up to its first user turn, which every later turn of the conversation sends again first.

What names a conversation is keyed by its user and model (an HMAC with the engine's secret), so
one user's requests can neither find nor move another's, and the digest holds no prompt text.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from .bodies import json_codec
from .bodies.request import Affinity, ChatRequest

SESSION_HEADER = "X-Claude-Code-Session-Id"
MIN_TOKENS = 1_024  # the shortest prompt Anthropic and OpenAI cache
_MAX_NAME = 256  # a client's name for its conversation, at most
# the most of a prefix that is hashed: a longer one is known by its start (a few ms at most)
_MAX_PREFIX_BYTES = 1 << 20
# how long a provider keeps a cache that asked for more than its default
HOUR, DAY = 3_600.0, 86_400.0


def _named(value: Any) -> str | None:
    """A client's name for its conversation, when it is one (printable, bounded)."""
    if isinstance(value, str) and 0 < len(value) <= _MAX_NAME and value.isprintable():
        return value
    return None


def client_name(payload: Mapping[str, Any], headers: Mapping[str, str] | None) -> str | None:
    """What the client calls the conversation: Claude Code's session, a ``prompt_cache_key``,
    an Anthropic ``metadata.user_id`` (Claude Code's carries its session); None: it says not."""
    session = _named(headers.get(SESSION_HEADER)) if headers is not None else None
    if session is not None:
        return "session:" + session
    key = _named(payload.get("prompt_cache_key"))
    if key is not None:
        return "key:" + key
    meta = payload.get("metadata")
    user = _named(meta.get("user_id")) if isinstance(meta, dict) else None
    return "meta:" + user if user is not None else None


def prefix_digest(payload: Mapping[str, Any]) -> str:
    """A digest of a request's cacheable prefix: tools, system text and instructions, and its
    turns up to and with its first user turn (in any API's shape)."""
    turns = payload.get("messages")
    if not isinstance(turns, list):
        given = payload.get("input")  # the Responses API's
        turns = given if isinstance(given, list) else [given]
    first: list[Any] = []
    for turn in turns:
        first.append(turn)
        if isinstance(turn, dict) and turn.get("role", "user") == "user":
            break
    head = [payload.get("tools"), payload.get("system"), payload.get("instructions"), first]
    try:
        raw = json_codec.dumps(head)
    except (TypeError, ValueError):  # an in-process caller's object: no fingerprint
        raw = b""
    return hashlib.sha256(raw[:_MAX_PREFIX_BYTES]).hexdigest()


def conversation(
    req: ChatRequest,
    headers: Mapping[str, str] | None,
    user: str,
    secret: bytes,
    seconds: float,
) -> Affinity | None:
    """The conversation `req` of `user` continues, kept for as long as its provider keeps its
    cache (`seconds` unless the request asks for longer); None: none worth keeping (too short
    to be cached and unnamed, or `seconds` 0, the preference off)."""
    if seconds <= 0:
        return None
    payload = req.payload
    name = client_name(payload, headers)
    if name is None:
        if req.prompt_tokens < MIN_TOKENS:
            return None
        name = "prefix:" + prefix_digest(payload)
    key = hmac.new(secret, f"{user}\0{req.model}\0{name}".encode(), hashlib.sha256).hexdigest()
    if req.cache_hour:
        seconds = max(seconds, HOUR)
    if payload.get("prompt_cache_retention") == "24h":
        seconds = max(seconds, DAY)
    return Affinity(key[:32], seconds)
