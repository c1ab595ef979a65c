"""An upstream's answer, or a cached one, turned into the client's reply: usage settled, cost
charged, the request's hold ended (``request_state.Hold``), the answer cached.

The bill rule (docs/admins/limits-budgets.md, "The bill rule"): what the provider can bill for a request is
what the user is charged. A provider bills every token it generated, whether or not the client
stayed to read them, so an answer the client left is read on in the background for the usage
the provider reports (``adopt``, ``_drain``); when none comes, the prompt and one token per
streamed chunk are charged (``charge_estimate``), never less than the prompt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any

from .accounting.pricing import PriceBook
from .admission.hosted_tools import HostedTools
from .admission.limiter import rate_class
from .bodies import json_codec
from .bodies.cache import Cached, ClassCaches, MemoryCache
from .bodies.request import ChatRequest
from .bodies.streams import Collector, chunks_of, event_json, shape_event, sse
from .bodies.usage import UsageReading, count
from .courses.log import CourseLog
from .courses.transcript import read_event
from .errors import UpstreamFailure
from .interface import Reply
from .request_state import Arrival, Exchange, Outcomes
from .upstreams.pool import Pool
from .upstreams.prices import Price
from .upstreams.specs import UpstreamSpec
from .upstreams.transport.http11 import within
from .upstreams.transport.protocol import UpstreamAnswer

log = logging.getLogger("rsql.engine")


def cache_counts(usage: dict[str, Any], hour: bool) -> tuple[int, int, int]:
    """(written, read, written for 5 minutes) of an answer's prompt, as its chat-form usage
    says: the writes' lengths from Anthropic's ``cache_creation`` breakdown, else all of one
    length, an hour's where the request asked for any (`hour`), the dearer."""
    written = count(usage.get("cache_creation_input_tokens")) or 0
    details = usage.get("prompt_tokens_details")
    read = (count(details.get("cached_tokens")) or 0) if isinstance(details, dict) else 0
    made = usage.get("cache_creation")
    if isinstance(made, dict) and "ephemeral_5m_input_tokens" in made:
        return written, read, min(written, count(made.get("ephemeral_5m_input_tokens")) or 0)
    return written, read, 0 if hour else written


def audio_counts(usage: dict[str, Any], asked: tuple[bool, bool]) -> tuple[int, int]:
    """(of the prompt, of the completion) the tokens that were audio, as OpenAI's usage says
    (``prompt_tokens_details`` and ``completion_tokens_details``, ``audio_tokens``). Where the
    request sent sound or asked for it (`asked`: ``ChatRequest.audio``) and the usage does not
    say how much of that side was audio, or says it in no whole number, all of it was: the
    dearer reading, never the cheaper."""
    counts = []
    for side, sound in zip(("prompt_tokens", "completion_tokens"), asked, strict=True):
        details = usage.get(f"{side}_details")
        said = details.get("audio_tokens") if isinstance(details, dict) else None
        read = count(said) if said is not None else None if sound else 0
        counts.append(read if read is not None else count(usage.get(side)) or 0)
    return counts[0], counts[1]


class Replies:
    """Builds the JSON, stream and cache-hit replies; `outcomes` records each request's end."""

    def __init__(
        self,
        pool: Pool,
        prices: PriceBook,
        caches: ClassCaches,
        outcomes: Outcomes,
        *,
        drain_seconds: float = 30.0,
        hosted: HostedTools | None = None,
        course_log: CourseLog | None = None,
    ) -> None:
        # transcribes the requests of students of logged courses as their answers are built
        self.course_log = course_log or CourseLog({})
        self.pool = pool
        self.prices = prices
        self.hosted = hosted or HostedTools({})  # the price of a hosted tool's call
        self.caches = caches
        self.finish = outcomes.finish
        self.drain_seconds = drain_seconds
        # answers read on after their client left, each with what closes its upstream connection
        self.background: dict[asyncio.Task[Any], Callable[[], None] | None] = {}

    def _cache(self, ex: Exchange) -> MemoryCache:
        """The cache of the request's rate class: completions apart from the rest."""
        return self.caches.of(rate_class(ex.caller.client))

    async def close(self) -> None:
        """Stop reading abandoned answers; each still charges its estimate and gives back its hold."""
        tasks = list(self.background.items())
        for task, close in tasks:
            # the connection first: Python 3.11's asyncio.wait_for, which the upstream reads use,
            # can swallow a cancel that arrives as its read completes, and the read would go on
            if close is not None:
                close()
            task.cancel()
        await asyncio.gather(*(task for task, _ in tasks), return_exceptions=True)

    def _spawn(
        self, work: Coroutine[Any, Any, None], close: Callable[[], None] | None = None
    ) -> None:
        task = asyncio.ensure_future(work)
        self.background[task] = close  # held: the loop keeps only weak references to tasks
        task.add_done_callback(lambda t: self.background.pop(t, None))

    # -- what a request is charged when its answer did not come back whole -------------------

    def charge_worst_case(self, ex: Exchange) -> float:
        """An accepted attempt with no answer: the provider may generate up to the request's
        limits, so that is charged (at this key's price)."""
        req, outcome = ex.req, ex.outcome
        outcome.prompt_tokens, outcome.completion_tokens = req.prompt_tokens, req.completion_tokens
        outcome.cost_usd = (
            self._rates(ex).worst(req.prompt_tokens, req.completion_tokens, req.audio)
            + req.hosted_usd
        )
        return outcome.cost_usd

    def charge_estimate(self, ex: Exchange, chunks: int) -> float:
        """A stream that ended without its usage: the prompt (the proxy's generous estimate) and
        one token per streamed chunk (providers send about one token a chunk); a spoken answer's
        chunks carry many tokens of sound each, so it is charged its limit."""
        req, outcome = ex.req, ex.outcome
        chunks = req.completion_tokens if req.audio_out else chunks
        outcome.prompt_tokens, outcome.completion_tokens = req.prompt_tokens, chunks
        outcome.cost_usd = (
            self._rates(ex).worst(req.prompt_tokens, chunks, req.audio) + req.hosted_usd
        )
        return outcome.cost_usd

    def _rates(self, ex: Exchange) -> Price:
        """This key's price for the request: at its long-context rates when it was reserved at
        them, for its real prompt may be past the threshold that the estimate is not."""
        price = self.prices.price(ex.outcome.model, ex.hold.slot.key.alias)
        return price.longest if ex.req.long_context else price

    def adopt(self, ex: Exchange, pending: asyncio.Future[Any]) -> None:
        """The client left while `pending` (an upstream call) was under way: the provider
        answers, and bills, all the same, so the answer is read to its end in the background
        and charged; the request's hold ends then."""
        ex.handed_off = True
        ex.outcome.status, ex.outcome.error = 499, "client_closed"
        self._spawn(self._settle_pending(ex, pending))

    async def _settle_pending(self, ex: Exchange, pending: asyncio.Future[Any]) -> None:
        try:
            answer = await pending
        except UpstreamFailure as fail:
            # refused or never reached: nothing generated; accepted and silent: the worst case
            cost = self.charge_worst_case(ex) if fail.accepted else 0.0
            await ex.hold.end(cost, counted=fail.kind != "connect")
            self.finish(ex)
            return
        except asyncio.CancelledError:  # the host is closing: the provider has the request
            await ex.hold.end(self.charge_worst_case(ex))
            self.finish(ex)
            raise
        await self.pool.succeeded(ex.hold.slot, answer.headers, answer.head_wait)
        if answer.events is None:
            # settles, caches (a retry is then a cache hit), finishes
            await self.json_reply(ex, answer)
            return
        self.background[asyncio.current_task()] = answer.close  # type: ignore[index]  # runs in a task
        await self._drain(
            ex, answer, _chain(answer.first, answer.events), 0
        )  # counts each it reads

    async def _drain(
        self,
        ex: Exchange,
        answer: UpstreamAnswer,
        upstream: AsyncIterator[bytes],
        chunks: int,
        reader: UsageReading | None = None,
    ) -> None:
        """Read a stream its client left, up to ``drain_seconds``, for the usage the provider
        reports; then charge it (or the estimate), and end the request's hold. `reader`: the
        one that read the events the client got, so what they said counts (a Message's input
        and cache counts come in its first event, its output in its last)."""
        tokens = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_seconds
        try:
            reader = reader or ex.req.usage_reader()
            events = aiter(upstream)
            while True:
                # each read gets what is left of the deadline, so a stream that stalls and one
                # that keeps talking both end there (one timeout around the loop could lose
                # its cancel to a read's own as a chunk arrived, and asyncio.timeout_at needs
                # Python 3.11; 3.10's wait_for may swallow a shutdown's cancel as a read ends,
                # and the drain still ends at the deadline)
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError
                try:
                    ev = await within(anext(events), left)
                except StopAsyncIteration:
                    break
                chunks += 1
                obj = event_json(ev) if reader.wants(ev) else None
                usage = reader.read(obj) if obj is not None else None
                if usage:
                    tokens = self.settle_usage(ex, usage, reader.calls)
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # timed out, or the stream broke: the estimate stands in
            log.info(
                "request %s: no usage from the abandoned stream (%s); charging the estimate",
                ex.outcome.request_id,
                type(exc).__name__,
            )
        finally:
            if answer.close:
                answer.close()
            if tokens is None:
                self.charge_estimate(ex, chunks)
            await ex.hold.end(ex.outcome.cost_usd, tokens=tokens)
            self.finish(ex)

    def settle_usage(
        self, ex: Exchange, usage: dict[str, Any] | None, calls: dict[str, int] | None = None
    ) -> int | None:
        """The tokens and cost an upstream reported, onto the outcome; the tokens used.
        `calls`: the hosted tools' calls the answer showed (``UsageReading.calls``)."""
        if not usage:
            return None
        outcome = ex.outcome
        # read by the request's usage reader (``bodies.usage``): both counts are whole
        # numbers (count), or there is no usage
        outcome.prompt_tokens = count(usage.get("prompt_tokens")) or 0
        outcome.completion_tokens = count(usage.get("completion_tokens")) or 0
        price = self.prices.price(outcome.model, ex.hold.slot.key.alias)
        # the prompt's tokens read from the provider's cache are billed below the input price,
        # those written to it above (Anthropic: 1.25x for 5 minutes, 2x for an hour)
        written, read, written_5m = cache_counts(usage, ex.req.cache_hour)
        outcome.cache_read_tokens, outcome.cache_write_tokens = read, written
        audio = audio_counts(usage, ex.req.audio)
        outcome.audio_input_tokens, outcome.audio_output_tokens = audio
        outcome.cost_usd = price.cost(
            outcome.prompt_tokens,
            outcome.completion_tokens,
            written,
            cache_read_tokens=read,
            written_5m=written_5m,
            audio=audio,
        )
        outcome.uncached_usd = price.uncached(
            outcome.prompt_tokens, outcome.completion_tokens, audio
        )
        hosted = self.hosted_cost(ex.req, calls, ex.hold.slot.key.spec, outcome.model)
        outcome.cost_usd += hosted
        outcome.uncached_usd += hosted
        return outcome.prompt_tokens + outcome.completion_tokens

    def hosted_cost(
        self,
        req: ChatRequest,
        calls: dict[str, int] | None,
        spec: UpstreamSpec,
        model: str,
    ) -> float:
        """What the hosted tools the provider ran cost: each call at this request's price a
        call (a container's by its size), or, where the admin set no price for its kind, at
        what the upstream that answered (`spec`, public `model`) bills it when that is less
        (its API's ``call_price``: a web search at Anthropic and OpenAI, $0.01 where the kind's
        default is OpenAI's dearest path, $0.025). An answer that says nothing of the tools a
        request ran (a chat answer without ``executed_tools``) is charged what they were
        reserved."""
        if calls is None:
            return req.hosted_usd if req.hosted_prices else 0.0
        prices = dict(req.hosted_prices)
        dearest = max(prices.values(), default=0.0)
        total = 0.0
        for kind, n in calls.items():
            # a call of a kind the request did not name (a provider's own name for it, as
            # Groq's executed tools have) is charged as its dearest
            price = prices.get(kind, max(self.hosted.price(kind), dearest))
            own = self.hosted.of(kind).own_price
            billed = (
                None
                if own
                else req.call_price(kind, spec.provider, spec.provider_model(model), req.payload)
            )
            total += n * (price if billed is None else min(price, billed))
        return total

    async def json_reply(self, ex: Exchange, answer: UpstreamAnswer) -> Reply:
        outcome, slot = ex.outcome, ex.hold.slot
        body = answer.body
        try:
            obj = json_codec.loads(body)
        except ValueError:
            obj = None
        reader = ex.req.usage_reader()
        usage = reader.read(obj) if isinstance(obj, dict) else None
        tokens = self.settle_usage(ex, usage, reader.calls)
        if usage is not None:
            usage["cost_usd"] = round(outcome.cost_usd, 8)
            body = json_codec.dumps(obj)
        else:
            # an answer that says nothing of its usage is charged its reservation, as a stream
            # is: otherwise an upstream that omits usage would make every answer free
            outcome.cost_usd = ex.hold.admission.reserved
        await ex.hold.end(outcome.cost_usd, tokens=tokens)
        if ex.cache_key is not None and obj is not None:
            self._cache(ex).put(ex.cache_key, Cached(body))
        headers = {
            "X-Request-Id": outcome.request_id,
            "X-RSQL-Upstream": slot.key.alias,
            "X-RSQL-Cache": "miss",
            "X-RSQL-Cost-USD": f"{outcome.cost_usd:.8f}",
            "Content-Type": "application/json",
            **answer.passed,
        }
        self.course_log.answered(outcome, ex.req, headers, obj)
        self.finish(ex)
        return Reply(200, headers, body=body, answer=obj)

    async def stream_reply(self, ex: Exchange, answer: UpstreamAnswer) -> Reply:
        """The answer's events as the client reads them. The attempt's first byte is the key's
        success (``Pool.succeeded``: its window stamped, off the time to the first token, so
        never counted short), told once the first event is on its way, or on the stream's
        first way out before that, and always before its slot is given back. The events are
        started before they are handed out, so the request ends (charged, its hold given
        back) however they are dropped: closed before a read, or lost with the reply."""
        pool, req, outcome, hold, key = self.pool, ex.req, ex.outcome, ex.hold, ex.cache_key
        slot = hold.slot
        # a streamed answer is cached as its events (the same stream on a replay) and as the
        # completion they add up to (for a JSON request); dropped past the cache's byte limit
        collected = Collector(legacy=req.endpoint == "completions") if key is not None else None
        kept: list[bytes] | None = [] if key is not None else None
        cache = self._cache(ex)
        room = cache.max_bytes
        reader = req.usage_reader()
        # events in another API's shape go on as they came (event: lines kept); its cost is in
        # the X-RSQL-Cost-USD of its usage row, not written into them
        chat_shaped = not req.native

        answered = False

        async def settled() -> None:
            nonlocal answered
            if not answered:
                answered = True
                await pool.succeeded(slot, answer.headers, answer.head_wait)

        async def events() -> AsyncGenerator[bytes, None]:
            nonlocal kept, room
            tokens = None
            chunks = 0  # events read: what the provider generated, if it never says
            # the first event, then the rest, in one loop: no generator between the two
            ev, rest = answer.first, answer.events
            handed_off = False
            try:
                # where ``stream_reply`` starts this: an async generator closed or lost before
                # it started never runs, and its request would never end
                yield b""
                while True:
                    chunks += 1
                    obj = event_json(ev) if reader.wants(ev) else None
                    if obj is not None:
                        usage = reader.read(obj)
                        if usage:
                            tokens = self.settle_usage(ex, usage, reader.calls)
                            if chat_shaped:
                                usage["cost_usd"] = round(outcome.cost_usd, 8)
                                ev = sse(obj)
                        elif "usage" not in obj:  # read for its tools' calls: sent as it came
                            obj = None
                    if kept is not None:
                        kept.append(ev)
                        room -= len(ev)
                        if room < 0:
                            kept = None
                    if collected is not None:
                        collected.feed(ev)
                    if transcript is not None:  # a logged student's: the answer as it came
                        read_event(transcript, ev, req.endpoint)
                    out: bytes | None = ev
                    if obj is not None and not req.wants_usage_chunk:
                        shaped = shape_event(obj, False)
                        # None: the usage chunk, which we asked for and the client did not
                        out = None if shaped is None else sse(shaped)
                    if out is not None:
                        yield out
                    if not answered:  # the first event is on its way
                        await settled()
                    if rest is None:
                        break
                    try:
                        ev = await rest.__anext__()
                    except StopAsyncIteration:
                        break
                if collected is not None and kept is not None and collected.complete:
                    body = json_codec.dumps(collected.completion())
                    cache.put(key, Cached(body, tuple(kept)))  # type: ignore[arg-type]  # kept is a list only with a key
            except UpstreamFailure as fail:  # read past the first event: settled already
                outcome.status, outcome.error = 502, f"stream {fail.kind}"
                await pool.failed(slot, f"stream {fail.kind}", ex.caller.user)
                yield req.error_event("the upstream stream broke off: " + fail.message)
            except (asyncio.CancelledError, GeneratorExit):
                await settled()  # before the slot goes to the background's reading on
                outcome.status, outcome.error = 499, "client_closed"
                if tokens is None:
                    # the provider goes on generating, and billing: read on for its usage
                    handed_off = True
                    # dropped before its first event was read: that one is read on too
                    left = _chain(ev, rest) if not chunks else rest or _no_events()
                    self._spawn(self._drain(ex, answer, left, chunks, reader), answer.close)
                raise
            except Exception as exc:  # the connection broke mid-stream (HTTP11Error, OSError)
                await settled()
                outcome.status, outcome.error = 502, "stream_broken"
                await pool.failed(slot, "stream broken", ex.caller.user)
                yield req.error_event(f"the upstream stream broke off ({type(exc).__name__})")
            finally:
                await settled()
                if not handed_off:
                    if answer.close:
                        answer.close()
                    if tokens is None:
                        if outcome.status < 400:  # ended without a usage chunk: the reservation
                            outcome.cost_usd = hold.admission.reserved
                        else:  # broke off: what was generated until then
                            self.charge_estimate(ex, chunks)
                    await hold.end(outcome.cost_usd, tokens=tokens)
                    self.finish(ex)

        headers = {
            "X-Request-Id": outcome.request_id,
            "X-RSQL-Upstream": slot.key.alias,
            "X-RSQL-Cache": "miss",
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            **answer.passed,
        }
        transcript = self.course_log.begin(outcome, req, headers)
        stream = events()
        await anext(stream)  # started: to its first `yield` (above)
        return Reply(200, headers, events=stream)

    def cache_reply(
        self, arrival: Arrival, req: ChatRequest, hit: Cached, quota: dict[str, str]
    ) -> Reply:
        """The cached answer in the shape asked for, exactly as the provider gave it (its usage,
        cost_usd included, is the original's; X-RSQL-Cost-USD says what this request cost)."""
        outcome = arrival.outcome
        outcome.cache_hit = True
        outcome.upstream = "cache"
        headers = {
            "X-Request-Id": outcome.request_id,
            "X-RSQL-Cache": "hit",
            "X-RSQL-Cost-USD": "0",
            **quota,
        }
        self.course_log.answered(outcome, req, headers, body=hit.body)
        self.finish(arrival)
        if not req.stream:
            return Reply(200, {**headers, "Content-Type": "application/json"}, body=hit.body)
        headers.update({"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        return Reply(200, headers, events=_replay(hit, req.wants_usage_chunk))


async def _replay(hit: Cached, with_usage: bool) -> AsyncGenerator[bytes, None]:
    """A cached answer as a stream: its own events when it was streamed, else the chunks its
    completion would have been streamed as; the usage chunk only when the client asked."""
    if hit.events is None:
        for ev in chunks_of(json_codec.loads(hit.body), with_usage):
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


async def _no_events() -> AsyncIterator[bytes]:
    none: tuple[bytes, ...] = ()
    for ev in none:
        yield ev


async def _chain(first: bytes, rest: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
    yield first
    if rest is not None:
        async for ev in rest:
            yield ev
