"""What a model costs on an upstream: USD per million tokens in and out, the prompt cache's own
rates (a read, a 5-minute and a one-hour write), the audio rates of a model that hears or speaks,
and the long-context rates some providers bill past a prompt length; and the admin's ``prices``
read into them. The built-in table is ``accounting.pricing``'s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from ..errors import ConfigError, Problems

__all__ = ["LongContext", "Price", "parse_prices"]


@dataclass(frozen=True)
class LongContext:
    """A provider's long-context rates, USD per million tokens: once a request's prompt (cache
    reads and writes included) is past `above` tokens, the whole request is billed at them
    (Anthropic's 1M-token context, Gemini 2.5 Pro past 200K, OpenAI's long context)."""

    above: int
    input: float
    output: float
    cache_write: float | None = None  # None: the long input price
    cache_read: float | None = None  # None: the long input price
    cache_write_5m: float | None = None  # None: `cache_write`


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens, and the prompt cache's own rates.

    A provider bills a prompt's tokens three ways: read from its cache (Anthropic 0.1x input,
    OpenAI a tenth to a half), written to it (Anthropic 1.25x input for 5 minutes, 2x for an
    hour; OpenAI nothing more), or neither. A rate not given is the dearest it can be: a read
    at the input price, a 5-minute write at the one-hour rate, a write at the input price (an
    Anthropic upstream's admin price gets Anthropic's cache rates instead: ``parse_prices``)."""

    input: float
    output: float
    # prompt tokens written to a provider's prompt cache for an hour (the dearer write);
    # None: the input price
    cache_write: float | None = None
    long_context: LongContext | None = None
    cache_read: float | None = None  # prompt tokens read from the cache; None: the input price
    cache_write_5m: float | None = None  # written for 5 minutes; None: `cache_write`
    # audio tokens in and out (OpenAI bills them several times the text rates); None: not
    # priced, and a request with audio that way is refused under a budget (``ModelChoice``)
    audio_input: float | None = None
    audio_output: float | None = None

    def at(self, prompt_tokens: int) -> Price:
        """The flat rates a request whose prompt is `prompt_tokens` long is billed at."""
        lc = self.long_context
        if lc is not None and prompt_tokens > lc.above:
            return self.longest
        return self if lc is None else replace(self, long_context=None)

    @property
    def longest(self) -> Price:
        """The flat rates of a request past the long-context threshold (these, without one)."""
        lc = self.long_context
        if lc is None:
            return self
        return Price(
            lc.input,
            lc.output,
            lc.cache_write,
            cache_read=lc.cache_read,
            cache_write_5m=lc.cache_write_5m,
            audio_input=self.audio_input,
            audio_output=self.audio_output,
        )

    def cost(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cache_write_tokens: int = 0,
        *,
        cache_read_tokens: int = 0,
        written_5m: int | None = None,
        audio: tuple[int, int] = (0, 0),
    ) -> float:
        """What an answer costs: `prompt_tokens` in all, of which `cache_write_tokens` were
        written to the cache (`written_5m` of them for 5 minutes, the rest for an hour; None:
        all for an hour, the dearer) and `cache_read_tokens` read from it; `audio`: how many of
        the prompt's and of the completion's tokens were audio, at the audio rates. A prompt
        past the long-context threshold bills the whole request at those rates."""
        rates = self.at(prompt_tokens)
        written = min(max(0, cache_write_tokens), prompt_tokens)
        read = min(max(0, cache_read_tokens), prompt_tokens - written)
        short = 0 if written_5m is None else min(max(0, written_5m), written)
        hour = rates.input if rates.cache_write is None else rates.cache_write
        five = hour if rates.cache_write_5m is None else rates.cache_write_5m
        hit = rates.input if rates.cache_read is None else rates.cache_read
        return (
            (prompt_tokens - written - read) * rates.input
            + short * five
            + (written - short) * hour
            + read * hit
            + completion_tokens * rates.output
            + rates._audio_extra(prompt_tokens, completion_tokens, audio)
        ) / 1_000_000

    def uncached(
        self, prompt_tokens: int, completion_tokens: int, audio: tuple[int, int] = (0, 0)
    ) -> float:
        """What the same answer would cost with no prompt cache: every prompt token at the
        input price (what a cache saves is the difference)."""
        rates = self.at(prompt_tokens)
        return (
            prompt_tokens * rates.input
            + completion_tokens * rates.output
            + rates._audio_extra(prompt_tokens, completion_tokens, audio)
        ) / 1_000_000

    def _audio_extra(self, prompt: int, completion: int, audio: tuple[int, int]) -> float:
        """What `audio` (tokens of the prompt, of the completion) adds over their text rates,
        times a million: an audio rate not given adds nothing (the request was refused under a
        budget, or the admin let unpriced costs through)."""
        heard, spoken = (
            min(max(0, n), most) for n, most in zip(audio, (prompt, completion), strict=True)
        )
        extra = 0.0
        if self.audio_input is not None:
            extra += heard * (self.audio_input - self.input)
        if self.audio_output is not None:
            extra += spoken * (self.audio_output - self.output)
        return extra

    def worst(
        self, prompt_tokens: int, completion_tokens: int, audio: tuple[bool, bool] = (False, False)
    ) -> float:
        """The most an answer of these sizes can cost: every prompt token may be a cache write
        (at the rates of a prompt that long; a reservation that must allow for a longer one
        asks with ``longest``); `audio`: whether the request sends audio and asks for a spoken
        answer, when every prompt token, every completion token, may be audio."""
        rates = self.at(prompt_tokens)
        dear = max(rates.input, rates.cache_write or 0.0, rates.cache_write_5m or 0.0)
        heard, spoken = audio
        if heard:
            dear = max(dear, rates.audio_input or 0.0)
        out = max(rates.output, rates.audio_output or 0.0) if spoken else rates.output
        return (prompt_tokens * dear + completion_tokens * out) / 1_000_000


_CACHE_FIELDS = ("cache_read", "cache_write_5m", "cache_write")
_AUDIO_FIELDS = ("audio_input", "audio_output")
_PRICE_FIELDS = ("input", "output", *_CACHE_FIELDS, *_AUDIO_FIELDS, "long_context")
_PRICE_SHAPE = (
    "{'input': USD per 1M tokens, 'output': ..., optional 'cache_read', 'cache_write_5m', "
    "'cache_write' (an hour's write), 'audio_input', 'audio_output': ..., optional "
    "'long_context': {'above': prompt tokens, "
    "'input': ..., 'output': ..., optional 'cache_read', 'cache_write_5m', 'cache_write'}}"
)


def parse_prices(
    value: Any, *, where: str, multipliers: tuple[float, float, float] | None = None
) -> dict[str, Price]:
    """An upstream's ``prices``. `multipliers`: what its provider bills a token read from its cache
    and one written to it, as multiples of input (a read, a 5-minute write, an hour's; the
    upstream's kind says), for the rates a price leaves out: an admin's ``{"input", "output"}``
    for a Claude model then charges a read and a write what Anthropic bills for them, not the
    input price."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where}: expected {{model: {{'input': x, 'output': y}}}}, got {value!r}"
        )
    problems = Problems()  # every model's price judged, not only the first wrong one
    prices = {
        str(model): problems.run(partial(_price, p, f"{where}[{model!r}]", multipliers), None)
        for model, p in value.items()
    }
    problems.refuse()
    return {model: price for model, price in prices.items() if price is not None}


def _usd(raw: Mapping[str, Any], name: str, where: str, *, required: bool = True) -> float | None:
    """A rate in USD per 1M tokens: a number >= 0."""
    value = raw.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected {_PRICE_SHAPE}, got {dict(raw)!r}")
    if not value >= 0:
        raise ConfigError(f"{where}[{name!r}]: prices cannot be negative, got {value!r}")
    return float(value)


def _cache_rates(
    raw: Mapping[str, Any], inp: float, where: str
) -> tuple[float | None, float | None, float | None]:
    """(read, 5-minute write, one-hour write): a read is never dearer than input (a reservation
    counts every prompt token at the dearest of input and the writes)."""
    problems = Problems()
    read, short, hour = (
        problems.run(partial(_usd, raw, name, where, required=False), None)
        for name in _CACHE_FIELDS
    )
    if read is not None and read > inp:
        problems.append(
            f"{where}: 'cache_read' ({read}) cannot be above 'input' ({inp}): a provider bills a "
            "read from its cache below the input price"
        )
    problems.refuse()
    return read, short, hour


def _price(raw: Any, where: str, multipliers: tuple[float, float, float] | None = None) -> Price:
    """One model's price; ConfigProblems names each of its wrong fields. `multipliers`: the
    provider's, of input, for a read, a 5-minute and an hour's write, for the cache rates not
    given."""
    if not isinstance(raw, Mapping) or set(raw) - set(_PRICE_FIELDS):
        raise ConfigError(f"{where}: expected {_PRICE_SHAPE}, got {raw!r}")
    problems = Problems()
    inp, out = (problems.run(partial(_usd, raw, name, where), None) for name in ("input", "output"))
    if inp is None or out is None:  # what the rest is judged against is missing
        problems.refuse()
    assert inp is not None and out is not None
    read, short, write = problems.run(partial(_cache_rates, raw, inp, where), (None, None, None))
    heard, spoken = (
        problems.run(partial(_usd, raw, name, where, required=False), None)
        for name in _AUDIO_FIELDS
    )
    if multipliers is not None:
        read = multipliers[0] * inp if read is None else read
        short = multipliers[1] * inp if short is None else short
        write = multipliers[2] * inp if write is None else write
    long = raw.get("long_context")
    cache = (read, short, write)
    ranged = (
        None if long is None else problems.run(partial(_long, long, inp, out, cache, where), None)
    )
    problems.refuse()
    return Price(
        inp,
        out,
        write,
        ranged,
        cache_read=read,
        cache_write_5m=short,
        audio_input=heard,
        audio_output=spoken,
    )


def _long(
    raw: Any,
    inp: float,
    out: float,
    cache: tuple[float | None, float | None, float | None],
    where: str,
) -> LongContext:
    """A price's long-context rates: never below its standard ones (a worst case must stay
    one); a cache rate not given costs what the standard one does relative to input (the
    providers' multipliers apply on top of long-context prices)."""
    where = f"{where}['long_context']"
    if not isinstance(raw, Mapping) or set(raw) - {"above", "input", "output", *_CACHE_FIELDS}:
        raise ConfigError(f"{where}: expected {_PRICE_SHAPE}, got {raw!r}")
    above = raw.get("above")
    if isinstance(above, bool) or not isinstance(above, int) or above < 1:
        raise ConfigError(
            f"{where}: 'above' must be the prompt tokens past which the provider bills these "
            f"rates (Anthropic, Gemini: 200000), got {above!r}"
        )
    long_in, long_out = _usd(raw, "input", where), _usd(raw, "output", where)
    assert long_in is not None and long_out is not None  # required
    given = _cache_rates(raw, long_in, where)
    read, short, write = (
        mine if mine is not None or std is None or inp <= 0 else std * long_in / inp
        for mine, std in zip(given, cache, strict=True)
    )
    if long_in < inp or long_out < out or (write or long_in) < (cache[2] or inp):
        raise ConfigError(f"{where}: long-context rates cannot be below the standard ones")
    return LongContext(above, long_in, long_out, write, read, short)
