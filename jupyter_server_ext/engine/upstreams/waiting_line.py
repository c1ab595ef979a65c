"""Waiting for a model's upstream capacity: one line per model, and the wait itself.

Why a line: every waiter used to pick again whenever capacity might have freed (each local
release, and with shared state each 50 ms poll, as other replicas' releases send no local
event). With 50 requests waiting on three replicas that was about 2,900 Redis scripts a second
for 15 requests a second served, and the first to wake won, not the first to come. Now only the
request at the head of its line picks again; the rest wait for their turn, which comes at once
when the one before them gets a slot (there may be room for more). A request that finds people
waiting goes behind them without looking, so room that frees while they wait is theirs.

With shared state each replica has its lines, and every request that picks (a line's head, a
newcomer) also holds a place in one line per model that every replica shares (``LinePlace``;
its rule is the state backend's, ``state.connection.scripts``): room goes to those who came
first wherever they wait. Without it freed room went to whichever replica's head asked first,
and a newcomer at a replica with nobody waiting went straight in: one replica's users got 0.77
of the mean's answers, another's 1.35, with every key full.

Requests that exclude keys (a failover's next attempt) wait in a line of their own, here and in
none that replicas share, so they never hold up a request that could take a key they cannot. A
larger request at the head holds up smaller ones behind it until it fits: first come, first
served, so a large request is never starved by small ones at its replica (at another, a
smaller one takes room while fewer wait before it than the keys have room for requests of its
size, which may be room the large one waits to grow).

A line that cannot move in time refuses at once: a newcomer behind more people than the line
serves before its deadline (at the pace it has served them) is refused with the wait as its
Retry-After, where it would have waited out the whole `max_wait_seconds` for the same 429.
The pace is the line's time per serve over its last serves, counted from when it formed, and
believed only after a few: one long gap is not a pace. With replicas sharing keys, a replica's
head can miss two or three windows in a row while another replica's takes their room; a moving
mean started from that first gap read 4.4 s a serve for a line that then served everyone in 12
s, and refused a newcomer behind seven people at once, "retry in 31 s".
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import RateLimited

__all__ = ["LinePlace", "Leave", "WaitingLines", "no_capacity"]

# leaves a line: `served`, its head got a slot (the line's pace is measured from these)
Leave = Callable[[bool], None]


# a line's pace is believed after this many serves, and measured over at most the last
# PACE_SERVES of them
PACE_AFTER = 3
PACE_SERVES = 20


@dataclass(frozen=True, slots=True)
class LinePlace:
    """A request's place in its model's line shared by replicas: its ticket (unique over them)
    and when it came (the pool's clock), kept from its first miss through every pick it makes,
    so it keeps its place while it waits behind others here."""

    model: str
    ticket: str
    at: float


class _Line:
    __slots__ = ("lock", "people", "formed", "served")

    def __init__(self, now: float) -> None:
        self.lock = asyncio.Lock()  # wakes its waiters in the order they came
        self.people = 0
        self.formed = now
        self.served: deque[float] = deque(maxlen=PACE_SERVES)  # when its heads got a slot

    def pace(self) -> float | None:
        """Seconds a serve (None: too few serves to say): the time from the line's forming,
        or from the oldest serve kept, to its last serve, over the serves in it."""
        if len(self.served) < PACE_AFTER:
            return None
        if len(self.served) < PACE_SERVES:
            return (self.served[-1] - self.formed) / len(self.served)
        return (self.served[-1] - self.served[0]) / (PACE_SERVES - 1)


class WaitingLines:
    """One first-come line of waiting requests per (model, keys excluded), and the wake-up
    of the one at its head when capacity may have freed.

    `poll_seconds`: without a local release event (another replica freed the capacity), the
    head looks again this often (None: it waits for the event or the time it was told)."""

    def __init__(self, clock: Callable[[], float], poll_seconds: float | None) -> None:
        self._lines: dict[tuple[str, frozenset[str]], _Line] = {}
        self.clock = clock
        self.poll_seconds = poll_seconds
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """Capacity may have freed here (a release, a stamp): the heads look again."""
        self._changed.set()
        self._changed = asyncio.Event()

    def refuse_late(self, model: str, got: float | None, deadline: float) -> None:
        """The 429 of a miss whose room (`got` s away) cannot come before `deadline`."""
        if got is not None and self.clock() + got > deadline:
            raise no_capacity(model, got)

    async def wait(self, model: str, got: float | None, deadline: float) -> None:
        """Wait for room after a miss (`got`: seconds until some key may have it, None: only a
        release can make it), or raise the 429 when it cannot come before `deadline`."""
        self.refuse_late(model, got, deadline)
        left = deadline - self.clock()
        if left <= 0:
            raise no_capacity(model, None)
        changed = self._changed
        wait = min(left, got) if got is not None else left
        if self.poll_seconds is not None:
            wait = min(wait, self.poll_seconds)
        try:
            await asyncio.wait_for(changed.wait(), wait)
        except asyncio.TimeoutError:
            pass

    def busy(self, model: str, exclude: Iterable[str]) -> bool:
        """Whether anyone is in this line (a newcomer goes behind them). Counted by people,
        not by the head's lock: between a head's leaving and the next one's taking it, the
        lock is free while the line is not."""
        return (model, frozenset(exclude)) in self._lines  # lines nobody is in are forgotten

    async def join(self, model: str, exclude: Iterable[str], deadline: float) -> Leave:
        """Wait behind those who came first and hold the head of the line; returns the call
        that leaves it. A 429 at once when the line's pace says those ahead are not served by
        `deadline`, and at `deadline` when they were not. Lines nobody is in are forgotten, so
        combinations of excluded keys do not pile up (and a line's pace is measured only
        while people wait in it)."""
        key = (model, frozenset(exclude))
        line = self._lines.get(key)
        pace = line.pace() if line is not None and line.people else None
        if line is None:
            line = self._lines[key] = _Line(self.clock())
        elif pace is not None:
            ahead = line.people * pace
            if self.clock() + ahead > deadline:
                raise no_capacity(model, ahead)
        first = not line.people
        line.people += 1

        def gone() -> None:
            line.people -= 1
            if not line.people:
                del self._lines[key]

        try:
            if first:
                # an empty line's head is free: taken at once (wait_for with no time left
                # would refuse even this)
                await line.lock.acquire()
            else:
                await asyncio.wait_for(line.lock.acquire(), max(0.0, deadline - self.clock()))
        except TimeoutError:
            gone()
            raise no_capacity(model, None) from None
        except BaseException:
            gone()
            raise

        def leave(served: bool) -> None:
            if served:
                line.served.append(self.clock())
            line.lock.release()
            gone()

        return leave


def no_capacity(model: str, retry_after: float | None) -> RateLimited:
    """The 429 of a request that found no upstream capacity in time (`retry_after`: seconds
    until some key may have room; None: a moment)."""
    when = "a moment" if retry_after is None else f"{math.ceil(retry_after)} s"
    return RateLimited(
        f"all upstream capacity for model {model!r} is in use; retry in {when}",
        retry_after=1 if retry_after is None else retry_after,
        limit="upstream capacity",
    )
