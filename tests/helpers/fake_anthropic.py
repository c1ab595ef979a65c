"""A loopback HTTP server that speaks Anthropic's Messages API and behaves like api.anthropic.com.

Tests cannot reach Anthropic, so this server plays it over real HTTP, following the published
reference (docs.anthropic.com: /en/api/messages, /en/docs/build-with-claude/streaming,
/en/api/errors, /en/api/rate-limits, prompt caching, tool use):

- ``POST /v1/messages`` needs ``x-api-key`` or the key as a bearer token (missing or unknown:
  401 authentication_error) and ``anthropic-version`` (missing or unknown: 400), and checks
  the body as the real API does
  (``validate``): model, max_tokens and messages required; unknown fields refused at every level
  ("Extra inputs are not permitted"), but for those a beta of the request's ``anthropic-beta``
  adds (``BETA_FIELDS``: Claude Code's context management and per-turn output); "system"
  turns in messages, at any position, of text only (the API takes them so since 2026; Claude
  Code sends its environment so); no empty or whitespace-only
  text blocks; temperature and top_p within 0..1; stop sequences with non-whitespace; tools with
  an object input_schema and unique names; a tool_choice naming a tool that exists; every
  tool_use answered by a tool_result in the next message and no tool_result without its tool_use;
  at most 4 cache_control breakpoints; ``service_tier``, ``speed`` (fast mode) and
  ``inference_geo`` (data residency) only with the values the API takes. An unknown model is a
  404 not_found_error. Since 2024-10-22 the reference no longer asks the first message to be the
  user's, so it need not be;
- the context window: a prompt (cache reads and writes included) past 200,000 tokens is a 400
  "prompt is too long: N tokens > 200000 maximum", as Anthropic answers one; with the
  ``context-1m-2025-08-07`` beta in ``anthropic-beta`` the window is 1,000,000 tokens (what
  such a request costs is Anthropic's long-context price: ``Received.billed_tokens`` and the
  usage say how many tokens, the proxy's price table what they cost);
- answers: a text quoting the last user message, or scripted ones (:meth:`FakeAnthropic.script`):
  a str is the text; a dict with ``content`` (blocks: text, tool_use, thinking; tool ids filled
  in) and an optional ``stop_reason`` is the Message's; a dict with ``__status__`` is sent as
  that error answer (``{key}`` in its message: the key the request came with); bytes are
  sent as they are, as the whole 200 answer (a provider that breaks its own API, for tests of
  what the proxy does with one). ``max_tokens`` and ``stop_sequences`` cut a text answer as
  the API does;
- the web search server tool (``web_search_20250305``): with it the answer searches first, one
  ``server_tool_use`` and ``web_search_tool_result`` pair per search (a scripted dict's
  ``"web_searches": n``, else one; at most the tool's ``max_uses``), counted in
  ``usage.server_tool_use.web_search_requests`` and billed by the call (a stream reports the
  count in its usage, without the blocks);
- documents the API fetches itself (a ``document`` block whose source is a ``url`` or a Files
  API ``file``): each is read from :attr:`FakeAnthropic.documents` (pages by URL or file id; an
  unknown one is a 400, as a failed download is) and billed ``PAGE_TOKENS`` input tokens a
  page; at most 100 pages of PDFs a request, 600 with the 1M-token context beta (its PDF
  support page), past which the request is a 400;
- the web fetch server tool (``web_fetch_...``): a scripted dict's ``"web_fetches": n`` fetches
  (at most ``max_uses``), each pulling :attr:`FakeAnthropic.fetch_tokens` of text into the
  prompt, cut at the tool's ``max_content_tokens``; each web search pulls
  :attr:`FakeAnthropic.search_result_tokens` in (both 0 by default); counted in
  ``usage.server_tool_use`` (``web_fetch_requests``) and billed as input;
- the code execution server tool (``code_execution_...``): a scripted dict's ``"code_runs": n``
  runs, each a ``server_tool_use`` block (``bash_code_execution``) and its result, in one
  container the Message names (``container``); the usage counts them nowhere, as the SDK's
  ``ServerToolUsage`` has no field for them (``Received.code_runs`` says how many ran: billed
  by the container's time);
- streaming with the reference's event sequence and ``event:`` lines: message_start, per block
  content_block_start (a ping after the first), its deltas (text word by word, a tool's input
  JSON in fragments after an empty one, thinking then its signature), content_block_stop; then
  message_delta (the stop reason, cumulative usage) and message_stop;
- prompt caching: tools, system and messages, in that order, are the prefix; a block with
  ``cache_control`` (or the top-level one, on the last block) writes the prefix up to it on first
  use (``cache_creation_input_tokens``) and the next request with the same prefix reads it
  (``cache_read_input_tokens``), for 5 minutes (an hour with ttl "1h"), refreshed on each read;
  a breakpoint finds an entry written at any of the ``LOOKBACK_BLOCKS`` blocks before it too
  (the API's lookback: a conversation that marks its last message reads the previous turn's);
  ``cache_min_tokens`` is the shortest prefix cached (the API's is 1024 or more; 0 here so tests
  stay small);
- rate limits per account (keys of one organization share them), as Anthropic's token buckets:
  requests, input tokens (cache reads do not count) and output tokens per window; a 429
  rate_limit_error with ``retry-after``; ``anthropic-ratelimit-*`` headers (resets as RFC 3339
  times, token counts rounded to the thousand as documented) on every answer of a limited key;
  with ``refuse_oversized``, a request past a whole input window gets that 429 at once, and
  ``rate_headers = False`` sends no such headers (Claude behind a gateway);
- faults per key (:meth:`FakeAnthropic.set_fault`): "overloaded" (529 overloaded_error),
  "api_error" (500), "status" (any status, with the error type Anthropic sends for it),
  "hang", "die_mid_stream" (the connection closes mid-stream) and "error_event" (an
  ``event: error`` overloaded_error mid-stream, as the API sends one after its 200);
- a ``request-id`` header on every answer and ``request_id`` in every error body;
- ``GET /v1/models`` (paged by ``limit``) with the same key and version checks: how the proxy
  probes a key; a key failing with 401 or 403 is refused there too.

It records every request (body, headers, key alias, time) in :attr:`FakeAnthropic.received`,
and what each is billed (:attr:`Received.billed_tokens`: the prompt, cache writes and reads
included, and every output token generated, whether or not the client stayed), as
``fake_provider`` does. It runs its own event loop in a thread; :attr:`FakeAnthropic.base_url`
is the server's root, as Anthropic's is (``https://api.anthropic.com``; paths start ``/v1/``).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from .loopback import LoopbackServer

VERSIONS = ("2023-06-01", "2023-01-01", "2026-10-21")  # the last: the SDKs' 2.x
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
MAX_BREAKPOINTS = 4
CACHE_TTL = {"5m": 300.0, "1h": 3600.0}
LOOKBACK_BLOCKS = 20  # how far before a breakpoint the API looks for a cached prefix
# the context window, and the beta that opens the long one (docs: context windows)
CONTEXT_WINDOW = 200_000
LONG_CONTEXT_BETA, LONG_CONTEXT_WINDOW = "context-1m-2025-08-07", 1_000_000
PAGE_TOKENS = 3_000  # a fetched PDF's page, its text and image, as input tokens
MAX_PDF_PAGES, WIDE_PDF_PAGES = 100, 600  # a request's PDF pages: its window under 1M, and 1M
CODE_TOOLS = ("bash_code_execution", "text_editor_code_execution")
# the values the API takes for the fields that choose how a request is served
SERVING_VALUES = {
    "service_tier": ("auto", "standard_only"),
    "speed": ("standard", "fast"),
    "inference_geo": ("global", "us"),
}
# the error type Anthropic sends with each status (docs.anthropic.com/en/api/errors)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


@dataclass
class KeyPolicy:
    """How the fake treats one API key."""

    alias: str
    account: str = ""  # keys of one organization share its limits
    limit: int = 0  # requests per `window`; 0 = unlimited
    input_token_limit: int = 0  # input tokens (cache writes count, reads do not) per `window`
    output_token_limit: int = 0
    window: float = 60.0


@dataclass
class Received:
    alias: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float
    status: int = 200
    path: str = "messages"
    billed_tokens: int = (
        0  # prompt (cache writes and reads too) + output generated, client there or not
    )
    cache_write: int = 0
    cache_read: int = 0
    input_tokens: int = 0  # the prompt's tokens neither written to nor read from the cache
    output_tokens: int = 0  # of the whole answer (a stream the client left bills less)
    tool_calls: int = 0  # web searches it ran, billed by the call
    fetched_pages: int = 0  # pages of documents it fetched by URL or file id
    web_fetches: int = 0
    code_runs: int = 0  # code its container ran (billed by the container's time)


@dataclass
class _Fault:
    kind: str
    status: int = 500
    count: int = -1  # -1 = forever


class _Invalid(Exception):
    """A body the real API refuses with 400; the message is the API's."""


class _Bucket:
    """Anthropic's token bucket: `capacity`, refilled evenly over `window` seconds."""

    def __init__(self, capacity: int, window: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / window
        self.level = float(capacity)
        self.at = now

    def wait(self, amount: int, now: float) -> float:
        """Seconds until `amount` fits (0: now)."""
        self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
        self.at = now
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)

    def take(self, amount: int) -> None:
        self.level -= amount

    def headers(self, name: str, now: float, round_tokens: bool) -> dict[str, str]:
        left = max(0, math.floor(self.level))
        if round_tokens and name != "requests":
            left = int(round(left, -3))  # "rounded to the nearest thousand"
        full = time.time() + (self.capacity - self.level) / self.rate + (self.at - now)
        return {
            f"anthropic-ratelimit-{name}-limit": str(self.capacity),
            f"anthropic-ratelimit-{name}-remaining": str(left),
            f"anthropic-ratelimit-{name}-reset": _rfc3339(full),
        }


class FakeAnthropic(LoopbackServer):
    """Anthropic's Messages API on 127.0.0.1, running in a background thread."""

    thread_name = "fake-anthropic"

    def __init__(
        self,
        keys: dict[str, KeyPolicy] | None = None,
        *,
        latency: float = 0.0,
        model_ids: tuple[str, ...] = ("claude-fake-small", "claude-fake-large"),
    ) -> None:
        self.keys: dict[str, KeyPolicy] = keys or {
            "test-anthropic-key-default": KeyPolicy("default")
        }
        self.latency = latency
        self.model_ids = model_ids
        self.received: list[Received] = []
        self.too_many = 0  # 429s sent
        self.word_delay = 0.002  # seconds between streamed pieces
        self.cache_min_tokens = 0
        self.round_token_headers = True
        # True: a request with more input tokens than a whole window of the account's is refused
        # with a 429 that names no number, as the API does, and told to wait a whole window
        self.refuse_oversized = False
        # False: no anthropic-ratelimit-* headers on any answer (Claude behind a gateway)
        self.rate_headers = True
        # documents it can fetch: pages by URL or file id
        self.documents: dict[str, int] = {}
        self.search_result_tokens = 0  # what each web search pulls into the prompt
        self.fetch_tokens = 0  # what each web fetch pulls into the prompt (its text)
        self._replies: collections.deque = collections.deque()
        self._faults: dict[str, _Fault] = {}
        self._buckets: dict[str, dict[str, _Bucket]] = {}  # account -> family -> bucket
        self._cache: dict[str, float] = {}  # prefix digest -> when it expires (monotonic)
        self._lock = threading.Lock()

    # -- control ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: str | dict[str, Any] | bytes) -> None:
        """Queue answers: a str is the text; a dict the Message's content (or an error answer);
        bytes the whole 200 answer's body, sent as they are."""
        with self._lock:
            self._replies.extend(replies)

    def set_fault(
        self, alias: str, kind: str | None, *, status: int = 500, count: int = -1
    ) -> None:
        """Make key `alias` fail: "overloaded", "api_error", "status" (`status`), "hang",
        "die_mid_stream", "error_event"; None clears it."""
        with self._lock:
            if kind is None:
                self._faults.pop(alias, None)
            else:
                status = {"overloaded": 529, "api_error": 500}.get(kind, status)
                self._faults[alias] = _Fault(
                    "status" if kind in ("overloaded", "api_error") else kind, status, count
                )

    def count_by_alias(self, status: int | None = 200) -> dict[str, int]:
        out: dict[str, int] = collections.Counter()
        for r in list(self.received):
            if status is None or r.status == status:
                out[r.alias] += 1
        return dict(out)

    def billed(self) -> int:
        """Tokens billed over all requests received."""
        return sum(r.billed_tokens for r in list(self.received))

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self._replies.clear()
            self._faults.clear()
            self._buckets.clear()
            self._cache.clear()
            self.too_many = 0
            self.refuse_oversized = False
            self.rate_headers = True
            self.documents.clear()
            self.search_result_tokens = self.fetch_tokens = 0

    # -- lifecycle (LoopbackServer: start, stop, a context manager) ------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)

    # -- handlers --------------------------------------------------------------------------

    def _authenticate(
        self, request: web.Request, rid: str
    ) -> tuple[KeyPolicy | None, web.Response | None]:
        # an API key in x-api-key, or as a bearer token (how the SDKs send it since 2.x)
        bearer = request.headers.get("Authorization", "")
        key = request.headers.get("x-api-key") or bearer.removeprefix("Bearer ").strip()
        if not key:
            return None, _error(401, "x-api-key header is required", rid)
        policy = self.keys.get(key)
        if policy is None:
            return None, _error(401, "invalid x-api-key", rid)
        version = request.headers.get("anthropic-version")
        if not version:
            return policy, _error(400, "anthropic-version: header is required", rid)
        if version not in VERSIONS:
            return policy, _error(400, f"anthropic-version: invalid version {version[:40]!r}", rid)
        return policy, None

    def _fault(self, alias: str) -> _Fault | None:
        with self._lock:
            fault = self._faults.get(alias)
            if fault is None or fault.count == 0:
                return None
            fault.count -= 1
            return fault

    async def _models(self, request: web.Request) -> web.Response:
        rid = _request_id()
        policy, err = self._authenticate(request, rid)
        if err is not None:
            return err
        fault = self._faults.get(policy.alias) if policy else None
        if fault and fault.kind == "status" and fault.status in (401, 403) and fault.count != 0:
            # revoked: refused everywhere
            return _error(fault.status, "this key may not be used", rid)
        try:
            limit = min(1000, max(1, int(request.query.get("limit", "20"))))
        except ValueError:
            return _error(400, "limit: Input should be a valid integer", rid)
        page = [
            {
                "type": "model",
                "id": m,
                "display_name": m.replace("-", " ").title(),
                "created_at": "2025-01-01T00:00:00Z",
            }
            for m in self.model_ids[:limit]
        ]
        body = {
            "data": page,
            "has_more": len(self.model_ids) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
        return web.json_response(body, headers={"request-id": rid})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        rid = _request_id()
        rec = Received("?", {}, dict(request.headers), time.time())
        self.received.append(rec)
        policy, err = self._authenticate(request, rid)
        if policy is not None:
            rec.alias = policy.alias
        if err is None:
            try:
                rec.body = await request.json()
            except ValueError:
                err = _error(400, "There was an error parsing the body as JSON", rid)
        betas = _betas(",".join(request.headers.getall("anthropic-beta", [])))
        if err is None and (why := validate(rec.body, betas)) is not None:
            err = _error(400, why, rid)
        if err is None and rec.body["model"] not in self.model_ids:
            err = _error(404, f"model: {rec.body['model']}", rid)
        if err is not None:
            rec.status = err.status
            return err
        assert policy is not None
        body = rec.body
        fault = self._fault(policy.alias)
        if fault and fault.kind == "status":
            rec.status = fault.status
            return _error(
                fault.status,
                "Overloaded" if fault.status == 529 else "upstream fault injected",
                rid,
            )
        if fault and fault.kind == "hang":
            rec.status = 0
            await asyncio.sleep(3600)

        now = time.monotonic()
        inp, write, read = self._prompt_usage(policy, body, now, commit=False)
        wide = LONG_CONTEXT_BETA in betas
        window = LONG_CONTEXT_WINDOW if wide else CONTEXT_WINDOW
        pages, unknown = self._fetched_pages(body)
        most = WIDE_PDF_PAGES if wide else MAX_PDF_PAGES
        if unknown is not None or pages > most:
            rec.status = 400
            why = (
                f"Unable to download the file at {unknown[:80]}"
                if unknown is not None
                else f"A maximum of {most} PDF pages may be provided."
            )
            return _error(400, why, rid)
        rec.fetched_pages = pages
        extra = pages * PAGE_TOKENS  # input beyond the request's own text: what was fetched
        if inp + extra + write + read > window:
            rec.status = 400
            return _error(
                400,
                f"prompt is too long: {inp + extra + write + read} tokens > {window} maximum",
                rid,
            )
        with self._lock:
            reply = self._replies[0] if self._replies else None
        if isinstance(reply, dict) and "__status__" in reply:
            with self._lock:
                self._replies.popleft()
            rec.status = int(reply["__status__"])
            answer = {
                "type": "error",
                **{k: v for k, v in reply.items() if k != "__status__"},
                "request_id": rid,
            }
            error = answer.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                # "{key}": the key this request came with, as a provider quoting it would
                sent = (
                    request.headers.get("x-api-key")
                    or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                )
                answer["error"] = {**error, "message": error["message"].replace("{key}", sent)}
            return web.json_response(answer, status=rec.status, headers={"request-id": rid})
        if isinstance(reply, bytes):  # whatever the test has a broken provider send
            with self._lock:
                self._replies.popleft()
            kind = "text/event-stream" if body.get("stream") else "application/json"
            return web.Response(body=reply, headers={"request-id": rid, "Content-Type": kind})
        blocks, reason, stop_seq = _answer(body, reply)
        searches = _searches(body, reply)
        rec.tool_calls = searches
        fetch = _server_tool(body, "web_fetch_")
        fetches = _uses(fetch, reply, "web_fetches", 1)
        runs = _uses(_server_tool(body, "code_execution_"), reply, "code_runs", 0)
        rec.web_fetches, rec.code_runs = fetches, runs
        # what the tools pulled into the prompt: billed as input
        fetched = min(self.fetch_tokens, (fetch or {}).get("max_content_tokens") or 10**9)
        extra += searches * self.search_result_tokens + fetches * fetched
        inp += extra
        out_tokens = _output_tokens(blocks)
        oversized = self.refuse_oversized and 0 < policy.input_token_limit < inp + write
        headers, wait = self._admit(policy, 0 if oversized else inp + write, now)
        if oversized:
            wait = policy.window
        if not self.rate_headers:
            headers = {}
        if wait:
            rec.status = 429
            self.too_many += 1
            return _error(
                429,
                "This request would exceed the rate limit for your organization. For details, "
                "refer to: https://docs.anthropic.com/en/api/rate-limits",
                rid,
                {"retry-after": str(math.ceil(wait)), **headers},
            )
        with self._lock:
            if self._replies and self._replies[0] is reply:
                self._replies.popleft()
            output = self._buckets[policy.account or policy.alias].get("output-tokens")
            if output is not None:
                output.take(out_tokens)
        # admitted: the cache is written
        inp, write, read = self._prompt_usage(policy, body, now, commit=True)
        inp += extra
        rec.cache_write, rec.cache_read = write, read
        rec.input_tokens, rec.output_tokens = inp, out_tokens
        prompt = inp + write + read
        if self.latency:
            await asyncio.sleep(self.latency)
        message = {
            "id": "msg_" + uuid.uuid4().hex[:24],
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": reason,
            "stop_sequence": stop_seq,
            "usage": _usage(inp, write, read, out_tokens, _ttl_of_last_breakpoint(body)),
        }
        if searches or fetches:  # the searches and fetches it ran, counted in the usage
            message["usage"]["server_tool_use"] = {
                "web_search_requests": searches,
                "web_fetch_requests": fetches,
            }
            if searches and not body.get("stream"):
                message["content"] = _search_blocks(searches) + message["content"]
        if runs:  # code it ran in a container of its own: blocks, never a count in the usage
            message["content"] = _code_blocks(runs) + message["content"]
            message["container"] = {
                "id": "container_" + uuid.uuid4().hex[:24],
                "expires_at": _rfc3339(time.time() + 3600),
            }
        if body.get("inference_geo"):  # where inference ran, as the API reports it
            message["usage"]["inference_geo"] = body["inference_geo"]
        headers["request-id"] = rid
        if not body.get("stream"):
            # generated whole, whether or not the client waits
            rec.billed_tokens = prompt + out_tokens
            return web.json_response(message, headers=headers)
        rec.billed_tokens = prompt
        return await self._stream(request, message, headers, fault, rec)

    async def _stream(
        self,
        request: web.Request,
        message: dict[str, Any],
        headers: dict[str, str],
        fault: _Fault | None,
        rec: Received,
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        events = _events(message)
        cut = (
            max(2, len(events) // 2)
            if fault and fault.kind in ("die_mid_stream", "error_event")
            else -1
        )
        for i, (name, data, tokens) in enumerate(events):
            if i == cut:
                if fault.kind == "die_mid_stream":  # type: ignore[union-attr]
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
                await resp.write(
                    _sse(
                        "error",
                        {
                            "type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded"},
                        },
                    )
                )
                await resp.write_eof()
                return resp
            await resp.write(_sse(name, data))
            rec.billed_tokens += tokens
            if tokens:
                await asyncio.sleep(self.word_delay)
        await resp.write_eof()
        return resp

    # -- usage and limits ------------------------------------------------------------------

    def _prompt_usage(
        self, policy: KeyPolicy, body: dict[str, Any], now: float, *, commit: bool
    ) -> tuple[int, int, int]:
        """(input, cache write, cache read) tokens of the prompt; `commit`: write and refresh the
        cache entries (a request refused by the rate limit leaves the cache as it was)."""
        segments = _segments(body)
        # the cache is the organization's (and the model's): a prefix digest per block
        digest = hashlib.sha256(f"{policy.account or policy.alias}\0{body['model']}".encode())
        keys, upto, total = [], [], 0
        for text, _ in segments:
            digest.update(b"\0" + text.encode())
            keys.append(digest.hexdigest())
            total += max(1, len(text) // 4)  # about four characters a token
            upto.append(total)
        points = [i for i, (_, cc) in enumerate(segments) if cc]
        read, hit = 0, -1
        for i in reversed(points):  # the longest prefix cached, at a breakpoint or before one
            found = next(
                (j for j in range(i, max(-1, i - LOOKBACK_BLOCKS - 1), -1)
                 if self._cache.get(keys[j], 0.0) > now),
                None,
            )  # fmt: skip
            if found is not None:
                read, hit = upto[found], found
                if commit:  # a read refreshes the entry it read
                    self._cache[keys[found]] = max(self._cache[keys[found]], now + 300.0)
                break
        write = 0
        for i in points:
            if i >= hit and upto[i] >= self.cache_min_tokens:
                if commit:  # a read refreshes its entry; a write makes one
                    self._cache[keys[i]] = now + CACHE_TTL.get(
                        segments[i][1].get("ttl", "5m"), 300.0
                    )  # type: ignore[union-attr]
                if i > hit:
                    write = upto[i] - read
        return total - read - write, write, read

    def _fetched_pages(self, body: dict[str, Any]) -> tuple[int, str | None]:
        """The pages of the documents `body` has fetched (by URL or file id), and the first one
        it cannot fetch (None: all found)."""
        pages = 0

        def walk(blocks: Any) -> str | None:
            nonlocal pages
            for block in blocks if isinstance(blocks, list) else ():
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "tool_result":
                    missing = walk(block.get("content"))
                    if missing is not None:
                        return missing
                source = block.get("source")
                if block.get("type") != "document" or not isinstance(source, dict):
                    continue
                where = source.get("url") if source.get("type") == "url" else source.get("file_id")
                if source.get("type") in ("url", "file"):
                    if where not in self.documents:
                        return str(where)
                    pages += self.documents[where]
            return None

        for m in body.get("messages") or ():
            missing = walk(m.get("content"))
            if missing is not None:
                return pages, missing
        return pages, None

    def _admit(
        self, policy: KeyPolicy, input_tokens: int, now: float
    ) -> tuple[dict[str, str], float]:
        """The account's rate-limit headers, and how long to wait (0: admitted, and counted)."""
        limits = {
            "requests": (policy.limit, 1),
            "input-tokens": (policy.input_token_limit, input_tokens),
            "output-tokens": (policy.output_token_limit, 1),
        }
        with self._lock:
            buckets = self._buckets.setdefault(policy.account or policy.alias, {})
            for name, (capacity, _) in limits.items():
                if capacity and name not in buckets:
                    buckets[name] = _Bucket(capacity, policy.window, now)
            wait = max([b.wait(limits[n][1], now) for n, b in buckets.items()], default=0.0)
            if not wait:
                for name, bucket in buckets.items():
                    if name != "output-tokens":  # output is counted as it is generated
                        bucket.take(limits[name][1])
            headers: dict[str, str] = {}
            for name, bucket in buckets.items():
                headers.update(bucket.headers(name, now, self.round_token_headers))
            tokens = [n for n in buckets if n != "requests"]
            if tokens:  # the tokens family states the most restrictive token limit in effect
                name = min(tokens, key=lambda n: buckets[n].level)
                for key, value in (
                    buckets[name].headers(name, now, self.round_token_headers).items()
                ):
                    headers[key.replace(f"-{name}-", "-tokens-")] = value
        return headers, wait


# -- the body, as the real API checks it ---------------------------------------------------

_TOP = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "cache_control",
        "output_config",
        "inference_geo",
        "speed",
    }
)
_TOOL = frozenset(
    {
        "name",
        "description",
        "input_schema",
        "cache_control",
        "type",
        "strict",
        "input_examples",
        "defer_loading",
        "allowed_callers",
        "eager_input_streaming",
    }
)
# the web search server tool's fields (``web_search_20250305``)
_WEB_SEARCH = frozenset(
    {
        "type",
        "name",
        "max_uses",
        "allowed_domains",
        "blocked_domains",
        "user_location",
        "cache_control",
    }
)
_BLOCK = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "document": {"type", "source", "cache_control", "citations", "context", "title"},
    "tool_use": {"type", "id", "name", "input", "cache_control", "caller"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
}
_ROLE_BLOCKS = {
    "user": ("text", "image", "document", "tool_result"),
    "assistant": ("text", "tool_use", "thinking", "redacted_thinking"),
    "system": ("text",),
}
_CHOICE = {
    "auto": {"type", "disable_parallel_tool_use"},
    "any": {"type", "disable_parallel_tool_use"},
    "tool": {"type", "name", "disable_parallel_tool_use"},
    "none": {"type"},
}


# fields a beta adds (Claude Code sends them with their anthropic-beta and, refused, sends the
# request again without): the body's, and each message's
BETA_FIELDS = {
    "context-management-2025-06-27": ("context_management", ""),
    "per-turn-control-2026-07-01": ("output_config", "messages"),
}


def validate(body: Any, betas: Iterable[str] = ()) -> str | None:
    """The message of the 400 the real API answers `body` with, or None for a body it takes;
    `betas`: the request's anthropic-beta flags (the fields of BETA_FIELDS)."""
    top, turn = set(_TOP), {"role", "content"}
    for beta in betas:
        name, where = BETA_FIELDS.get(beta, ("", ""))
        if name:
            (turn if where == "messages" else top).add(name)
    try:
        _check_body(body, frozenset(top), frozenset(turn))
    except _Invalid as exc:
        return str(exc)
    return None


def _check_body(
    body: Any, top: frozenset[str] = _TOP, turn: frozenset[str] = frozenset(("role", "content"))
) -> None:
    if not isinstance(body, dict):
        raise _Invalid("Input should be a valid dictionary")
    _no_extra(body, top, "")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise _Invalid(f"{name}: Field required")
    if not isinstance(body["model"], str):
        raise _Invalid("model: Input should be a valid string")
    if not _is_int(body["max_tokens"]) or body["max_tokens"] < 1:
        raise _Invalid("max_tokens: Input should be greater than or equal to 1")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise _Invalid(f"{name}: Input should be a valid number")
        if value is not None and not 0 <= value <= 1:
            raise _Invalid(
                f"{name}: Input should be {'less' if value > 1 else 'greater'} than or equal to "
                f"{1 if value > 1 else 0}"
            )
    for name, allowed in SERVING_VALUES.items():
        value = body.get(name)
        if value is not None and value not in allowed:
            raise _Invalid(f"{name}: Input should be " + " or ".join(repr(a) for a in allowed))
    _check_stop(body.get("stop_sequences"))
    _check_system(body.get("system"))
    if body.get("metadata") is not None:
        _no_extra(body["metadata"], {"user_id"}, "metadata.")
    names = _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"), names)
    _check_messages(body["messages"], turn)
    found = _breakpoints(body)
    if found > MAX_BREAKPOINTS:
        raise _Invalid(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}."
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_extra(obj: Any, allowed: set[str] | frozenset[str], where: str) -> None:
    if not isinstance(obj, dict):
        raise _Invalid(f"{where.rstrip('.') or 'body'}: Input should be a valid dictionary")
    for key in obj:
        if key not in allowed:
            raise _Invalid(f"{where}{key}: Extra inputs are not permitted")


def _check_stop(stop: Any) -> None:
    if stop is None:
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _Invalid("stop_sequences: Input should be a valid list")
    for seq in stop:
        if not seq:
            raise _Invalid("stop_sequences: each stop sequence must be non-empty")
        if not seq.strip():
            raise _Invalid("stop_sequences: each stop sequence must contain non-whitespace")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _Invalid("system: Input should be a valid string or a valid list")
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _Invalid(f"system.{j}.type: Input should be 'text'")
        _check_block(block, ("text",), f"system.{j}")


def _check_tools(tools: Any) -> list[str]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _Invalid("tools: Input should be a valid list")
    names: list[str] = []
    for i, tool in enumerate(tools):
        kind = str(tool.get("type", ""))
        server = next((k for k in _SERVER_TOOLS if kind.startswith(k + "_")), None)
        if server is not None:  # a server tool it runs
            _no_extra(tool, _SERVER_TOOLS[server], f"tools.{i}.")
            for cap in ("max_uses", "max_content_tokens"):
                uses = tool.get(cap)
                if uses is not None and (not isinstance(uses, int) or uses < 1):
                    raise _Invalid(f"tools.{i}.{cap}: Input should be greater than 0")
            names.append(str(tool.get("name", server)))
            continue
        _no_extra(tool, _TOOL, f"tools.{i}.")
        name = tool.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", name):
            raise _Invalid(
                f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            )
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _Invalid(f"tools.{i}.input_schema: Field required")
        if schema.get("type") != "object":
            raise _Invalid(f"tools.{i}.input_schema.type: Input should be 'object'")
        if name in names:
            raise _Invalid("tools: Tool names must be unique.")
        names.append(name)
    return names


_SERVER_TOOLS = {
    "web_search": _WEB_SEARCH,
    "web_fetch": frozenset(
        {
            "type",
            "name",
            "max_uses",
            "max_content_tokens",
            "allowed_domains",
            "blocked_domains",
            "citations",
            "cache_control",
        }
    ),
    "code_execution": frozenset({"type", "name", "cache_control"}),
}


def _check_tool_choice(choice: Any, tools: list[str]) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in _CHOICE:
        raise _Invalid(
            f"tool_choice: Input tag '{kind}' found using 'type' does not match any of the expected "
            "tags: 'auto', 'any', 'tool', 'none'"
        )
    _no_extra(choice, _CHOICE[kind], "tool_choice.")
    if kind == "tool" and choice.get("name") not in tools:
        raise _Invalid(f"tool_choice.name: Tool '{choice.get('name')}' not found in provided tools")


def _check_messages(messages: Any, fields: frozenset[str]) -> None:
    if not isinstance(messages, list) or not messages:
        raise _Invalid("messages: at least one message is required")
    pending: list[str] = []  # tool_use ids of the message before, each owed a tool_result
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(m, dict):
            raise _Invalid(f"{where}: Input should be a valid dictionary")
        role = m.get("role")
        if role not in _ROLE_BLOCKS:
            raise _Invalid(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
        _no_extra(m, fields, f"{where}.")
        if "content" not in m:
            raise _Invalid(f"{where}.content: Field required")
        blocks = _check_content(m["content"], role, where, i == len(messages) - 1)
        answered = []
        for j, block in enumerate(blocks):
            if block["type"] == "tool_result":
                if block["tool_use_id"] not in pending:
                    raise _Invalid(
                        f"{where}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message."
                    )
                answered.append(block["tool_use_id"])
        missing = [p for p in pending if p not in answered]
        if missing:
            raise _Invalid(
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )
        pending = [b["id"] for b in blocks if b["type"] == "tool_use"]


def _check_content(content: Any, role: str, where: str, last: bool) -> list[dict[str, Any]]:
    if isinstance(content, str):
        blocks = [{"type": "text", "text": content}] if content else []
    elif isinstance(content, list):
        for j, block in enumerate(content):
            _check_block(block, _ROLE_BLOCKS[role], f"{where}.content.{j}")
        blocks = content
    else:
        raise _Invalid(f"{where}.content: Input should be a valid string or a valid list")
    if not blocks and not (last and role == "assistant"):
        raise _Invalid(
            f"{where}: all messages must have non-empty content except for the optional final "
            "assistant message"
        )
    return blocks


def _check_block(block: Any, allowed: tuple[str, ...], where: str) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in allowed:
        raise _Invalid(
            f"{where}.type: Input tag '{kind}' found using 'type' does not match any of the expected "
            f"tags: {', '.join(repr(a) for a in allowed)}"
        )
    _no_extra(block, _BLOCK[kind], f"{where}.")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise _Invalid(f"{where}.text: Field required")
        field = where.split(".")[0]  # "messages" or "system"
        if not block["text"]:
            raise _Invalid(f"{field}: text content blocks must be non-empty")
        if not block["text"].strip():
            raise _Invalid(f"{field}: text content blocks must contain non-whitespace text")
    elif kind == "image":
        _check_image(block.get("source"), where)
    elif kind == "document":
        source = block.get("source")
        stype = source.get("type") if isinstance(source, dict) else None
        if stype not in ("base64", "text", "url", "file", "content"):
            raise _Invalid(
                f"{where}.source: Input tag '{stype}' found using 'type' does not match any of "
                "the expected tags: 'base64', 'text', 'content', 'url', 'file'"
            )
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not re.fullmatch(r"[a-zA-Z0-9_-]+", block["id"]):
            raise _Invalid(f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block.get("name"), str) or not block["name"]:
            raise _Invalid(f"{where}.name: Field required")
        if not isinstance(block.get("input"), dict):
            raise _Invalid(f"{where}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            raise _Invalid(f"{where}.tool_use_id: Field required")
        inner = block.get("content")
        if isinstance(inner, list):
            for j, part in enumerate(inner):
                _check_block(part, ("text", "image", "document"), f"{where}.content.{j}")
        elif inner is not None and not isinstance(inner, str):
            raise _Invalid(f"{where}.content: Input should be a valid string or a valid list")


def _check_image(source: Any, where: str) -> None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        if source.get("media_type") not in IMAGE_TYPES:
            raise _Invalid(
                f"{where}.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                "'image/gif' or 'image/webp'"
            )
        if not isinstance(source.get("data"), str):
            raise _Invalid(f"{where}.source.base64.data: Field required")
    elif kind == "url":
        if not isinstance(source.get("url"), str):
            raise _Invalid(f"{where}.source.url.url: Field required")
    else:
        raise _Invalid(
            f"{where}.source: Input tag '{kind}' found using 'type' does not match any of the expected "
            "tags: 'base64', 'url'"
        )


def _breakpoints(body: dict[str, Any]) -> int:
    return sum(1 for _, cc in _segments(body) if cc)


# -- the answer ----------------------------------------------------------------------------


def _segments(body: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """The prompt in cache order (tools, system, messages): (its text, its cache_control)."""

    def plain(block: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in block.items() if k != "cache_control"}, sort_keys=True)

    out: list[tuple[str, dict[str, Any] | None]] = [
        (plain(t), t.get("cache_control")) for t in body.get("tools") or ()
    ]
    system = body.get("system")
    if isinstance(system, str):
        out.append((system, None))
    else:
        out += [(plain(b), b.get("cache_control")) for b in system or ()]
    for m in body.get("messages") or ():
        content = m["content"]
        if isinstance(content, str):
            out.append((f"{m['role']}:{content}", None))
        else:
            out += [(f"{m['role']}:{plain(b)}", b.get("cache_control")) for b in content]
    if body.get("cache_control") and out and out[-1][1] is None:
        # top-level cache_control marks the last cacheable block
        out[-1] = (out[-1][0], body["cache_control"])
    return out


def _ttl_of_last_breakpoint(body: dict[str, Any]) -> str:
    marks = [cc for _, cc in _segments(body) if cc]
    return marks[-1].get("ttl", "5m") if marks else "5m"


def _last_user_text(body: dict[str, Any]) -> str:
    for m in reversed(body["messages"]):
        if m["role"] != "user":
            continue
        content = m["content"]
        if isinstance(content, str):
            return content
        texts = [
            b.get("text", "") if b["type"] == "text" else str(b.get("content", ""))
            for b in content
            if b["type"] in ("text", "tool_result")
        ]
        return " ".join(texts)
    return ""


def _answer(body: dict[str, Any], reply: Any) -> tuple[list[dict[str, Any]], str, str | None]:
    """(content blocks, stop_reason, stop_sequence) of the answer to `body`."""
    if isinstance(reply, dict):
        blocks = [
            {**b, "id": b.get("id") or "toolu_" + uuid.uuid4().hex[:24]}
            if b.get("type") == "tool_use"
            else dict(b)
            for b in reply.get("content", [])
        ]
        uses_tool = any(b.get("type") == "tool_use" for b in blocks)
        return blocks, reply.get("stop_reason") or ("tool_use" if uses_tool else "end_turn"), None
    text = reply if isinstance(reply, str) else f"Fake answer to: {_last_user_text(body)[:200]}"
    reason, seq = "end_turn", None
    hits = sorted((text.find(s), s) for s in body.get("stop_sequences") or () if s in text)
    if hits:
        (at, seq), reason = hits[0], "stop_sequence"
        text = text[:at]
    words = text.split(" ")
    if len(words) > body["max_tokens"]:
        text, reason, seq = " ".join(words[: body["max_tokens"]]), "max_tokens", None
    return [{"type": "text", "text": text}], reason, seq


def _pieces(text: str) -> list[tuple[str, int]]:
    """A text as streamed: word by word, each (piece, the tokens it counts: 1 a word)."""
    return (
        [((" " if i else "") + w, 1 if w else 0) for i, w in enumerate(text.split(" "))]
        if text
        else []
    )


def _block_tokens(block: dict[str, Any]) -> int:
    if block.get("type") == "tool_use":
        return max(1, len(json.dumps(block.get("input") or {})) // 4)
    return sum(
        n
        for _, n in _pieces(
            str(block.get("text" if block.get("type") == "text" else "thinking", ""))
        )
    )


def _output_tokens(blocks: list[dict[str, Any]]) -> int:
    return max(1, sum(_block_tokens(b) for b in blocks))


def _searches(body: dict[str, Any], reply: Any) -> int:
    """How many web searches the answer runs: with the web search tool, a scripted dict's
    ``web_searches`` (else one), never more than the tool's ``max_uses``."""
    tool = next(
        (
            t
            for t in body.get("tools") or ()
            if isinstance(t, dict) and str(t.get("type", "")).startswith("web_search_")
        ),
        None,
    )
    if tool is None:
        return 0
    wanted = int(reply.get("web_searches", 1)) if isinstance(reply, dict) else 1
    most = tool.get("max_uses")
    return min(wanted, most) if isinstance(most, int) else wanted


def _server_tool(body: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    """The request's server tool whose type starts with `prefix` (web_fetch_, ...), if any."""
    return next(
        (
            t
            for t in body.get("tools") or ()
            if isinstance(t, dict) and str(t.get("type", "")).startswith(prefix)
        ),
        None,
    )


def _uses(tool: dict[str, Any] | None, reply: Any, field: str, default: int) -> int:
    """How many times the answer uses `tool`: a scripted dict's `field`, else `default`; never
    more than the tool's ``max_uses``."""
    if tool is None:
        return 0
    wanted = int(reply.get(field, default)) if isinstance(reply, dict) else default
    most = tool.get("max_uses")
    return min(wanted, most) if isinstance(most, int) else wanted


def _code_blocks(n: int) -> list[dict[str, Any]]:
    """`n` runs of code in the container: each a server_tool_use block and its result."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        sid = "srvtoolu_" + uuid.uuid4().hex[:24]
        name = CODE_TOOLS[i % len(CODE_TOOLS)]
        out.append({"type": "server_tool_use", "id": sid, "name": name, "input": {"command": "ls"}})
        out.append(
            {
                "type": f"{name}_tool_result",
                "tool_use_id": sid,
                "content": {"type": f"{name}_result", "stdout": "", "stderr": "", "return_code": 0},
            }
        )
    return out


def _search_blocks(n: int) -> list[dict[str, Any]]:
    """A JSON answer's blocks of `n` searches: each a server_tool_use and its result."""
    out: list[dict[str, Any]] = []
    for _ in range(n):
        sid = "srvtoolu_" + uuid.uuid4().hex[:24]
        out.append(
            {"type": "server_tool_use", "id": sid, "name": "web_search", "input": {"query": "fake"}}
        )
        out.append({"type": "web_search_tool_result", "tool_use_id": sid, "content": []})
    return out


def _usage(inp: int, write: int, read: int, out: int, ttl: str) -> dict[str, Any]:
    return {
        "input_tokens": inp,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write if ttl != "1h" else 0,
            "ephemeral_1h_input_tokens": write if ttl == "1h" else 0,
        },
        "output_tokens": out,
        "service_tier": "standard",
    }


def _events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
    """The stream of `message`, as (event name, data, output tokens it carries)."""
    usage = message["usage"]
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    out: list[tuple[str, dict[str, Any], int]] = [
        ("message_start", {"type": "message_start", "message": start}, 0)
    ]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        head = (
            {"type": "text", "text": ""}
            if kind == "text"
            else {"type": kind, "id": block["id"], "name": block["name"], "input": {}}
            if kind in ("tool_use", "server_tool_use")
            else {"type": kind, "thinking": ""}
            if kind in ("thinking", "redacted_thinking")
            else block  # a server tool's result: whole at its start
        )
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": head},
                0,
            )
        )
        if index == 0:
            out.append(("ping", {"type": "ping"}, 0))
        for delta, tokens in _deltas(block):
            out.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    tokens,
                )
            )
        out.append(("content_block_stop", {"type": "content_block_stop", "index": index}, 0))
    final = {
        k: usage[k]
        for k in (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
            "server_tool_use",
        )
        if k in usage
    }
    out.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "usage": final,
                "delta": {
                    "stop_reason": message["stop_reason"],
                    "stop_sequence": message["stop_sequence"],
                },
            },
            0,
        )
    )
    out.append(("message_stop", {"type": "message_stop"}, 0))
    return out


def _deltas(block: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    if block["type"] == "text":
        return [({"type": "text_delta", "text": piece}, n) for piece, n in _pieces(block["text"])]
    if block["type"].endswith("_tool_result"):
        return []
    if block["type"] in ("tool_use", "server_tool_use"):
        raw = json.dumps(block.get("input") or {})
        half, tokens = len(raw) // 2, _block_tokens(block)
        return [
            ({"type": "input_json_delta", "partial_json": part}, tokens if i == 2 else 0)
            for i, part in enumerate(("", raw[:half], raw[half:]))
        ]
    return [
        ({"type": "thinking_delta", "thinking": piece}, n)
        for piece, n in _pieces(str(block.get("thinking", "")))
    ] + [({"type": "signature_delta", "signature": block.get("signature", "c2lnbmF0dXJl")}, 0)]


def _betas(header: str) -> list[str]:
    """The beta names an ``anthropic-beta`` header holds (comma-separated, or several lines)."""
    return [b.strip() for b in header.split(",") if b.strip()]


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _request_id() -> str:
    return "req_" + uuid.uuid4().hex[:24]


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(math.ceil(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(
    status: int, message: str, rid: str, headers: dict[str, str] | None = None
) -> web.Response:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": rid}
    return web.json_response(body, status=status, headers={"request-id": rid, **(headers or {})})


if __name__ == "__main__":  # a manual run: python -m tests.helpers.fake_anthropic
    fake = FakeAnthropic({"test-anthropic-key-a": KeyPolicy("a", limit=50)}).start()
    print(fake.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()
