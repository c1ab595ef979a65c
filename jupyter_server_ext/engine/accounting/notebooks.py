"""Notebooks in the usage log: how a row names the notebook a request came from, and what a
user spent in one (GET me/cost, ``%ask_cost``)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

from ..errors import RateLimited
from .usage import UsageLog, UsageStore

__all__ = ["NotebookCosts"]


class NotebookCosts:
    """`key`: the pseudonym key (notebook ids stay stable across replicas that share it);
    `names`: the admin opted into notebook paths in the usage log."""

    def __init__(self, key: bytes, *, names: bool, usage: UsageLog | None) -> None:
        self._key = key
        self._names = names
        self._usage = usage
        # one query of a user's at a time, a few per process: reads of the usage log are the
        # database's work for everyone, and asking costs the user no quota
        self._readers: set[str] = set()
        self._slots = asyncio.Semaphore(4)

    def notebook_id(self, path: str | None) -> str | None:
        """How the usage log names a notebook: its path when the admin opts into names, else a
        keyed hash of it."""
        if not path:
            return None
        if self._names:
            return path
        digest = hmac.new(self._key, b"notebook:" + path.encode(), hashlib.sha256).hexdigest()
        return "nb-" + digest[:16]

    async def cost(self, user: str, path: str, store: UsageStore) -> dict[str, Any]:
        """What `user` spent in the notebook at `path` since UTC midnight and since Monday
        00:00 UTC, and its dearest cells this week."""
        if user in self._readers:
            raise RateLimited(
                "one cost query at a time: the last one is still running",
                retry_after=1,
                limit="cost queries in flight",
            )
        self._readers.add(user)
        try:
            async with self._slots:
                now = time.time()
                day = now - now % 86400
                week = day - time.gmtime(now).tm_wday * 86400
                notebook = self.notebook_id(path) or ""
                if self._usage is not None:
                    await self._usage.flush()  # the rows of requests just answered are counted
                return {
                    "notebook": notebook,
                    **await store.notebook_cost(user, notebook, day, week),
                }
        finally:
            self._readers.discard(user)
