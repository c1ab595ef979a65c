"""Prices of common models, USD per million tokens (input, output, and the prompt cache's).

From the providers' public price lists (Groq, OpenAI, Anthropic, Google) as of late 2025
(Claude Sonnet 5.5: as Claude Code 2.1.330 and LiteLLM 1.110 price it, late 2026); override
per upstream with ``"prices": {model: {"input": x, "output": y}}`` when yours differ.
A model a provider bills dearer past a prompt length (Gemini 2.5 Pro past 200K tokens; Claude
Sonnet 4 and 4.5 with the 1M-token context beta) carries those rates too (``long_context``):
the whole request is billed at them once its prompt, cache reads and writes included, is past
the threshold. Claude Sonnet 5.5 bills its whole 1M-token window at one rate. Names a provider
retires (claude-sonnet-4-5 on 2026-11-30) stay: an upstream may still serve them until then.
A model is looked up by its public name, then by the provider's own (an Azure deployment is
priced as the public model it stands for). A self-hosted server (``max_in_flight``) has no
price unless its upstream sets one: its model names are the admin's and may match a hosted
model's by chance. A model missing from
both has no known price: while a budget applies the engine refuses it (``unpriced_models =
"deny"``, the default) or lets it cost 0 (``"free"``, logged once per model). The local
``llama_cpp`` provider runs on our own CPU and is always free.
"""

from __future__ import annotations

import logging

from ..upstreams.pool import MEMO_MODELS
from ..upstreams.prices import LongContext, Price
from ..upstreams.specs import UpstreamSpec

log = logging.getLogger("rsql.engine")


def _anthropic(inp: float, out: float, long: tuple[float, float] | None = None) -> Price:
    """Anthropic's prices from its input and output rates: a cache read 0.1x input, a 5-minute
    write 1.25x and a one-hour write 2x (its prompt caching page), and past 200K prompt tokens
    (the 1M-token context beta) `long`'s rates with the same multipliers on top."""
    lc = None
    if long is not None:
        lin, lout = long
        lc = LongContext(200_000, lin, lout, 2 * lin, round(0.1 * lin, 6), 1.25 * lin)
    return Price(inp, out, 2 * inp, lc, cache_read=round(0.1 * inp, 6), cache_write_5m=1.25 * inp)


PRICES: dict[str, Price] = {
    # Groq: a cached prompt at half the input price on the gpt-oss models only (its prompt
    # caching page); no discount on the others
    "llama-3.1-8b-instant": Price(0.05, 0.08),
    "llama-3.3-70b-versatile": Price(0.59, 0.79),
    "meta-llama/llama-4-scout-17b-16e-instruct": Price(0.11, 0.34),
    "meta-llama/llama-4-maverick-17b-128e-instruct": Price(0.20, 0.60),
    "openai/gpt-oss-20b": Price(0.10, 0.50, cache_read=0.05),
    "openai/gpt-oss-120b": Price(0.15, 0.75, cache_read=0.075),
    "qwen/qwen3-32b": Price(0.29, 0.59),
    "gemma2-9b-it": Price(0.20, 0.20),
    # OpenAI: cached input at its own price, writes at none more (its pricing page)
    "gpt-4o": Price(2.50, 10.00, cache_read=1.25),
    "gpt-4o-mini": Price(0.15, 0.60, cache_read=0.075),
    "gpt-4.1": Price(2.00, 8.00, cache_read=0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, cache_read=0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, cache_read=0.025),
    "gpt-5": Price(1.25, 10.00, cache_read=0.125),
    "gpt-5-mini": Price(0.25, 2.00, cache_read=0.025),
    "gpt-5-nano": Price(0.05, 0.40, cache_read=0.005),
    "o4-mini": Price(1.10, 4.40, cache_read=0.275),
    # OpenAI embeddings: input tokens only
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
    "text-embedding-ada-002": Price(0.10, 0.0),
    # Anthropic (past 200K prompt tokens, which only the 1M-token context beta allows: 2x
    # input, 1.5x output)
    "claude-opus-4-1": _anthropic(15.00, 75.00),
    "claude-sonnet-5-5": _anthropic(2.00, 10.00),
    "claude-sonnet-4-5": _anthropic(3.00, 15.00, (6.00, 22.50)),
    "claude-sonnet-4": _anthropic(3.00, 15.00, (6.00, 22.50)),
    "claude-haiku-4-5": _anthropic(1.00, 5.00),
    "claude-3-5-haiku-latest": _anthropic(0.80, 4.00),
    # Google Gemini (2.5 Pro: a prompt past 200K tokens bills the whole request dearer); a
    # cached prompt at a tenth of the input price, or a quarter (its pricing page)
    "gemini-2.5-pro": Price(
        1.25, 10.00, None, LongContext(200_000, 2.50, 15.00, cache_read=0.25), cache_read=0.125
    ),
    "gemini-2.5-flash": Price(0.30, 2.50, cache_read=0.03),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, cache_read=0.01),
    "gemini-2.0-flash": Price(0.10, 0.40, cache_read=0.025),
    # the local model runs on our own CPU
    "smollm2-135m": Price(0.0, 0.0),
}

FREE = Price(0.0, 0.0)


_MAX_WARNED = 256  # model names are caller text: warn about a bounded number of them


class PriceBook:
    """Looks up the price of (upstream, model): the upstream's own table, then ours."""

    def __init__(self, specs: tuple[UpstreamSpec, ...]) -> None:
        self.specs = {s.name: s for s in specs}
        self._warned: set[str] = set()
        # a model's prices on its upstreams, asked several times a request: remembered unless
        # an upstream discovers its models (what it serves changes when it answers)
        self._fixed = not any(s.discover for s in specs)
        self._prices: dict[str, list[Price | None]] = {}
        self._max: dict[str, Price | None] = {}

    def known(self, model: str, upstream: str | None = None) -> Price | None:
        """The price, or None when neither the upstream nor the built-in table knows one."""
        spec = self.specs.get(upstream or "")
        own = spec.provider_model(model) if spec is not None else model
        if spec is not None:
            for name in (model, own):
                if name in spec.prices:
                    return spec.prices[name]
            if spec.local:
                return FREE
            if spec.max_in_flight:
                return None  # self-hosted: only the admin's price (unpriced_models decides)
        for name in (model, own):
            found = PRICES.get(name) or PRICES.get(name.split("/")[-1])
            if found is not None:
                return found
        return None

    def price(self, model: str, upstream: str | None = None) -> Price:
        """What an answer is charged: an unknown price counts as 0 (logged once per model)."""
        found = self.known(model, upstream)
        if found is None:
            if model not in self._warned and len(self._warned) < _MAX_WARNED:
                self._warned.add(model)
                log.warning(
                    "no price known for model %r: it costs 0 and budgets do not see it; set "
                    "'prices' on its upstream",
                    model,
                )
            return FREE
        return found

    def max_price(self, model: str) -> Price | None:
        """The dearest upstream serving `model`: what a reservation must assume.

        None when an upstream that may serve it has no known price: its worst case is unknown.
        A model no upstream serves costs nothing (the pool refuses it with a 404).
        """
        if model in self._max:
            return self._max[model]
        prices = self._serving(model)
        if not prices:
            return FREE
        if any(p is None for p in prices):
            dearest = None
        else:
            known = [p for p in prices if p is not None]
            heard, spoken = (_dearest_rate(known, rate) for rate in ("audio_input", "audio_output"))
            dearest = Price(
                *_dearest(known), _dearest_long(known), audio_input=heard, audio_output=spoken
            )
        if model in self._prices:  # remembered there: so here
            self._max[model] = dearest
        return dearest

    def lacks_long_context(self, model: str) -> bool:
        """Whether an upstream serving `model` prices it with no long-context rates (one with
        no price at all is the unpriced models' rule, ``unpriced_models``)."""
        return any(p is not None and p.long_context is None for p in self._serving(model))

    def missing_audio_rate(self, model: str, audio: tuple[bool, bool]) -> str:
        """The audio rate ("audio_input", "audio_output") a request that sends sound and asks
        for a spoken answer (`audio`: ``ChatRequest.audio``) needs and an upstream serving
        `model` prices it without, or '' (one with no price at all is the unpriced models'
        rule)."""
        for needed, rate in zip(audio, ("audio_input", "audio_output"), strict=True):
            serving = self._serving(model) if needed else []
            if any(p is not None and getattr(p, rate) is None for p in serving):
                return rate
        return ""

    def _serving(self, model: str) -> list[Price | None]:
        found = self._prices.get(model)
        if found is None:
            found = [self.known(model, s.name) for s in self.specs.values() if s.serves(model)]
            if found and self._fixed and len(self._prices) < MEMO_MODELS:
                self._prices[model] = found
        return found

    def configured_models(self, default_model: str = "") -> frozenset[str]:
        """Model ids named in the configuration: the only ones metric labels may carry."""
        out = {m for s in self.specs.values() for m in (*s.models, *s.prices) if m != "*"}
        if default_model:
            out.add(default_model)
        return frozenset(out)


def _dearest(prices: list[Price]) -> tuple[float, float, float | None]:
    """(input, output, cache write): the dearest of each among `prices`."""
    # the dearest write of either length: a reservation counts every prompt token at it
    writes = [w for p in prices for w in (p.cache_write, p.cache_write_5m) if w is not None]
    return (
        max(p.input for p in prices),
        max(p.output for p in prices),
        max(writes) if writes else None,
    )


def _dearest_rate(prices: list[Price], rate: str) -> float | None:
    """The dearest of an optional rate among `prices`, or None where none gives it."""
    given = [r for p in prices if (r := getattr(p, rate)) is not None]
    return max(given) if given else None


def _dearest_long(prices: list[Price]) -> LongContext | None:
    """The long-context rates a request may be billed at among `prices`: from the lowest
    threshold, the dearest of each rate (a price without them stays at its own past it)."""
    thresholds = [p.long_context.above for p in prices if p.long_context is not None]
    if not thresholds:
        return None
    return LongContext(min(thresholds), *_dearest([p.longest for p in prices]))
