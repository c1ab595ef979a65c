"""Admission against the memory state backend with a controlled clock: day windows and budgets
reset at midnight UTC, leases expire on their own, per-user state stays bounded."""

from __future__ import annotations

import datetime as dt

import pytest

from jupyter_server_ext.engine import LimitSettings, RateLimited, UserRules, parse_rates
from jupyter_server_ext.engine.admission.limiter import Limiter
from jupyter_server_ext.state import MemoryState


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.now = at.replace(tzinfo=dt.timezone.utc).timestamp()

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **user: object) -> Limiter:
    policy = UserRules(**user)  # type: ignore[arg-type]
    return Limiter(LimitSettings(user=policy, lease_seconds=30), MemoryState(clock=clock))


async def test_day_window_resets_at_midnight_utc() -> None:
    clock = Clock(dt.datetime(2026, 11, 22, 23, 59, 58))
    lim = limiter(clock, limits=parse_rates(["2/day"], where="t"))
    for _ in range(2):
        await (await lim.admit("alice", (), 0.0)).settle(0.0)
    with pytest.raises(RateLimited) as err:
        await lim.admit("alice", (), 0.0)
    assert err.value.retry_after == 2  # seconds to midnight UTC
    clock.now += 2.5  # 00:00:00.5 the next day
    await lim.admit("alice", (), 0.0)


async def test_daily_budget_resets_at_midnight_utc() -> None:
    clock = Clock(dt.datetime(2026, 11, 22, 23, 0, 0))
    lim = limiter(clock, daily_budget_usd=1.0)
    t = await lim.admit("alice", (), 0.6)
    await t.settle(0.9)  # settled to more than reserved: the real cost counts
    with pytest.raises(RateLimited) as err:
        await lim.admit("alice", (), 0.2)
    assert err.value.limit == "user daily budget $1" and err.value.retry_after == 3600
    snap = await lim.snapshot("alice", ())
    assert snap["budget"]["spent_usd"] == pytest.approx(0.9)
    clock.now += 3601
    await lim.admit("alice", (), 0.2)
    assert (await lim.snapshot("alice", ()))["budget"]["spent_usd"] == pytest.approx(0.2)


async def test_leases_expire_on_their_own() -> None:
    clock = Clock(dt.datetime(2026, 11, 22, 12, 0, 0))
    lim = limiter(clock, concurrency=1)
    await lim.admit("alice", (), 0.0)  # a process that died before releasing
    with pytest.raises(RateLimited, match="concurrency"):
        await lim.admit("alice", (), 0.0)
    clock.now += 31  # lease_seconds later
    t = await lim.admit("alice", (), 0.0)
    await t.settle(0.0)
    await lim.admit("alice", (), 0.0)  # released: the place is free again


async def test_settling_twice_releases_once() -> None:
    clock = Clock(dt.datetime(2026, 11, 22, 12, 0, 0))
    lim = limiter(clock, concurrency=2)
    first = await lim.admit("alice", (), 0.0)
    await lim.admit("alice", (), 0.0)  # both places held
    await first.settle(0.0)
    await first.settle(0.0)  # a second settle gives back nothing more
    await lim.admit("alice", (), 0.0)  # the one place first held
    with pytest.raises(RateLimited, match="concurrency"):
        await lim.admit("alice", (), 0.0)


async def test_refused_request_counts_in_no_window() -> None:
    clock = Clock(dt.datetime(2026, 11, 22, 12, 0, 0))
    lim = limiter(
        clock, limits=parse_rates(["2/minute", "10/hour"], where="t"), daily_budget_usd=5.0
    )
    for _ in range(2):
        await lim.admit("alice", (), 0.1)
    for _ in range(5):
        with pytest.raises(RateLimited):
            await lim.admit("alice", (), 0.1)
    snap = await lim.snapshot("alice", ())
    assert [w["used"] for w in snap["limits"]] == [2, 2]
    assert snap["budget"]["spent_usd"] == pytest.approx(0.2)
    # refused by a later check: a window that passed before it counts nothing either
    later = limiter(
        clock, limits=parse_rates(["10/hour", "2/minute"], where="t"), daily_budget_usd=0.25
    )
    for _ in range(2):
        await later.admit("bob", (), 0.1)
    for _ in range(3):  # the minute window refuses, after the hour window passed
        with pytest.raises(RateLimited):
            await later.admit("bob", (), 0.1)
    clock.now += 61  # the minute has room again: now the budget refuses (0.2 + 0.1 > 0.25)
    with pytest.raises(RateLimited) as over:
        await later.admit("bob", (), 0.1)
    assert "budget" in str(over.value).lower(), over.value
    snap = await later.snapshot("bob", ())
    assert [w["used"] for w in snap["limits"]] == [2, 0]
    assert snap["budget"]["spent_usd"] == pytest.approx(0.2)


async def test_group_and_user_overrides() -> None:
    from jupyter_server_ext.engine import parse_overrides

    settings = LimitSettings(
        user=UserRules(limits=parse_rates(["1/minute"], where="t"), concurrency=1),
        overrides=parse_overrides(
            {
                "group:staff": {"user_limits": ["5/minute"], "user_concurrency": 3},
                "user:dana": {"user_concurrency": 7},
            }
        ),
    )
    lim = Limiter(settings, MemoryState())
    assert lim.rules_for("eve", ()).concurrency == 1
    assert lim.rules_for("sam", ("staff",)).concurrency == 3
    assert lim.rules_for("dana", ("staff",)) == UserRules(
        parse_rates(["5/minute"], where="t"), 7, None
    )


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"alice": {}}, "'user:NAME' or 'group:NAME'"),
        ({"user:alice": {"user_limit": ["1/minute"]}}, "unknown field 'user_limit'"),
        ({"user:alice": {"user_limits": ["lots"]}}, "cannot parse limit 'lots'"),
        ({"group:staff": {"user_concurrency": -1}}, "integer >= 0"),
    ],
)
def test_bad_overrides_are_named(raw: dict, needle: str) -> None:
    from jupyter_server_ext.engine import ConfigError, parse_overrides

    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        parse_overrides(raw)


async def test_per_user_state_stays_bounded() -> None:
    clock = Clock(dt.datetime(2026, 11, 22, 12, 0, 0))
    state = MemoryState(clock=clock)
    lim = Limiter(
        LimitSettings(
            user=UserRules(
                limits=parse_rates(["5/minute"], where="t"), concurrency=2, daily_budget_usd=1.0
            )
        ),
        state,
    )
    for day in range(3):
        for i in range(2000):
            t = await lim.admit(f"user{day}-{i}", (), 0.001)
            await t.settle(0.001)
        clock.now += 86400 * 8  # a week later nobody's windows hold anything
    await lim.admit("last", (), 0.0)
    assert len(state._logs) + len(state._leases) + len(state._spend) + len(state._days) < 10


async def test_an_admission_is_settled_once_whatever_asks_again() -> None:
    """A request's admission is charged or given back once: a second settle (another path that
    also ends the request) neither charges again nor refunds the window it counted in."""
    clock = Clock(dt.datetime(2026, 11, 22, 12, 0, 0))
    lim = limiter(
        clock, limits=parse_rates(["2/day"], where="t"), concurrency=1, daily_budget_usd=1.0
    )
    first = await lim.admit("bob", (), 0.4)
    await first.settle(0.3)
    assert first.settled
    await first.settle(0.0, refund=True)  # too late: nothing is given back, nothing charged
    snap = await lim.snapshot("bob", ())
    assert snap["budget"]["spent_usd"] == pytest.approx(0.3)
    second = await lim.admit("bob", (), 0.4)  # the lease was released once
    await second.settle(0.3)
    await second.settle(0.3)
    with pytest.raises(RateLimited):  # both requests stay counted in the 2/day window
        await lim.admit("bob", (), 0.0)
    assert (await lim.snapshot("bob", ()))["budget"]["spent_usd"] == pytest.approx(0.6)
