"""An upstream's answer, or a cached one, turned into the client's reply: usage settled, cost
charged, the slot and the admission ticket given back, the answer cached."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from .answers import Collector, chunks_of, event_json, shape_event, sse
from .cache import Cached, MemoryCache
from .exchange import Exchange
from .limiter import Limiter
from .pool import Pool
from .pricing import PriceBook
from .records import Reply
from .transport import UpstreamFailure, UpstreamReply


def usage_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    usage = obj.get("usage") or (obj.get("x_groq") or {}).get("usage")
    return usage if isinstance(usage, dict) else None


class Replies:
    """Builds the JSON, stream and cache-hit replies; `finish` records the request's outcome."""

    def __init__(
        self, pool: Pool, prices: PriceBook, limiter: Limiter, cache: MemoryCache,
        finish: Callable[[Exchange], None],
    ) -> None:
        self.pool = pool
        self.prices = prices
        self.limiter = limiter
        self.cache = cache
        self.finish = finish

    async def _end(self, ex: Exchange, tokens: int | None) -> None:
        """Give back the key's slot and the caller's ticket; with shared state both writes go in
        one batch (``Pool.batched``), so they are made together rather than one after another."""
        release = self.pool.release(ex.slot, tokens=tokens, counted=True)
        finish = self.limiter.finish(ex.ticket, ex.outcome.cost_usd)  # type: ignore[arg-type]
        if self.pool.batched:
            await asyncio.gather(release, finish)
        else:
            await release
            await finish

    def settle_usage(self, ex: Exchange, usage: dict[str, Any] | None) -> int | None:
        """The tokens and cost an upstream reported, onto the outcome; the tokens used."""
        if not usage:
            return None
        outcome = ex.outcome
        outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        outcome.completion_tokens = int(usage.get("completion_tokens") or 0)
        price = self.prices.price(outcome.model, ex.slot.key.alias)
        outcome.cost_usd = price.cost(outcome.prompt_tokens, outcome.completion_tokens)
        return outcome.prompt_tokens + outcome.completion_tokens

    async def json_reply(self, ex: Exchange, reply: UpstreamReply) -> Reply:
        outcome, slot, ticket = ex.outcome, ex.slot, ex.ticket
        body = reply.body
        try:
            obj = json.loads(body)
        except ValueError:
            obj = None
        usage = usage_of(obj) if isinstance(obj, dict) else None
        tokens = self.settle_usage(ex, usage)
        if usage is not None:
            usage["cost_usd"] = round(outcome.cost_usd, 8)
            body = json.dumps(obj).encode()
        else:
            # an answer that says nothing of its usage is charged its reservation, as a stream
            # is: otherwise an upstream that omits usage would make every answer free
            outcome.cost_usd = ticket.reserved  # type: ignore[union-attr]
        await self._end(ex, tokens)
        if ex.cache_key is not None and obj is not None:
            self.cache.put(ex.cache_key, Cached(body))
        headers = {
            "X-Request-Id": outcome.request_id,
            "X-RSQL-Upstream": slot.key.alias,
            "X-RSQL-Cache": "miss",
            "X-RSQL-Cost-USD": f"{outcome.cost_usd:.8f}",
            "Content-Type": "application/json",
        }
        self.finish(ex)
        return Reply(200, headers, body=body)

    def stream_reply(self, ex: Exchange, reply: UpstreamReply) -> Reply:
        pool, req, outcome, slot, ticket, key = self.pool, ex.req, ex.outcome, ex.slot, ex.ticket, ex.cache_key
        # a streamed answer is cached as its events (the same stream on a replay) and as the
        # completion they add up to (for a JSON request); dropped past the cache's byte limit
        collected = Collector(legacy=req.endpoint == "completions") if key is not None else None
        kept: list[bytes] | None = [] if key is not None else None
        room = self.cache.max_bytes

        async def events() -> AsyncIterator[bytes]:
            nonlocal kept, room
            tokens = None
            try:
                async for ev in _chain(reply.first, reply.events):
                    obj = event_json(ev) if b'"usage"' in ev else None
                    if obj is not None:
                        usage = usage_of(obj)
                        if usage:
                            tokens = self.settle_usage(ex, usage)
                            usage["cost_usd"] = round(outcome.cost_usd, 8)
                            ev = sse(obj)
                    if kept is not None:
                        kept.append(ev)
                        room -= len(ev)
                        if room < 0:
                            kept = None
                    if collected is not None:
                        collected.feed(ev)
                    if obj is not None and not req.wants_usage_chunk:
                        shaped = shape_event(obj, False)
                        if shaped is None:
                            continue  # we asked for the usage chunk; the client did not
                        ev = sse(shaped)
                    yield ev
                if collected is not None and kept is not None and collected.complete:
                    body = json.dumps(collected.completion()).encode()
                    self.cache.put(key, Cached(body, tuple(kept)))  # type: ignore[arg-type]
            except UpstreamFailure as fail:
                outcome.status, outcome.error = 502, f"stream {fail.kind}"
                await pool.failed(slot, f"stream {fail.kind}")
                yield _sse_error("the upstream stream broke off: " + fail.message)
            except (asyncio.CancelledError, GeneratorExit):
                outcome.status, outcome.error = 499, "client_closed"
                raise
            except Exception as exc:  # the connection broke mid-stream (HTTPError, OSError)
                outcome.status, outcome.error = 502, "stream_broken"
                await pool.failed(slot, "stream broken")
                yield _sse_error(f"the upstream stream broke off ({type(exc).__name__})")
            finally:
                if reply.close:
                    reply.close()
                if tokens is None and outcome.status < 400:
                    # no usage chunk came: charge the reservation rather than nothing
                    outcome.cost_usd = ticket.reserved  # type: ignore[union-attr]
                await self._end(ex, tokens)
                self.finish(ex)

        headers = {
            "X-Request-Id": outcome.request_id,
            "X-RSQL-Upstream": slot.key.alias,
            "X-RSQL-Cache": "miss",
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
        }
        return Reply(200, headers, events=events())

    def cache_reply(self, ex: Exchange, hit: Cached, quota: dict[str, str]) -> Reply:
        """The cached answer in the shape asked for, exactly as the provider gave it (its usage,
        cost_usd included, is the original's; X-RSQL-Cost-USD says what this request cost)."""
        outcome = ex.outcome
        outcome.cache_hit = True
        outcome.upstream = "cache"
        headers = {"X-Request-Id": outcome.request_id, "X-RSQL-Cache": "hit", "X-RSQL-Cost-USD": "0", **quota}
        self.finish(ex)
        if not ex.req.stream:
            return Reply(200, {**headers, "Content-Type": "application/json"}, body=hit.body)
        headers.update({"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        return Reply(200, headers, events=_replay(hit, ex.req.wants_usage_chunk))


async def _replay(hit: Cached, with_usage: bool) -> AsyncIterator[bytes]:
    """A cached answer as a stream: its own events when it was streamed, else the chunks its
    completion would have been streamed as; the usage chunk only when the client asked."""
    if hit.events is None:
        for ev in chunks_of(json.loads(hit.body), with_usage):
            yield ev
        return
    for ev in hit.events:
        if not with_usage and b'"usage"' in ev:
            obj = event_json(ev)
            if obj is not None:
                shaped = shape_event(obj, False)
                if shaped is None:
                    continue
                ev = sse(shaped)
        yield ev


async def _chain(first: bytes, rest: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
    yield first
    if rest is not None:
        async for ev in rest:
            yield ev


def _sse_error(message: str) -> bytes:
    return b"data: " + json.dumps({"error": {"message": message, "type": "upstream_error"}}).encode() + b"\n\n"
