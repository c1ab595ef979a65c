"""Which account a conversation's prompt cache is on: its home.

Providers cache a prompt's prefix per account (Anthropic at ``cache_control`` breakpoints,
OpenAI automatically from 1,024 tokens), so a conversation whose next turn goes to another
account's key starts cold there and pays the write again. The key choice prefers the account
that served a conversation last, while that account has room now; it yields at once when it
has none (a 429's cooldown, an open breaker, a full window), and the account that then serves
it is the new home. A home is forgotten when the provider's cache would be: ``Affinity.seconds``
after its last use.

A conversation is named by an opaque digest (``prompt_cache.conversation``), keyed by its
user: one user's requests can neither find nor move another's home. A conversation that has no
home yet (a new Claude Code or Codex session) starts at the home of its user's stable prefix,
its tools and system text (``Affinity.shared``): the next session reads them from that cache.
"""

from __future__ import annotations

import collections

from ..bodies.request import Affinity

__all__ = ["Affinity", "Homes"]


class Homes:
    """The homes one process keeps (a shared pool keeps them in Redis), the oldest forgotten
    first past `max_entries`: a conversation per user a few minutes long is some bytes each."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._homes: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()

    def get(self, key: str, now: float) -> str | None:
        """The account `key` was last served by, unless its cache is gone by `now`."""
        found = self._homes.get(key)
        if found is None:
            return None
        account, until = found
        if until <= now:
            del self._homes[key]
            return None
        return account

    def home(self, affinity: Affinity, now: float) -> str | None:
        """The account `affinity`'s conversation was last served by, else the one its user's
        stable prefix was (None: neither is cached anywhere now)."""
        found = self.get(affinity.key, now)
        if found is None and affinity.shared:
            found = self.get(affinity.shared, now)
        return found

    def served(self, affinity: Affinity, account: str, now: float) -> None:
        """`account` served `affinity`'s conversation at `now`: the home of it and of its
        stable prefix, for as long as the provider keeps the cache."""
        self.put(affinity.key, account, now, affinity.seconds)
        if affinity.shared:
            self.put(affinity.shared, account, now, affinity.seconds)

    def put(self, key: str, account: str, now: float, seconds: float) -> None:
        """`account` served `key` at `now`: its home for `seconds` more."""
        self._homes[key] = (account, now + seconds)
        self._homes.move_to_end(key)
        while len(self._homes) > self.max_entries:
            self._homes.popitem(last=False)

    def __len__(self) -> int:
        return len(self._homes)
