"""The models a kernel's own keys reach and the docs name are current and priced (#55): a key in
the environment gets no model the provider retires (claude-sonnet-4-5, on 2026-11-30) and none
that budgets would refuse as unpriced; the retiring name keeps its price while it is served."""

from __future__ import annotations

import pytest

from jupyter_server_ext.engine import parse_upstreams
from jupyter_server_ext.engine.accounting.pricing import PriceBook
from jupyter_server_ext.engine.upstreams.prices import Price
from jupyter_server_ext.inprocess import upstreams_from_env

KEYS = {"GROQ_API_KEY": "g", "OPENAI_API_KEY": "o", "ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "m"}
RETIRING = {"claude-sonnet-4-5"}


def test_a_kernels_own_keys_reach_current_models_each_priced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    ups = upstreams_from_env(KEYS)
    book = PriceBook(parse_upstreams(ups))
    served = {m for up in ups for m in up["models"]}
    assert "claude-sonnet-5-5" in served and not served & RETIRING
    assert {m: book.known(m) for m in served if book.known(m) is None} == {}


@pytest.mark.parametrize(
    ("model", "price"),
    [
        # Claude Code 2.1.330's table: $2 / $10 per 1M, a one-hour cache write $4, one rate
        # across the 1M-token window
        ("claude-sonnet-5-5", Price(2.00, 10.00, 4.00)),
        # still served until it retires, at Anthropic's rates
        ("claude-sonnet-4-5", Price(3.00, 15.00, 6.00)),
    ],
)
def test_the_new_sonnet_and_the_retiring_one_are_both_priced(model: str, price: Price) -> None:
    found = PriceBook(()).known(model)
    assert found is not None
    assert (found.input, found.output, found.cache_write) == (
        price.input,
        price.output,
        price.cache_write,
    )
    long = found.at(500_000)
    assert (long.input > found.input) == (model == "claude-sonnet-4-5")
