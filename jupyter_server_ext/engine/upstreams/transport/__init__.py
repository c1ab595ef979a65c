"""Which transport carries an upstream's requests: the one place that decides it."""

from __future__ import annotations

from collections.abc import Iterable

from ..specs import UpstreamSpec
from .local import LocalTransport
from .protocol import Transport
from .remote import HTTPTransport


class Transports:
    """The engine's transports, one of each kind, shared by every upstream of that kind; the
    composition root may give its own (``Engine``'s `transports`: a local model not started
    with the engine, providers answered in memory in a test)."""

    def __init__(
        self, http: HTTPTransport | None = None, local: LocalTransport | None = None
    ) -> None:
        self.http = http or HTTPTransport()
        self.local = local or LocalTransport()

    def for_spec(self, spec: UpstreamSpec) -> Transport:
        return self.local if spec.local else self.http

    def start(self, specs: Iterable[UpstreamSpec]) -> None:
        """Start local models now, with a self-test, so a broken build is reported at start-up."""
        self.local.start([s for s in specs if s.local])

    async def close(self) -> None:
        await self.http.close()
        await self.local.close()
