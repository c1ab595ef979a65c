"""Long-context prices (#53, finding 7) as an admin writes them in an upstream's `prices`: read
and checked at start-up, and what they make a request cost."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_server_ext.engine import parse_upstreams
from jupyter_server_ext.engine.accounting.pricing import PriceBook
from jupyter_server_ext.engine.errors import ConfigError

SONNET = {
    "input": 3.0,
    "output": 15.0,
    "cache_write": 6.0,
    "long_context": {"above": 200_000, "input": 6.0, "output": 22.5},
}


def book(*prices: dict[str, Any]) -> PriceBook:
    return PriceBook(
        parse_upstreams(
            [
                {
                    "name": f"u{i}",
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key": "k",
                    "models": ["m"],
                    "prices": {"m": p},
                }
                for i, p in enumerate(prices)
            ]
        )
    )


def test_a_prompt_past_the_threshold_bills_the_whole_request_at_the_long_rates() -> None:
    price = book(SONNET).price("m", "u0")
    assert price.cost(200_000, 1000) == pytest.approx((200_000 * 3 + 1000 * 15) / 1e6)
    # one token more, and every token (cache writes too) is at the long-context rates; a
    # cache write not priced past the threshold costs there what it does below (2x input)
    assert price.cost(200_001, 1000, 1) == pytest.approx((200_000 * 6 + 1 * 12 + 1000 * 22.5) / 1e6)


def test_the_dearest_upstream_decides_a_reservation_past_the_threshold() -> None:
    flat = {"input": 4.0, "output": 10.0}
    prices = book(SONNET, flat)
    worst = prices.max_price("m")
    assert worst is not None and worst.long_context is not None
    assert (worst.input, worst.output) == (4.0, 15.0)
    long = worst.longest
    assert (long.input, long.output, long.cache_write) == (6.0, 22.5, 12.0)
    assert prices.lacks_long_context("m")  # the flat one would charge less than it costs


@pytest.mark.parametrize(
    ("long", "says"),
    [
        ({"above": 200_000, "input": 1.0, "output": 22.5}, "below the standard"),
        ({"above": 0, "input": 6.0, "output": 22.5}, "'above'"),
        ({"above": 200_000, "input": "6", "output": 22.5}, "long_context"),
        ({"above": 200_000, "input": 6.0, "output": 22.5, "cached": 1.0}, "long_context"),
    ],
)
def test_a_long_context_price_that_is_not_one_stops_start_up_naming_it(
    long: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError) as err:
        book({**SONNET, "long_context": long})
    assert "'long_context'" in str(err.value) and says in str(err.value)
