"""Response cache for deterministic requests: exact match on (model, messages, parameters).

Only requests that would give the same answer again are cached: temperature 0, or an explicit
``X-RSQL-Cache-Control: cache`` from the client. Bounded in entries and bytes, with a TTL;
least recently used entries go first.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

# Fields that change how an answer is delivered or attributed, not what it says.
_IGNORED = {"stream", "stream_options", "user", "metadata", "store", "service_tier"}


def cache_key(payload: dict[str, Any]) -> str:
    material = {k: v for k, v in payload.items() if k not in _IGNORED}
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def cacheable(payload: dict[str, Any], forced: bool) -> bool:
    if payload.get("n", 1) != 1:
        return False
    return forced or payload.get("temperature") == 0


class MemoryCache:
    def __init__(
        self, *, max_entries: int = 1000, max_bytes: int = 64 * 2**20, ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, body = item
        if expires <= self.clock():
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return body

    def put(self, key: str, body: bytes) -> None:
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
