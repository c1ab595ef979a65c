"""Which conversation a request continues, so that the key choice keeps it on the account whose
prompt cache holds its prefix (``upstreams.affinity``).

A conversation is what the client says it is, where it says: Claude Code's
``X-Claude-Code-Session-Id`` header (on every request of a session; its ``metadata.user_id``
names the session too, read before the proxy puts its own pseudonym there), a
``prompt_cache_key`` (Codex sends its thread's; the Responses and Chat Completions APIs take
it). Any other request long enough to be cached (the providers cache from 1,024 tokens) is known
by a fingerprint of its cacheable prefix: its tools, its system text or instructions, and its
turns up to its first user turn, which every later turn of the conversation sends again first.
A conversation also names its user's stable prefix (its tools and system text, the same in
each of a client's sessions), so a new session starts on the account whose cache holds that.

What names a conversation is keyed by its user and model (an HMAC with a secret every replica
shares through the state backend: ``StateBackend.secret``), so
one user's requests can neither find nor move another's, and the digest holds no prompt text.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from rsql_common.prompt_layout import CONTEXT_HEAD, QUESTION

from .bodies import json_codec
from .bodies.request import Affinity, ChatRequest
from .upstreams.specs import UpstreamSpec

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


def stable_prefix(payload: Mapping[str, Any]) -> bytes:
    """What every conversation of a client starts with: its tools, its system text and
    instructions, and the system or developer turns before the first other (as JSON)."""
    turns = payload.get("messages")
    if not isinstance(turns, list):
        given = payload.get("input")
        turns = given if isinstance(given, list) else []
    lead: list[Any] = []
    for turn in turns:
        if not (isinstance(turn, dict) and turn.get("role") in ("system", "developer")):
            break
        lead.append(turn)
    head = [payload.get("tools"), payload.get("system"), payload.get("instructions"), lead]
    try:
        return json_codec.dumps(head)[:_MAX_PREFIX_BYTES]
    except (TypeError, ValueError):
        return b""


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
    if req.cache_hour:
        seconds = max(seconds, HOUR)
    if payload.get("prompt_cache_retention") == "24h":
        seconds = max(seconds, DAY)
    stable = stable_prefix(payload)
    # shorter than the providers cache (at about four bytes a token): no home worth keeping
    shared = "stable:" + hashlib.sha256(stable).hexdigest() if len(stable) >= 4 * MIN_TOKENS else ""
    return Affinity(
        _keyed(secret, user, req.model, name),
        seconds,
        shared and _keyed(secret, user, req.model, shared),
    )


def _keyed(secret: bytes, user: str, model: str, name: str) -> str:
    """`name` as one key of `user`'s for `model`: a digest no other user's request can make."""
    return hmac.new(secret, f"{user}\0{model}\0{name}".encode(), hashlib.sha256).hexdigest()[:32]


# -- our own requests, cacheable on every provider ---------------------------------------------

# the kernel's clients (X-RSQL-Client): their prompts put what is stable first (instructions,
# then the schema or the frames' descriptions, then the question: rsql_magic.prompt)
OWN_CLIENTS = frozenset(("magic", "chat", "agent", "sql"))
_EPHEMERAL = {"type": "ephemeral"}


def for_upstream(req: ChatRequest, spec: UpstreamSpec) -> dict[str, Any]:
    """`req`'s payload as it goes to upstream `spec`: where the provider caches only what is
    marked (``caches_marked_only``: Anthropic), our own clients' stable prefix marked for its
    cache (our prompts carry no marks of their own, as other providers would refuse them); where
    the upstream takes ``prompt_cache_key`` (OpenAI's own API), the conversation's, where the
    client named none (it routes a prefix by it, so a user's turns meet their cache). Anything
    else goes as it is."""
    payload = req.payload
    takes_key = spec.prompt_cache_key
    if req.endpoint == "chat/completions" and spec.caches_marked_only:
        if req.mark_prefix and not _marked(payload):
            return _with_marks(payload)
        return payload
    if (
        takes_key
        and req.affinity is not None
        and req.endpoint in ("chat/completions", "responses")
        and "prompt_cache_key" not in payload
    ):
        return {**payload, "prompt_cache_key": req.affinity.key}
    return payload


def _marked(payload: Mapping[str, Any]) -> bool:
    """Whether a chat request marks anything for a cache itself (it then says where)."""
    messages = payload.get("messages")
    for holder in [
        *(payload.get("tools") or ()),
        *(messages if isinstance(messages, list) else ()),
    ]:
        if not isinstance(holder, dict):
            continue
        if "cache_control" in holder:
            return True
        content = holder.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and "cache_control" in p for p in content
        ):
            return True
    return False


def _with_marks(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy with the end of the system text marked, and the end of the first user message's
    stable part (all its parts but the last: the context before the question)."""
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return payload
    out = list(messages)
    systems = [i for i, m in enumerate(out) if isinstance(m, dict) and m.get("role") == "system"]
    if systems:
        i = systems[-1]
        out[i] = {**out[i], "content": _mark_last(out[i].get("content"))}
    user = next(
        (i for i, m in enumerate(out) if isinstance(m, dict) and m.get("role") == "user"), None
    )
    content = out[user].get("content") if user is not None else None
    if isinstance(content, str) and content.startswith(CONTEXT_HEAD) and QUESTION in content:
        # the kernel's context, then its question (rsql_common.prompt_layout): two parts, so
        # the next question of the session reads the context from the cache
        at = content.rindex(QUESTION) + 2
        content = [{"type": "text", "text": content[:at]}, {"type": "text", "text": content[at:]}]
    if user is not None and isinstance(content, list) and len(content) > 1:
        out[user] = {**out[user], "content": [*_mark_last(content[:-1]), content[-1]]}
    return {**payload, "messages": out}


def _mark_last(content: Any) -> Any:
    """`content` as parts, its last text part marked for the cache."""
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list) or not parts or not isinstance(parts[-1], dict):
        return content
    if parts[-1].get("type") != "text":
        return content
    return [*parts[:-1], {**parts[-1], "cache_control": dict(_EPHEMERAL)}]
