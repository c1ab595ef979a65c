"""Response cache for deterministic requests: exact match on (endpoint, model, every parameter).

Only requests that would give the same answer again are cached: temperature 0 (embeddings
always), or an explicit ``X-RSQL-Cache-Control: cache`` from the client. Bounded in entries and
bytes, with a TTL; least recently used entries go first.

An entry keeps the answer as the client got it: the JSON body, and for a streamed answer also
its events, so a stream replayed to a stream is the same stream, and either shape can be made
from the other (``answers``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Fields that change how an answer is delivered or attributed, not what it says; every other
# field (tools, tool_choice, response_format, n, logprobs, seed, service_tier, ...) is keyed.
_IGNORED = {"stream", "stream_options", "user", "metadata", "store"}


@dataclass(frozen=True)
class Cached:
    """One cached answer: its JSON body, and the SSE events when it was streamed."""

    body: bytes
    events: tuple[bytes, ...] | None = None

    def __len__(self) -> int:
        return len(self.body) + sum(len(e) for e in self.events or ())


def cache_key(payload: dict[str, Any], endpoint: str = "chat/completions") -> str:
    material = {k: v for k, v in payload.items() if k not in _IGNORED}
    material["\x00endpoint"] = endpoint  # not a field name any client can send
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def cacheable(payload: dict[str, Any], forced: bool, endpoint: str = "chat/completions") -> bool:
    if endpoint == "embeddings":  # the same input always gives the same vectors
        return True
    if endpoint in ("responses", "messages"):  # answers in those APIs' shapes are not cached
        return False
    if payload.get("n", 1) != 1 or payload.get("best_of", 1) != 1:
        return False
    return forced or payload.get("temperature") == 0


class MemoryCache:
    def __init__(
        self,
        *,
        max_entries: int = 1000,
        max_bytes: int = 64 * 2**20,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, Cached]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> Cached | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, body = item
        if expires <= self.clock():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return body

    def put(self, key: str, body: Cached) -> None:
        if self.max_entries <= 0 or len(body) > self.max_bytes:
            return
        if key in self._items:
            self._drop(key)
        self._items[key] = (self.clock() + self.ttl, body)
        self._bytes += len(body)
        while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        _, body = self._items.pop(key)
        self._bytes -= len(body)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


# the completions' share of the cache's entries and bytes, kept apart from the rest
INLINE_SHARE = 0.25


class ClassCaches:
    """One LRU per rate class (``admission.limiter.rate_class``). The editor's completions come
    many a minute from every user, all cacheable: in one shared LRU they would push every
    ``%%ask`` answer out within minutes. Here they take a quarter of the entries and bytes of
    their own and evict only each other."""

    def __init__(
        self,
        *,
        max_entries: int = 1000,
        max_bytes: int = 64 * 2**20,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chat = MemoryCache(max_entries=max_entries, max_bytes=max_bytes, ttl=ttl, clock=clock)
        self.inline = MemoryCache(
            max_entries=math.ceil(max_entries * INLINE_SHARE) if max_entries > 0 else 0,
            max_bytes=int(max_bytes * INLINE_SHARE),
            ttl=ttl,
            clock=clock,
        )

    def of(self, rate_class: str) -> MemoryCache:
        """The cache of a request of `rate_class`: "inline" or anything else ("chat")."""
        return self.inline if rate_class == "inline" else self.chat
