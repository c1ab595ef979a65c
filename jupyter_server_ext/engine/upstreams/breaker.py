"""A key's circuit breaker: a run of failures takes the key out for a while, then one request
probes it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Breaker:
    """Per-key circuit breaker: opens after `threshold` failures in a row, probes once later.

    A request can be made to fail on purpose (a body that makes the provider answer 5xx, an
    answer too long for the timeout), so a failure that may be the request's doing names its
    user, and such failures open the breaker only once they come from two users or more: one
    user's requests cannot take a key out for everyone. A failure that is the host's alone
    (connection refused, no TLS) names nobody and counts whoever asked, and so does one the
    same request then got past on another key (``blame_host``): the request was not at fault.
    So a key failing one user alone (a personal server) still opens its breaker.
    """

    threshold: int = 3
    base_open_seconds: float = 15.0
    max_open_seconds: float = 300.0
    failures: int = 0
    open_until: float = 0.0
    opened: int = 0  # how many times in a row it opened; the open time doubles each time
    probing: bool = False
    # whose requests failed in this run (two are enough)
    users: set[str] = field(default_factory=set)
    hosts_fault: bool = False  # a failure in this run named nobody

    @property
    def tripped(self) -> bool:
        return self.failures >= self.threshold and (self.hosts_fault or len(self.users) > 1)

    def allows(self, now: float) -> bool:
        if not self.tripped:
            return True
        return now >= self.open_until and not self.probing

    def state(self, now: float) -> str:
        if not self.tripped:
            return "closed"
        return "open" if now < self.open_until else "half-open"

    def success(self) -> None:
        self.failures = 0
        self.opened = 0
        self.probing = False
        self.users.clear()
        self.hosts_fault = False

    def failure(self, now: float, user: str | None = None) -> None:
        self.failures += 1
        self.probing = False
        if user is None:
            self.hosts_fault = True
        elif len(self.users) < 2:
            self.users.add(user)
        if self.tripped:
            self._open(now)

    def blame_host(self, now: float) -> None:
        """A failure already counted turned out the key's, not the request's."""
        was_tripped, self.hosts_fault = self.tripped, True
        if self.tripped and not was_tripped:
            self._open(now)

    def _open(self, now: float) -> None:
        secs = min(self.max_open_seconds, self.base_open_seconds * 2**self.opened)
        self.open_until = now + secs
        self.opened += 1
