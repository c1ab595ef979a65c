"""A request body's bytes as JSON, with a cost no shape of body can make large.

Strict: nesting, duplicate keys, NaN, numbers out of range, lone surrogates and bad UTF-8 are
each a 400 naming what is wrong. Bounded: the work done in Python per object and array (the
duplicate-key hook, the depth walk) is what a crafted body multiplies (4 MiB of ``{}`` is 1.4
million objects, about a second of the event loop), so the objects and arrays are counted
first in native code (``bytes.count``) and a body with more than ``max_json_containers`` is
never parsed here: ``Engine.decode_body`` counts it exactly in the worker process (most of
those brackets may be text inside strings, as in a prompt holding code) and parses it only if
the count is within the cap. Everything else that scans the whole body is native too: the
parse itself (the ``json`` C decoder), the surrogate and out-of-range checks (regular
expressions and the C encoder), never a Python loop over strings or numbers.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest, RateLimited

# The Python work per object (the duplicate-key hook, the depth walk) is about half a
# microsecond, and the C decoder's per value about 30 ns: the caps keep a body's parse within
# some 30 ms of the loop whatever its shape (bench/bench_proxy.py measures it).
MAX_CONTAINERS = 20_000  # objects and arrays
# array items and object members: 400,000 takes OpenAI's largest embeddings request (300,000
# tokens as token ids) with room to spare
MAX_ITEMS = 400_000
INLINE_BYTES = 16_384  # a body this small parses in well under a millisecond, whatever its shape
MAX_WAITING = 8  # a user's large bodies waiting for their parse at once; past it a 429
_CONTAINER_TYPES = frozenset((dict, list))
# \ud800-\udfff escapes: the only way JSON text can carry a surrogate; valid as a high + low
# pair (an emoji, as json.dumps writes one), not alone, which cannot be encoded again
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE_PAIR = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")
# The only numbers that parse to an infinite float: a 3-digit exponent, or 300+ digits. Looked
# for in a copy where every digit is "0", e and E are "e", "+" stays and every other byte is a
# space, by substring search: both in C at about 2 ns a byte, where the regular expression
# [eE]\+?\d{3}|\d{300} took 20 (3 ms of the event loop for a 160 KB prompt; measured).
_NUMBER_SHAPES = bytes(
    0x30 if 0x30 <= b <= 0x39 else 0x65 if b in b"eE" else 0x2B if b == 0x2B else 0x20
    for b in range(256)
)
_LONG_DIGITS = b"0" * 300


def huge_number(raw: bytes) -> bool:
    """Whether `raw` may hold a number too large for a float (text inside strings included)."""
    shapes = raw.translate(_NUMBER_SHAPES)
    return b"e000" in shapes or b"e+000" in shapes or _LONG_DIGITS in shapes


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"{}[]")
_STEP = [1 if b in b"{[" else -1 if b in b"}]" else 0 for b in range(256)]  # a bracket's depth


@dataclass(frozen=True)
class Shape:
    """What a body's parse may cost: its objects and arrays, and its array items and object
    members (the commas between them, and one more per non-empty container)."""

    containers: int
    items: int

    @classmethod
    def bound(cls, raw: bytes) -> Shape:
        """An upper bound, in native code: brackets and commas, those inside strings too."""
        containers = raw.count(b"{") + raw.count(b"[")
        return cls(containers, raw.count(b",") + containers)

    def refusal(self, max_containers: int, max_items: int) -> BadRequest | None:
        if self.containers > max_containers:
            return BadRequest(
                f"request body holds {self.containers} JSON objects and arrays; at most "
                f"{max_containers} are accepted (an admin can raise "
                "c.RSQLProxy.max_json_containers)",
                code="json_too_complex",
            )
        if self.items > max_items:
            return BadRequest(
                f"request body holds {self.items} JSON array items and object members; at most "
                f"{max_items} are accepted (an admin can raise c.RSQLProxy.max_json_items)",
                code="json_too_complex",
            )
        return None


class TooComplex(BadRequest):
    """The body may be past the caps: its brackets and commas (text inside strings included)
    number more than they allow. Counted exactly off the loop before it is refused."""

    def __init__(self, bound: Shape, refusal: BadRequest) -> None:
        super().__init__(refusal.message, code="json_too_complex")
        self.bound = bound


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:60]!r}")
            seen.add(key)
    return obj


# One decoder for every body: ``json.loads`` with a hook builds a new ``JSONDecoder`` (and its
# C scanner) for each call: a chat completion's body took 14 µs that way, 9 µs this way (timeit).
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)


# JSON on the wire is UTF-8 (RFC 8259, section 8.1), and every check above the parse (the
# bracket and comma counts, the surrogate and huge-number scans) reads the bytes as UTF-8 or
# ASCII. ``json.loads`` would also take UTF-16 and UTF-32 by their first bytes, which those
# checks misread (a UTF-16 body of 600,000 objects passed a cap of 20,000): such a body is
# refused, not transcoded, since no client sends one. A UTF-8 byte order mark may be ignored
# (the RFC's words), as ``json.loads`` ignores it.
_UTF8 = ("utf-8", "utf-8-sig")


def not_utf8(raw: bytes) -> BadRequest | None:
    """The 400 for a body whose first bytes say it is UTF-16 or UTF-32 (a NUL among the first
    four, or their byte order marks), or None."""
    if json.detect_encoding(raw[:4]) in _UTF8:
        return None
    return BadRequest(
        "request body is not valid JSON: it is not UTF-8 (JSON is sent as UTF-8, RFC 8259, "
        "section 8.1); its first bytes are those of UTF-16 or UTF-32"
    )


def _loads(raw: bytes) -> Any:
    """``json.loads(raw, ...)`` with `_DECODER`, for a body already known to be UTF-8 (a BOM
    dropped, as ``json.loads`` drops it)."""
    return _DECODER.decode(raw.decode(json.detect_encoding(raw[:4]), "surrogatepass"))


def lone_surrogate(raw: bytes) -> int | None:
    """Where a surrogate escape stands alone in `raw` (a byte offset), or None."""
    if _SURROGATE_ESCAPE.search(raw) is None:
        return None
    # an escaped backslash ("\\\\") starts no escape; pairs are text. Both are blanked at equal
    # length, so what is left is a lone escape and its offset is the body's own
    text = _SURROGATE_PAIR.sub(b" " * 12, raw.replace(b"\\\\", b"  "))
    found = _SURROGATE_ESCAPE.search(text)
    return found.start() if found is not None else None


def decode_json(
    raw: bytes,
    *,
    max_depth: int = 64,
    max_containers: int = MAX_CONTAINERS,
    max_items: int = MAX_ITEMS,
    counted: bool = False,
) -> Any:
    """Parse a request body, or raise ``BadRequest``: never anything else, whatever the bytes.
    Raises ``TooComplex`` when `raw` may hold more objects and arrays, or items, than the caps
    allow; `counted`: the caller counted them exactly (``exact_shape``), and they fit."""
    if not raw.strip():
        raise BadRequest("request body is empty; send a JSON object")
    refusal = not_utf8(raw)
    if refusal is not None:  # before any count: each reads the bytes as UTF-8
        raise refusal
    # no deeper than it has objects and arrays: with no more brackets than `max_depth` (those
    # in strings too) the depth walk has nothing to find, and most bodies are so
    shallow = False
    if not counted:
        bound = Shape.bound(raw)
        refusal = bound.refusal(max_containers, max_items)
        if refusal is not None:
            raise TooComplex(bound, refusal)
        shallow = bound.containers <= max_depth
    try:
        obj = _loads(raw)
    except RecursionError:  # nesting in the hundreds: json's C decoder recurses
        raise BadRequest(f"request body is nested more than {max_depth} levels deep") from None
    except ValueError as exc:  # includes invalid UTF-8 (UnicodeDecodeError)
        why = str(exc)
        if "integer string conversion" in why:
            why = "a number has too many digits"
        raise BadRequest(f"request body is not valid JSON: {why[:200]}") from None
    at = lone_surrogate(raw)
    if at is not None:
        raise BadRequest(
            f"request body holds a lone UTF-16 surrogate (\\ud800-\\udfff) at byte {at}, which "
            "is not text"
        )
    if huge_number(raw):
        try:
            json.dumps(obj, allow_nan=False)  # C: finds an infinite float wherever it is
        except ValueError:
            raise BadRequest(
                "request body is not valid JSON: a number is out of range (too large for a "
                "64-bit float)"
            ) from None
    if not shallow:
        _check_depth(obj, max_depth)
    return obj


def exact_shape(raw: bytes, max_depth: int) -> tuple[Shape, int]:
    """`raw`'s brackets and commas outside its strings, and how deep its brackets nest (counted
    up to `max_depth` + 1): run in the worker process, for a body whose native bound is past the
    caps. Linear for every input, in native code: a pattern that skips strings retries from
    every quote of a run of ``\\"`` that never closes (32 KB of them took 2 s, 4 MiB hours)."""
    # escapes taken left to right, as a JSON reader takes them: escaped backslashes, then escaped
    # quotes; every quote left opens or closes a string, so every other piece is outside them
    plain = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = b"".join(plain.split(b'"')[::2])
    brackets = structure.translate(None, delete=_NOT_BRACKETS)
    # the deepest running sum of +1 per opening bracket and -1 per closing one, in C
    depth = max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)
    return Shape.bound(structure), min(depth, max_depth + 1)


@dataclass
class BodyDecoder:
    """Request bodies as JSON, each user's large ones one at a time.

    `offload`: runs a function in the worker process in a user's turn (``Offload.run``). A body
    past ``INLINE_BYTES`` waits for its user's previous one to be parsed, then for one turn of
    the event loop, so many bodies sent at once by one user are parsed one per turn, with
    everyone else's work in between, not back to back."""

    offload: Callable[..., Awaitable[Any]]
    max_depth: int = 64
    max_containers: int = MAX_CONTAINERS
    max_items: int = MAX_ITEMS

    def __post_init__(self) -> None:
        self._turns: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def _decode(self, raw: bytes, counted: bool = False) -> Any:
        return decode_json(
            raw,
            max_depth=self.max_depth,
            max_containers=self.max_containers,
            max_items=self.max_items,
            counted=counted,
        )

    async def decode(self, raw: bytes, user: str) -> Any:
        if len(raw) <= INLINE_BYTES:
            try:
                return self._decode(raw)
            except TooComplex:
                pass  # a small body can only be past caps an admin set very low: counted below
        lock, waiting = self._turns.setdefault(user, (asyncio.Lock(), [0]))
        if waiting[0] >= MAX_WAITING:
            raise RateLimited(
                f"{waiting[0]} of your request bodies are waiting to be read; send fewer at once",
                retry_after=1,
                limit="request bodies being read at once",
            )
        waiting[0] += 1
        try:
            async with lock:
                await asyncio.sleep(0)  # the others' ready work first: one large parse a turn
                try:
                    return self._decode(raw)
                except TooComplex:
                    # most brackets may be text in strings (code in a prompt): counted exactly
                    # in the worker, off the loop, before the body is refused or parsed
                    exact, depth = await self.offload(user, exact_shape, raw, self.max_depth)
                    if depth > self.max_depth:
                        raise BadRequest(
                            f"request body is nested more than {self.max_depth} levels deep"
                        ) from None
                    refusal = exact.refusal(self.max_containers, self.max_items)
                    if refusal is not None:
                        raise refusal from None
                    return self._decode(raw, counted=True)
        finally:
            waiting[0] -= 1
            if not waiting[0]:
                self._turns.pop(user, None)


def _containers(values: Any) -> Any:
    """The objects and arrays among `values`, picked out in C (itertools, map and type): a
    Python loop over 2 million numbers would take a fifth of a second."""
    return itertools.compress(values, map(_CONTAINER_TYPES.__contains__, map(type, values)))


def _check_depth(obj: Any, max_depth: int) -> None:
    """Depth (a container inside a container ... counts one per level); iterative, so no input
    can exhaust the stack, and in Python over containers only (at most ``max_containers``)."""
    tops = obj.items() if isinstance(obj, dict) else [(None, obj)]
    for name, value in tops:
        if type(value) not in _CONTAINER_TYPES:
            continue
        where = "request body" if name is None else f"{name[:60]!r}"
        stack = [(value, 2 if name is not None else 1)]
        while stack:
            node, depth = stack.pop()
            if depth > max_depth:
                raise BadRequest(
                    f"{where} is nested more than {max_depth} levels deep",
                    extra={"param": name} if name is not None else None,
                )
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in _containers(children))
