"""The keys' health checks: disabled keys probed with GET /models and re-enabled when it
answers, self-hosted servers asked what they serve; at start-up and then every so often."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import selfhosted as self_hosted
from .pool import Pool
from .transport import Transports

log = logging.getLogger("rsql.engine")


class KeyHealth:
    """Probes the pool's keys: once at start, then every `interval` seconds until stopped."""

    def __init__(self, pool: Pool, transports: Transports) -> None:
        self.pool = pool
        self.transports = transports
        self._task: asyncio.Task[Any] | None = None

    async def start(self, interval: float) -> None:
        """Learn what self-hosted servers serve now; check again every `interval` s (0: never)."""
        if interval > 0 and self._task is None:
            self._task = asyncio.ensure_future(self._loop(interval))
        await self_hosted.probe(self.pool, self.transports.http)

    def stop(self) -> None:
        if self._task:
            self._task.cancel()
            self._task = None

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception:  # a failed check must not end the loop
                log.exception("upstream health check failed")

    async def check(self) -> dict[str, str]:
        """Probe disabled keys with GET /models; a 2xx re-enables them. Self-hosted servers
        are probed every time (``providers.selfhosted``). Every key's state, by alias."""
        out = {}
        await self_hosted.probe(self.pool, self.transports.http)
        for key in self.pool.keys:
            if key.disabled and not key.spec.max_in_flight:
                status = await self.transports.for_spec(key.spec).get_models(key.spec, 10.0)
                if 200 <= status < 300:
                    await self.pool.enable(key)
                    log.info("upstream %s re-enabled by health check", key.alias)
            out[key.alias] = self.pool.key_state(key)
        return out
