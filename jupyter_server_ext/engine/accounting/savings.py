"""What the providers' prompt caches did for a user today (``GET me``): the tokens read from
them, the share of the prompts that was, and the dollars saved against the input price; in all
and by model. Read from the usage log, at most once every ``MEMO_SECONDS`` a user: ``GET me``
is asked before a kernel's questions, and a usage query for each would be work without end."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any

from .usage import UsageLog

log = logging.getLogger("rsql.engine")

MEMO_SECONDS = 30.0
_MEMO_USERS = 10_000


class CacheSavings:
    def __init__(self, usage: UsageLog | None, clock: Any = time.monotonic) -> None:
        self._usage = usage
        self._clock = clock
        self._memo: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    async def today(self, user: str) -> dict[str, Any] | None:
        """`user`'s prompt cache since UTC midnight (budgets' day); None without a usage log,
        or while its store cannot be read (``GET me`` answers all the same)."""
        if self._usage is None:
            return None
        now = self._clock()
        found = self._memo.get(user)
        if found is not None and now - found[0] < MEMO_SECONDS:
            return found[1]
        wall = time.time()
        try:
            seen = await self._usage.store.prompt_cache(user, wall - wall % 86400)
        except Exception as exc:  # whatever the store's driver raises: GET me answers anyway
            log.debug("prompt cache savings not read: %s", type(exc).__name__)
            return None
        self._memo[user] = (now, seen)
        self._memo.move_to_end(user)
        while len(self._memo) > _MEMO_USERS:
            self._memo.popitem(last=False)
        return seen
