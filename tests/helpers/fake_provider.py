"""A loopback HTTP server that speaks the OpenAI chat API and behaves like a provider.

Tests cannot reach a hosted LLM, so this server plays one, over real HTTP:

- per-key and per-account moving-window request limits: 429 with ``retry-after`` and
  ``x-ratelimit-*`` headers, as Groq and OpenAI send them;
- unknown keys get 401, and a key set to fail with 401 or 403 (revoked, suspended) is refused
  on ``GET /v1/models`` too, as the proxy's probe of a key finds it;
- latency, streaming (SSE, with a final usage chunk when asked), 5xx, hangs (timeouts), and
  streams that die mid-way, chosen per key through :meth:`FakeProvider.set_fault`;
- scripted replies (:meth:`FakeProvider.script`) so a test can make the "model" answer badly
  first; otherwise it answers with a short text that quotes the last user message (``n`` of
  them when asked: each choice billed, streamed interleaved one choice a chunk). A scripted
  dict is the whole JSON answer, and for a streaming request it is streamed as OpenAI streams
  it (tool-call fragments, refusal, logprobs, system_fingerprint, ``"usage": null`` on every
  chunk when usage was asked for); a dict with ``"__status__"`` is sent as an error answer
  (``{key}`` in it: the key the request came with),
  one with ``"__pieces__"`` (a list of strings) streams its content split exactly there, and
  one with ``"__cut_after__": n`` streams n chunks and then closes the connection (a stream
  that dies mid-way, tool-call fragments and all; asked without a stream, it is answered whole);
- what it bills: every request it accepted is billed its prompt and every token it generated
  (:attr:`Received.billed_tokens`, :meth:`FakeProvider.billed`), whether or not the client
  stayed to read them, as providers bill;
- ``forbidden_models`` answer 403 as an OpenAI project with a model allowlist does, and a user
  message containing ``FLAGGED`` is refused with 403 as a moderating router does: errors about
  the request, while the key stays good (``GET /v1/models`` still answers 200); one containing
  ``CRASH`` gets a 500 on every key, as a body that trips a provider's bug does;
- ``POST /v1/embeddings`` (deterministic vectors, float or base64), the legacy
  ``POST /v1/completions`` (streaming too) and the Responses API, ``POST /v1/responses``
  (JSON and typed events; it stores nothing); paths in :attr:`FakeProvider.unserved` answer 404,
  as a provider without that endpoint does;
- :attr:`FakeProvider.strict_fields`: an unknown chat field or a top_p that is not a number is
  refused with OpenAI's 400, whose message echoes the field's name;
- prompt caching as OpenAI does it, automatically: per account (keys of one organization share
  it) and model, a prompt of 1,024 tokens or more is cached in steps of 128 tokens (the fake's
  token is four characters of the messages' text, as its prompt count), and the next request
  whose prompt starts the same reads the longest cached prefix, said in
  ``usage.prompt_tokens_details.cached_tokens`` (Responses: ``input_tokens_details``) and
  billed at the model's cached-input price (``Received.cached_tokens``); an entry lives 5
  minutes from its last use (24 hours with ``prompt_cache_retention: "24h"``); tools,
  instructions and ``prompt_cache_key`` are part of the prefix it is found by;
- audio as OpenAI's audio models take and give it on chat completions: ``input_audio`` parts
  heard by the token (``AUDIO_BYTES_PER_TOKEN`` of their data), and with ``modalities``
  holding "audio" (and ``audio``, its voice, which OpenAI requires with it: else a 400) a
  spoken answer (``message.audio``: id, data, expires_at, transcript; streamed as
  ``delta.audio`` pieces: the id and transcript, then the data, then when it expires),
  ``AUDIO_TOKENS_PER_WORD`` a word beside its text, within the token limit; a later assistant
  turn's ``audio: {id}`` is heard again (an unknown id is a 400); all counted in the usage's
  ``*_tokens_details`` (``audio_tokens``, ``text_tokens``) and billed;
- :attr:`FakeProvider.respond`: a model that answers from what it was sent. A callable given
  the request body (chat or legacy completion) and returning the text to answer, or None to
  fall through to the scripted replies and the default answer; consulted first, on every
  accepted request to ``POST /v1/chat/completions`` and ``POST /v1/completions``, and streamed
  as any answer is (``reset`` clears it).

It records every request it received (body, key alias, time) in :attr:`FakeProvider.received`.
It runs its own event loop in a thread, so sync tests, kernels and Jupyter servers in other
processes all reach it at :attr:`FakeProvider.base_url`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import json
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .loopback import LoopbackServer

PAGE_TOKENS = 3_000  # a fetched PDF's page, its text and image, as input tokens
# audio, as OpenAI's audio models bill it: a tenth of a second of 16 kHz 16-bit sound a token
# heard (3,200 bytes of an input_audio part's data), and a spoken word four tokens
AUDIO_BYTES_PER_TOKEN = 3_200
AUDIO_TOKENS_PER_WORD = 4
# OpenAI's prompt caching: prompts from 1,024 tokens, cached in 128-token steps
CACHE_MIN_TOKENS, CACHE_STEP = 1_024, 128
CACHE_TTL = {"in_memory": 300.0, "24h": 86_400.0}
MAX_PDF_PAGES = 100  # pages of PDFs one request may give (OpenAI's file inputs page)


@dataclass
class KeyPolicy:
    """How the fake provider treats one API key."""

    alias: str
    account: str = ""  # keys of one account share the window, as providers count per org
    limit: int = 0  # requests per `window` seconds; 0 = unlimited
    window: float = 60.0
    token_limit: int = 0  # tokens per `window`; 0 = unlimited


@dataclass
class Received:
    alias: str
    body: dict[str, Any]
    at: float
    status: int = 200
    path: str = "chat/completions"
    billed_tokens: int = 0  # prompt + generated tokens this request is billed, client there or not
    tool_calls: int = 0  # hosted tools' calls it made (web searches), billed by the call
    cached_tokens: int = 0  # of its prompt, read from the account's prompt cache
    prompt_tokens: int = 0  # the whole prompt, cached tokens too
    output_tokens: int = 0  # of the whole answer (a stream the client left bills less)
    code_runs: int = 0  # code interpreter calls, in one container
    container: str = ""  # the memory_limit of the container they ran in (billed by its size)
    fetched_pages: int = 0  # pages of files it fetched by URL or file id
    client: str = ""  # the X-RSQL-Client header the proxy (or the kernel) sent


@dataclass
class _Fault:
    kind: str  # "status", "hang", "die_mid_stream"
    status: int = 500
    count: int = -1  # -1 = forever


@dataclass
class _Account:
    stamps: collections.deque = field(default_factory=collections.deque)
    tokens: collections.deque = field(default_factory=collections.deque)  # (t, n)


class FakeProvider(LoopbackServer):
    """An OpenAI-compatible provider on 127.0.0.1, running in a background thread."""

    thread_name = "fake-provider"

    def __init__(
        self,
        keys: dict[str, KeyPolicy] | None = None,
        *,
        latency: float = 0.0,
        model_ids: tuple[str, ...] = ("fake-small", "fake-large"),
    ) -> None:
        self.keys: dict[str, KeyPolicy] = keys or {"sk-fake-default": KeyPolicy("default")}
        self.latency = latency
        # an event chat answers wait for (at most 30 s) while it is given and not set, before
        # their latency: a test holds a request at the provider while others come
        self.hold: threading.Event | None = None
        self.model_ids = model_ids
        self.received: list[Received] = []
        self.too_many: int = 0  # 429s this provider sent
        self.unserved: set[str] = set()  # endpoints answered with 404 ("embeddings", ...)
        self.strip_ratelimit_headers = False  # answer 2xx without x-ratelimit-* (some providers do)
        # x-ratelimit-reset-* as of the answer's first byte, not of the request's arrival
        self.ratelimit_headers_at_answer = False
        # seconds between streamed words, read before each word: a change mid-test reaches a
        # stream under way too (a test that means to keep one slow sets it once). Text replies
        # only: a scripted dict streams at once, and "die_mid_stream" needs a text of 2+ words
        self.word_delay = 0.005
        # seconds from a chat stream's head (sent as the request is counted) to its first event,
        # as hosted providers answer a stream: the head at once, the first token later
        self.first_event_delay = 0.0
        self.send_usage = True  # False: streams never carry the usage chunk, even when asked
        self.forbidden_models: set[str] = set()  # answered 403, as a project's model allowlist does
        self.models_delay = 0.0  # seconds GET /v1/models takes (a slow probe of a key)
        # the 401 a key it does not know gets ({key}: that key, as a provider's words may quote
        # it; OpenAI's own show its last four characters)
        self.unknown_key_message = "Invalid API Key"
        # True: refuse with 400, as OpenAI does, an unknown top-level chat field (its message
        # echoes the field's name) and a top_p that is not a number, before any window counts
        self.strict_fields = False
        # a model that answers from the request body (str), or None: the scripted replies
        self.respond: Callable[[dict[str, Any]], str | dict[str, Any] | None] | None = None
        # files the Responses API fetches: pages by URL or file id
        self.documents: dict[str, int] = {}
        self.search_content_tokens = 0  # what each web search pulls into the prompt
        self.cache_min_tokens = CACHE_MIN_TOKENS  # the shortest prompt it caches
        self._cache: dict[str, float] = {}  # prefix digest -> when it expires (monotonic)
        self._replies: collections.deque = collections.deque()
        self._faults: dict[str, _Fault] = {}
        self._accounts: dict[str, _Account] = collections.defaultdict(_Account)
        self._lock = threading.Lock()
        self._spoken: dict[str, int] = {}  # a spoken answer's audio id -> its tokens of sound

    # -- control ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: str | dict[str, Any]) -> None:
        """Queue replies: a str is the assistant's content; a dict is sent as the whole body."""
        with self._lock:
            self._replies.extend(replies)

    def set_fault(
        self, alias: str, kind: str | None, *, status: int = 500, count: int = -1
    ) -> None:
        """Make key `alias` fail: kind "status" (answer `status`), "hang", "die_mid_stream"."""
        with self._lock:
            if kind is None:
                self._faults.pop(alias, None)
            else:
                self._faults[alias] = _Fault(kind, status, count)

    def count_by_alias(self, status: int | None = 200) -> dict[str, int]:
        out: dict[str, int] = collections.Counter()
        for r in list(self.received):
            if status is None or r.status == status:
                out[r.alias] += 1
        return dict(out)

    def billed(self, path: str | None = None) -> int:
        """Tokens billed over all requests received (of `path` only, when given)."""
        return sum(r.billed_tokens for r in list(self.received) if path is None or r.path == path)

    def reset(self) -> None:
        with self._lock:
            self.received.clear()
            self._replies.clear()
            self._faults.clear()
            self._accounts.clear()
            self.too_many = 0
            self.hold = None
            self.unserved = set()
            self.strip_ratelimit_headers = False
            self.ratelimit_headers_at_answer = False
            self.word_delay = 0.005
            self.first_event_delay = 0.0
            self.send_usage = True
            self.forbidden_models = set()
            self.models_delay = 0.0
            self.unknown_key_message = "Invalid API Key"
            self.strict_fields = False
            self.respond = None
            self.documents = {}
            self.search_content_tokens = 0
            self.cache_min_tokens = CACHE_MIN_TOKENS
            self._cache.clear()

    # -- lifecycle (LoopbackServer: start, stop, a context manager) ------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/responses", self._responses)

    # -- handlers --------------------------------------------------------------------------

    def _unknown_key(self, request: web.Request) -> str:
        return self.unknown_key_message.replace("{key}", _sent_key(request))

    def _policy(self, request: web.Request) -> KeyPolicy | None:
        auth = request.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else ""
        return self.keys.get(key)

    async def _models(self, request: web.Request) -> web.Response:
        if self.models_delay:
            await asyncio.sleep(self.models_delay)
        policy = self._policy(request)
        if policy is None:
            return _error(401, self._unknown_key(request), "invalid_api_key")
        fault = self._faults.get(policy.alias)
        if fault and fault.kind == "status" and fault.status in (401, 403) and fault.count != 0:
            # a revoked or suspended key is refused everywhere, its probe included
            return _error(fault.status, "upstream fault injected", "invalid_api_key")
        data = [{"id": m, "object": "model", "owned_by": "fake"} for m in self.model_ids]
        return web.json_response({"object": "list", "data": data})

    async def _begin(
        self, request: web.Request, path: str
    ) -> tuple[KeyPolicy | None, dict[str, Any], Received | None, web.Response | None]:
        """Parse, record and check one request: (policy, body, record, an error to send)."""
        policy = self._policy(request)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return policy, {}, None, _error(400, "body is not JSON", "invalid_request_error")
        rec = Received(
            policy.alias if policy else "?",
            body,
            time.time(),
            path=path,
            client=request.headers.get("X-RSQL-Client", ""),
        )
        self.received.append(rec)
        if path in self.unserved:
            rec.status = 404
            return (
                policy,
                body,
                rec,
                _error(404, f"Unknown request URL: POST /v1/{path}", "unknown_url"),
            )
        if policy is None:
            rec.status = 401
            return policy, body, rec, _error(401, self._unknown_key(request), "invalid_api_key")
        if body.get("model") not in self.model_ids:
            rec.status = 404
            return (
                policy,
                body,
                rec,
                _error(404, f"The model `{body.get('model')}` does not exist", "model_not_found"),
            )
        if body.get("model") in self.forbidden_models:
            rec.status = 403
            return (
                policy,
                body,
                rec,
                _error(
                    403,
                    f"Project `proj_fake` does not have access to model `{body['model']}`",
                    "model_not_found",
                ),
            )
        if "CRASH" in json.dumps(body.get("messages", "")):
            rec.status = 500
            return (
                policy,
                body,
                rec,
                _error(
                    500, "The server had an error while processing your request", "server_error"
                ),
            )
        if "FLAGGED" in json.dumps(body.get("messages", "")):
            rec.status = 403
            return (
                policy,
                body,
                rec,
                _error(403, "Your input was flagged by moderation", "content_flagged"),
            )
        return policy, body, rec, None

    async def _embeddings(self, request: web.Request) -> web.Response:
        policy, body, rec, err = await self._begin(request, "embeddings")
        if err is not None:
            return err
        assert policy is not None and rec is not None
        raw = body.get("input")
        items = (
            [raw]
            if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int))
            else raw
        )
        tokens = sum(max(1, len(i) // 4) if isinstance(i, str) else len(i) for i in items)
        headers = self._admit(policy, time.monotonic(), tokens)
        refused = self._refused(rec, headers, str(body["model"]))
        if refused is not None:
            return refused
        dims = int(body.get("dimensions") or 8)
        data = []
        for i, item in enumerate(items):
            vec = _vector(json.dumps(item), dims)
            emb: Any = (
                base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
                if (body.get("encoding_format") == "base64")
                else vec
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers=headers,
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        policy, body, rec, err = await self._begin(request, "completions")
        if err is not None:
            return err
        assert policy is not None and rec is not None
        prompt = body.get("prompt", "")
        responded = self.respond(body) if self.respond is not None else None
        text = f"Fake completion of: {str(prompt)[:200]}" if responded is None else responded
        words = text.split(" ")[: int(body.get("max_tokens") or 16)]
        # the text after the insertion point is prompt too, billed as such
        prompt_tokens = max(1, (len(str(prompt)) + len(str(body.get("suffix") or ""))) // 4)
        headers = self._admit(policy, time.monotonic(), prompt_tokens + len(words))
        refused = self._refused(rec, headers, str(body["model"]))
        if refused is not None:
            return refused
        # one completion of `words` per prompt (a list of prompts is a batch), n of each
        prompts = (
            len(prompt)
            if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int)
            else 1
        )
        copies = prompts * max(int(body.get("n") or 1), int(body.get("best_of") or 1))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": copies * len(words),
            "total_tokens": prompt_tokens + copies * len(words),
        }
        rec.billed_tokens = usage["total_tokens"]
        cid = "cmpl-" + uuid.uuid4().hex[:12]
        base = {
            "id": cid,
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
        }
        finish = (
            "length" if body.get("max_tokens") and len(words) >= int(body["max_tokens"]) else "stop"
        )
        if not body.get("stream"):
            choice = {
                "text": " ".join(words),
                "index": 0,
                "logprobs": None,
                "finish_reason": finish,
            }
            return web.json_response({**base, "choices": [choice], "usage": usage}, headers=headers)
        resp = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i, word in enumerate(words):
            choice = {
                "text": (" " if i else "") + word,
                "index": 0,
                "logprobs": None,
                "finish_reason": finish if i == len(words) - 1 else None,
            }
            await resp.write(
                b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n"
            )
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(
                b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
            )
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        policy, body, rec, err = await self._begin(request, "chat/completions")
        if err is not None:
            return err
        assert policy is not None and rec is not None
        now = time.monotonic()
        if self.strict_fields and (invalid := _invalid_chat_field(body)) is not None:
            rec.status = 400
            return _error(400, invalid, "invalid_request_error", kind="invalid_request_error")

        responded = self.respond(body) if self.respond is not None else None
        with self._lock:
            fault = self._faults.get(policy.alias)
            if fault and fault.count != 0:
                fault.count -= 1
            else:
                fault = None
            if responded is not None:
                reply: str | dict[str, Any] | None = responded
            else:
                reply = self._replies.popleft() if self._replies else None

        if fault and fault.kind == "status":
            rec.status = fault.status
            return _error(fault.status, "upstream fault injected", "server_error")
        if fault and fault.kind == "hang":
            rec.status = 0
            await asyncio.sleep(3600)
        pieces = None
        if isinstance(reply, dict) and "__pieces__" in reply:
            # a scripted answer streamed in exactly these content pieces (a split mid-word)
            reply = dict(reply)
            pieces = reply.pop("__pieces__")
        cut_after = None
        if isinstance(reply, dict) and "__cut_after__" in reply:
            reply = dict(reply)
            cut_after = int(reply.pop("__cut_after__"))
        if isinstance(reply, dict) and "__status__" in reply:
            rec.status = int(reply["__status__"])
            answer = {k: v for k, v in reply.items() if k != "__status__"}
            # "{key}": the key this request came with, as a provider's error may quote it
            text = json.dumps(answer).replace("{key}", _sent_key(request))
            return web.Response(text=text, status=rec.status, content_type="application/json")

        # the prompt's text, and its sound heard by the token: input_audio parts, and earlier
        # spoken answers an assistant turn names by id (heard again, as OpenAI does)
        try:
            heard = _audio_tokens(body.get("messages", []))
        except ValueError as exc:
            rec.status = 400
            return _error(400, str(exc), "invalid_value", kind="invalid_request_error")
        for m in body.get("messages", []):
            said = m.get("audio") if isinstance(m, dict) else None
            if isinstance(said, dict):
                with self._lock:
                    again = self._spoken.get(str(said.get("id")))
                if again is None:
                    rec.status = 400
                    return _error(
                        400, f"Audio with id {said.get('id')!r} not found.", "invalid_value"
                    )
                heard += again
        prompt_tokens = _count_tokens(_without_audio(body.get("messages", []))) + heard
        modalities = body.get("modalities")
        speaks = isinstance(modalities, list) and "audio" in modalities
        if speaks and not isinstance(body.get("audio"), dict):
            rec.status = 400
            return _error(
                400,
                "The 'audio' parameter is required when 'modalities' includes 'audio'.",
                "missing_required_parameter",
                kind="invalid_request_error",
            )
        if isinstance(reply, dict):
            content = reply.get("choices", [{}])[0].get("message", {}).get("content") or ""
        elif isinstance(reply, str):
            content = reply
        else:
            last = next(
                (
                    m.get("content")
                    for m in reversed(body.get("messages", []))
                    if m.get("role") == "user"
                ),
                "",
            )
            content = f"Fake answer to: {str(last)[:200]}"
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        words = content.split(" ")
        # a spoken word is its text and its sound, both within the answer's token limit
        per_word = 1 + AUDIO_TOKENS_PER_WORD if speaks else 1
        if max_tokens:
            words = words[: max(1, int(max_tokens) // per_word)]
            content = " ".join(words)
        # `n` choices, each this answer, each billed (the prompt once), as OpenAI does
        asked_n = body.get("n")
        n = asked_n if isinstance(asked_n, int) and not isinstance(asked_n, bool) else 1
        n = max(1, n)
        spoken = len(words) * AUDIO_TOKENS_PER_WORD * n if speaks else 0
        completion_tokens = max(1, len(words)) * n + spoken

        headers = self._admit(policy, now, prompt_tokens + completion_tokens)
        refused = self._refused(rec, headers, str(body["model"]))
        if refused is not None:
            return refused

        # billed once accepted: the whole answer without a stream (generated whether or not the
        # client waits), the prompt now and each word as it goes out with one
        scripted_usage = reply.get("usage") if isinstance(reply, dict) else None
        rec.prompt_tokens, rec.output_tokens = prompt_tokens, completion_tokens
        if isinstance(scripted_usage, dict):
            rec.billed_tokens = int(scripted_usage.get("total_tokens") or 0)
        elif body.get("stream"):
            rec.billed_tokens = prompt_tokens
        else:
            rec.billed_tokens = prompt_tokens + completion_tokens
        hold = self.hold
        for _ in range(6000):
            if hold is None or hold.is_set():
                break
            await asyncio.sleep(0.005)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.strip_ratelimit_headers:
            headers = {}
        elif self.ratelimit_headers_at_answer and "x-ratelimit-reset-requests" in headers:
            reset = float(headers["x-ratelimit-reset-requests"].rstrip("s")) - (
                time.monotonic() - now
            )
            headers["x-ratelimit-reset-requests"] = f"{max(0.0, reset):.3f}s"

        cid = "chatcmpl-" + uuid.uuid4().hex[:12]
        text = _prompt_text(body.get("messages", []))
        rec.cached_tokens = self._cached(policy, body, text, prompt_tokens)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {
                "cached_tokens": rec.cached_tokens,
                "audio_tokens": heard,
                "text_tokens": prompt_tokens - heard,
            },
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": spoken,
                "text_tokens": completion_tokens - spoken,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        # a spoken answer: its sound (a few bytes a word here) and transcript, no content
        voice = {
            "id": "audio_" + uuid.uuid4().hex[:12],
            "expires_at": int(time.time()) + 3600,
            "data": base64.b64encode(b"\0\1" * len(words)).decode(),
            "transcript": content,
        }
        said = (
            {"role": "assistant", "content": None, "refusal": None, "audio": voice}
            if speaks
            else {"role": "assistant", "content": content}
        )
        if speaks:  # a later turn may name it (heard again, one choice's sound)
            with self._lock:
                self._spoken[voice["id"]] = spoken // n
        if not body.get("stream"):
            if isinstance(reply, dict):
                return web.json_response(reply, headers=headers)
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {"index": c, "message": said, "finish_reason": "stop"} for c in range(n)
                    ],
                    "usage": usage,
                },
                headers=headers,
            )

        resp = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.first_event_delay:
            await asyncio.sleep(self.first_event_delay)
        if isinstance(reply, dict):  # a scripted answer, streamed as OpenAI streams one
            with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            for i, obj in enumerate(_stream_of(reply, with_usage, pieces)):
                if i == cut_after:  # the connection dies mid-stream
                    request.transport.close()  # type: ignore[union-attr]  # why: open while answering
                    return resp
                await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp

        def chunk(delta: dict, finish: str | None = None, index: int = 0) -> bytes:
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        # the choices' chunks interleaved, one choice a chunk, as OpenAI streams `n` of them; a
        # spoken answer's pieces of transcript and then its sound in `audio`, no content
        for c in range(n):
            await resp.write(chunk({"role": "assistant", "content": ""}, index=c))
        for i, word in enumerate(words):
            if fault and fault.kind == "die_mid_stream" and i == max(1, len(words) // 2):
                request.transport.close()  # type: ignore[union-attr]
                return resp
            piece = (" " if i else "") + word
            for c in range(n):
                if speaks:  # the id with the first piece only
                    delta = {
                        "audio": {**({"id": voice["id"]} if not i else {}), "transcript": piece}
                    }
                else:
                    delta = {"content": piece}
                await resp.write(chunk(delta, index=c))
                rec.billed_tokens += per_word
            await asyncio.sleep(self.word_delay)
        for c in range(n):
            if speaks:  # the sound in pieces, then when it expires
                data = str(voice["data"])
                for at in range(0, len(data), 8):
                    await resp.write(chunk({"audio": {"data": data[at : at + 8]}}, index=c))
                await resp.write(chunk({"audio": {"expires_at": voice["expires_at"]}}, index=c))
            await resp.write(chunk({}, "stop", index=c))
        if self.send_usage and (body.get("stream_options") or {}).get("include_usage"):
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [],
                "usage": usage,
            }
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's Responses API, as a provider that speaks it serves it (an upstream with
        ``responses_api``): `input` a string or items, ``instructions``, function tools; a text
        answer quoting the last user text, or a scripted one (a str: the text; a dict with
        ``"function_call": {"name", "arguments"}``: a call); ``usage`` with input and output
        tokens; streamed as the API's typed events with their sequence numbers. It keeps no
        conversation: a request with ``previous_response_id`` is refused (400), as a request
        for a response it never stored would be. With a ``web_search`` tool (any dated or
        preview variant) it searches as OpenAI does before it answers: one ``web_search_call``
        output item per search (a scripted dict's ``"web_searches": n``, else one), never more
        than ``max_tool_calls``; each is billed by the call, apart from the tokens, and pulls
        :attr:`search_content_tokens` into the prompt (billed as input). With a
        ``code_interpreter`` tool it runs a scripted dict's ``"code_runs": n`` in one container
        of the tool's ``memory_limit`` (``code_interpreter_call`` items naming it; billed by the
        container: ``Received.container``); every built-in tool's calls together at most
        ``max_tool_calls``. Files it fetches (an ``input_file`` by ``file_url`` or ``file_id``,
        in a message or a tool's output) are read from :attr:`documents` (pages; an unknown one
        is a 400) and billed ``PAGE_TOKENS`` a page, at most 100 pages a request. A key's
        "die_mid_stream" fault closes the connection halfway through a streamed text."""
        policy, body, rec, err = await self._begin(request, "responses")
        if err is not None:
            return err
        assert policy is not None and rec is not None
        if body.get("previous_response_id"):
            rec.status = 400
            return _error(
                400, "Previous response with id not found.", "previous_response_not_found"
            )
        items = body.get("input")
        items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
        pages, missing = self._fetched_pages(items)
        if missing is not None or pages > MAX_PDF_PAGES:
            rec.status = 400
            why = (
                f"Error while downloading {missing[:80]}."
                if missing is not None
                else f"You may provide at most {MAX_PDF_PAGES} pages of PDF input in a request."
            )
            return _error(400, why, "invalid_request_error")
        rec.fetched_pages = pages
        texts = []
        for item in items:
            if isinstance(item, dict) and item.get("role") == "user":
                content = item.get("content")
                for part in content if isinstance(content, list) else [content]:
                    texts.append(
                        part if isinstance(part, str) else str((part or {}).get("text", ""))
                    )
        prompt_tokens = max(1, len(json.dumps(items) + str(body.get("instructions") or "")) // 4)
        prompt_tokens += pages * PAGE_TOKENS
        with self._lock:
            reply = self._replies.popleft() if self._replies else None
            fault = self._faults.get(policy.alias)
            if fault and fault.kind == "die_mid_stream" and fault.count != 0:
                fault.count -= 1  # the connection dies mid-answer (a text answer, streamed)
            else:
                fault = None
        rid = (
            "resp_" + uuid.uuid4().hex + uuid.uuid4().hex[:16]
        )  # longer than ours, as OpenAI's are
        if isinstance(reply, dict) and "function_call" in reply:
            call = reply["function_call"]
            output = [
                {
                    "type": "function_call",
                    "id": "fc_" + uuid.uuid4().hex,
                    "call_id": "call_" + uuid.uuid4().hex[:12],
                    "name": call["name"],
                    "arguments": call["arguments"],
                    "status": "completed",
                }
            ]
            completion = max(1, len(call["arguments"]) // 4)
        else:
            scripted = reply if isinstance(reply, dict) else {}
            text = (
                reply
                if isinstance(reply, str)
                else scripted.get("text") or f"Fake response to: {(texts or [''])[-1][:200]}"
            )
            tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
            searches = runs = 0
            if any(str(t.get("type", "")).startswith("web_search") for t in tools):
                searches = int(scripted.get("web_searches", 1))
            coder = next((t for t in tools if t.get("type") == "code_interpreter"), None)
            if coder is not None:
                runs = int(scripted.get("code_runs", 0))
            cap = body.get("max_tool_calls")
            if isinstance(cap, int):  # every built-in tool's calls together
                searches = min(searches, cap)
                runs = min(runs, cap - searches)
            output = [
                {
                    "type": "web_search_call",
                    "id": "ws_" + uuid.uuid4().hex,
                    "status": "completed",
                    "action": {"type": "search", "query": "fake"},
                }
                for _ in range(searches)
            ]
            if runs:
                assert coder is not None
                spec = coder.get("container")
                size = spec.get("memory_limit", "1g") if isinstance(spec, dict) else "by-id"
                container = spec if isinstance(spec, str) else "cntr_" + uuid.uuid4().hex[:24]
                rec.container = size
                output += [
                    {
                        "type": "code_interpreter_call",
                        "id": "ci_" + uuid.uuid4().hex,
                        "status": "completed",
                        "code": "print(1)",
                        "container_id": container,
                        "outputs": None,
                    }
                    for _ in range(runs)
                ]
            prompt_tokens += searches * self.search_content_tokens
            output.append(
                {
                    "type": "message",
                    "id": "msg_" + uuid.uuid4().hex,
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            )
            rec.tool_calls = searches
            rec.code_runs = runs
            completion = len(text.split(" "))
        headers = self._admit(policy, time.monotonic(), prompt_tokens + completion)
        refused = self._refused(rec, headers, str(body["model"]))
        if refused is not None:
            return refused
        rec.billed_tokens = prompt_tokens + completion
        rec.prompt_tokens, rec.output_tokens = prompt_tokens, completion
        rec.cached_tokens = self._cached(policy, body, json.dumps(items), prompt_tokens)
        usage = {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {"cached_tokens": rec.cached_tokens},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt_tokens + completion,
        }
        response = {
            "id": rid,
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": body["model"],
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "store": body.get("store", True),
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(response, headers=headers)
        resp = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        seq = iter(range(100_000))

        async def send(kind: str, **fields: Any) -> None:
            event = {"type": kind, **fields, "sequence_number": next(seq)}
            await resp.write(f"event: {kind}\ndata: {json.dumps(event)}\n\n".encode())

        start = {**response, "status": "in_progress", "output": [], "usage": None}
        await send("response.created", response=start)
        await send("response.in_progress", response=start)
        for index, item in enumerate(output):
            await send(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress"},
            )
            if item["type"] == "message":
                text = item["content"][0]["text"]
                part = {"type": "output_text", "text": "", "annotations": []}
                where = {"item_id": item["id"], "output_index": index, "content_index": 0}
                await send("response.content_part.added", **where, part=part)
                words = text.split(" ")
                for i, word in enumerate(words):
                    if fault is not None and i == max(1, len(words) // 2):
                        request.transport.close()  # type: ignore[union-attr]  # open while answering
                        return resp
                    await send(
                        "response.output_text.delta", **where, delta=(" " if i else "") + word
                    )
                await send("response.output_text.done", **where, text=text)
                await send("response.content_part.done", **where, part={**part, "text": text})
            elif item["type"] == "function_call":
                where = {"item_id": item["id"], "output_index": index}
                await send(
                    "response.function_call_arguments.delta", **where, delta=item["arguments"]
                )
                await send(
                    "response.function_call_arguments.done", **where, arguments=item["arguments"]
                )
            await send("response.output_item.done", output_index=index, item=item)
        await send("response.completed", response=response)
        await resp.write_eof()
        return resp

    def _cached(
        self, policy: KeyPolicy, body: dict[str, Any], text: str, prompt_tokens: int
    ) -> int:
        """The prompt tokens this request reads from its account's cache (the longest cached
        prefix of `text`, the prompt as the fake counts it, in 128-token steps from 1,024),
        and every prefix of it cached for the next (refreshed when read)."""
        if prompt_tokens < self.cache_min_tokens:
            return 0
        now = time.monotonic()
        ttl = CACHE_TTL.get(str(body.get("prompt_cache_retention") or "in_memory"), 300.0)
        head = json.dumps(
            [
                policy.account or policy.alias,
                body.get("model"),
                body.get("tools"),
                body.get("instructions"),
                body.get("prompt_cache_key"),
            ],
            sort_keys=True,
        )
        digest = hashlib.sha256(head.encode())
        read, done = 0, 0
        with self._lock:
            for end in range(CACHE_STEP, prompt_tokens + 1, CACHE_STEP):
                digest.update(text[done * 4 : end * 4].encode())
                done = end
                key = digest.copy().hexdigest()
                if end >= self.cache_min_tokens:
                    if self._cache.get(key, 0.0) > now:
                        read = end
                    self._cache[key] = now + ttl
        return read

    def _fetched_pages(self, items: list[Any]) -> tuple[int, str | None]:
        """The pages of the files `items` have the provider fetch (``input_file`` by
        ``file_url`` or ``file_id``, in messages and tools' outputs), and the first it cannot
        find (None: all found)."""
        pages = 0
        for item in items:
            if not isinstance(item, dict):
                continue
            parts = item.get("content") if "content" in item else item.get("output")
            for part in parts if isinstance(parts, list) else ():
                if not isinstance(part, dict) or part.get("type") != "input_file":
                    continue
                where = part.get("file_url") or part.get("file_id")
                if where is None:
                    continue
                if where not in self.documents:
                    return pages, str(where)
                pages += self.documents[where]
        return pages, None

    def _refused(self, rec: Received, headers: dict[str, str], model: str) -> web.Response | None:
        """The 429 for a request ``_admit`` refused, worded as OpenAI words each kind (in place of
        `headers`, which lose the wording); None when it was admitted."""
        too_large, used = headers.pop("__too_large__", None), headers.pop("__used__", None)
        if too_large is None and not headers.get("retry-after"):
            return None
        rec.status = 429
        self.too_many += 1
        where = f"for {model} in organization org-fake0123 on tokens per min (TPM)"
        if too_large is not None:
            message = (
                f"Request too large {where}: {too_large}. The input or output tokens must be "
                "reduced in order to run successfully."
            )
            return _error(429, message, "rate_limit_exceeded", headers, kind="tokens")
        if used is not None:
            message = f"Rate limit reached {where}: {used}. Please try again in 1s."
            return _error(429, message, "rate_limit_exceeded", headers, kind="tokens")
        return _error(429, "Rate limit reached for requests", "rate_limit_exceeded", headers)

    def _admit(self, policy: KeyPolicy, now: float, tokens: int) -> dict[str, str]:
        """Moving-window check for the key's account; returns rate-limit headers."""
        acct = self._accounts[policy.account or policy.alias]
        with self._lock:
            while acct.stamps and acct.stamps[0] <= now - policy.window:
                acct.stamps.popleft()
            while acct.tokens and acct.tokens[0][0] <= now - policy.window:
                acct.tokens.popleft()
            used_tokens = sum(n for _, n in acct.tokens)
            headers: dict[str, str] = {}
            if policy.limit:
                if len(acct.stamps) >= policy.limit:
                    wait = acct.stamps[0] + policy.window - now
                    return {
                        "retry-after": str(max(1, round(wait + 0.5))),
                        "x-ratelimit-remaining-requests": "0",
                        "x-ratelimit-reset-requests": f"{wait:.3f}s",
                    }
            if policy.token_limit and tokens > policy.token_limit:
                # larger than the whole window: OpenAI's "Request too large", which no wait
                # cures, so it carries no retry-after; its headers still describe the window
                return {
                    "__too_large__": f"Limit {policy.token_limit}, Requested {tokens}",
                    "x-ratelimit-limit-tokens": str(policy.token_limit),
                    "x-ratelimit-remaining-tokens": str(max(0, policy.token_limit - used_tokens)),
                    "x-ratelimit-reset-tokens": f"{policy.window:.3f}s",
                }
            if policy.token_limit and used_tokens + tokens > policy.token_limit:
                wait = acct.tokens[0][0] + policy.window - now if acct.tokens else policy.window
                return {
                    "retry-after": str(max(1, round(wait + 0.5))),
                    "x-ratelimit-limit-tokens": str(policy.token_limit),
                    "x-ratelimit-remaining-tokens": "0",
                    "x-ratelimit-reset-tokens": f"{wait:.3f}s",
                    "__used__": f"Limit {policy.token_limit}, Used {used_tokens}, Requested {tokens}",
                }
            acct.stamps.append(now)
            acct.tokens.append((now, tokens))
            if policy.limit:
                headers["x-ratelimit-limit-requests"] = str(policy.limit)
                headers["x-ratelimit-remaining-requests"] = str(policy.limit - len(acct.stamps))
                # OpenAI: the time until the window is back to its initial state, i.e. until
                # the newest request it counted (this one) leaves it
                headers["x-ratelimit-reset-requests"] = (
                    f"{acct.stamps[-1] + policy.window - now:.3f}s"
                )
            return headers


def _vector(text: str, dims: int) -> list[float]:
    """A deterministic unit-ish vector for `text` (the same input, the same embedding)."""
    seed = hashlib.sha256(text.encode()).digest()
    return [round((seed[i % len(seed)] - 128) / 128, 6) for i in range(dims)]


def _stream_of(
    answer: dict[str, Any], with_usage: bool, given: list[str] | None = None
) -> list[dict[str, Any]]:
    """The chunks OpenAI streams for the JSON answer `answer`: a role chunk, the content word by
    word (each carrying its own logprobs entries when they match), tool calls as a head (id,
    name, empty arguments) plus argument fragments, the refusal, a finish chunk, and with
    `with_usage` a usage chunk, with `"usage": null` on every other chunk."""
    base = {k: v for k, v in answer.items() if k not in ("choices", "usage", "object")}
    base["object"] = "chat.completion.chunk"
    extra = {"usage": None} if with_usage else {}
    out: list[dict[str, Any]] = []

    def add(
        index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
    ) -> None:
        out.append(
            {
                **base,
                "choices": [
                    {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
                ],
                **extra,
            }
        )

    for choice in answer.get("choices", []):
        idx, msg = choice.get("index", 0), choice.get("message", {})
        content = msg.get("content")
        add(
            idx,
            {"role": "assistant", "content": "" if content is not None else None, "refusal": None},
        )
        lp = (choice.get("logprobs") or {}).get("content")
        if content:
            words = content.split(" ")
            pieces = given or [(" " if i else "") + w for i, w in enumerate(words)]
            per_word = lp is not None and len(lp) == len(pieces)
            for i, piece in enumerate(pieces):
                if per_word:
                    logprobs: Any = {"content": [lp[i]], "refusal": None}
                elif lp is not None and i == 0:
                    logprobs = {"content": lp, "refusal": None}
                else:
                    logprobs = None
                add(idx, {"content": piece}, logprobs=logprobs)
        for i, call in enumerate(msg.get("tool_calls") or []):
            args = call["function"]["arguments"]
            add(
                idx,
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call["id"],
                            "type": call["type"],
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                },
            )
            half = len(args) // 2
            for part in (args[:half], args[half:]):
                add(idx, {"tool_calls": [{"index": i, "function": {"arguments": part}}]})
        if msg.get("refusal"):
            add(idx, {"refusal": msg["refusal"]})
        add(idx, {}, choice.get("finish_reason"))
    if with_usage and answer.get("usage") is not None:
        out.append({**base, "choices": [], "usage": answer["usage"]})
    return out


# the chat fields OpenAI takes (platform.openai.com/docs/api-reference/chat/create)
_CHAT_FIELDS = frozenset(
    "model messages max_tokens max_completion_tokens temperature top_p n stream stream_options "
    "stop presence_penalty frequency_penalty logit_bias logprobs top_logprobs user "
    "safety_identifier prompt_cache_key seed tools tool_choice parallel_tool_calls "
    "response_format service_tier store metadata modalities audio prediction reasoning_effort "
    "verbosity web_search_options functions function_call".split()
)


def _invalid_chat_field(body: dict[str, Any]) -> str | None:
    """OpenAI's 400 message for a chat body it refuses by its fields, as it words them."""
    unknown = next((k for k in body if k not in _CHAT_FIELDS), None)
    if unknown is not None:
        return f"Unrecognized request argument supplied: {unknown}"
    top_p = body.get("top_p")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))):
        return "Invalid type for 'top_p': expected a decimal, but got a string instead."
    return None


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    return " ".join(str(m.get("content", "")) for m in messages)


def _audio_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        part
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for part in m["content"]
        if isinstance(part, dict) and part.get("type") == "input_audio"
    ]


def _audio_tokens(messages: list[dict[str, Any]]) -> int:
    """The tokens of sound the prompt's ``input_audio`` parts hold (by their data's bytes);
    ValueError for data that is no base64, as OpenAI refuses it."""
    tokens = 0
    for part in _audio_parts(messages):
        data = (part.get("input_audio") or {}).get("data") or ""
        try:
            heard = len(base64.b64decode(data, validate=True))
        except (ValueError, TypeError):
            raise ValueError("Invalid 'input_audio.data': expected base64-encoded audio.") from None
        tokens += max(1, heard // AUDIO_BYTES_PER_TOKEN)
    return tokens


def _without_audio(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with their audio parts left out (their text is counted as text)."""
    audio = {id(p) for p in _audio_parts(messages)}
    return [
        {**m, "content": [p for p in m["content"] if id(p) not in audio]}
        if isinstance(m.get("content"), list)
        else m
        for m in messages
    ]


def _count_tokens(messages: list[dict[str, Any]]) -> int:
    return max(1, len(_prompt_text(messages)) // 4)


def _sent_key(request: web.Request) -> str:
    """The key a request came with (its bearer token)."""
    return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()


def _error(
    status: int,
    message: str,
    code: str,
    headers: dict[str, str] | None = None,
    kind: str | None = None,
) -> web.Response:
    kind = kind or {
        401: "invalid_request_error",
        404: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "server_error")
    return web.json_response(
        {"error": {"message": message, "type": kind, "code": code}}, status=status, headers=headers
    )


if __name__ == "__main__":  # a manual run: python -m tests.helpers.fake_provider
    fp = FakeProvider({"sk-fake-a": KeyPolicy("a", limit=30)}).start()
    print(fp.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fp.stop()
