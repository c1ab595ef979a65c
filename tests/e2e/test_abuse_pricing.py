"""#53, finding 7: a flag or field that changes what the provider bills, against the proxy's
price, over HTTP through a real rsql-proxy and the fake Anthropic (which answers, counts and
refuses as api.anthropic.com does: ``tests/helpers/fake_anthropic.py``).

Claude's 1M-token context (``anthropic-beta: context-1m-2025-08-07``) is billed at Anthropic's
long-context rates once a prompt, cache reads and writes included, is past 200,000 tokens: the
whole request at twice the input price and 1.5 times the output price. Fast mode (``speed``)
and US-only inference (``inference_geo``) are billed above the standard prices too. Each is
either charged as the provider charges it, reserved at its worst case, or refused with a 400
naming it (docs/admins/providers.md, "Fields that change a price").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.fake_anthropic import FakeAnthropic, KeyPolicy
from tests.helpers.servers import ProxyService, start_service

pytestmark = pytest.mark.slow

KEY = "test-anthropic-key-pricing"
LONG_BETA = {"anthropic-beta": "context-1m-2025-08-07"}
# Anthropic's published prices for Claude Sonnet 4.5, USD per million tokens: the built-in
# table's. Past 200,000 prompt tokens: $6 input, $22.50 output; a one-hour cache write is twice
# the input price in either case.
STANDARD, LONG = (3.0, 15.0), (6.0, 22.5)
USERS = {f"tok-{u}": {"name": u} for u in ("ann", "bea", "cid", "dan", "eve")}


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    fa = FakeAnthropic(
        {KEY: KeyPolicy("claude")}, model_ids=("claude-sonnet-4-5", "claude-fake-small")
    )
    fa.start()
    yield fa
    fa.stop()


@pytest.fixture(scope="module")
def svc(claude: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyService]:
    upstream = {
        "name": "claude",
        "provider": "anthropic",
        "base_url": claude.base_url,
        "api_key": KEY,
        # claude-sonnet-4-5 at the built-in price; claude-priced at the admin's, who gave it
        # no long-context price
        "models": {"claude-sonnet-4-5": "claude-sonnet-4-5", "claude-priced": "claude-fake-small"},
        "prices": {"claude-priced": {"input": 3.0, "output": 15.0, "cache_write": 6.0}},
    }
    service = start_service(
        tmp_path_factory.mktemp("pricing"),
        {
            "upstreams": [upstream],
            "default_model": "claude-sonnet-4-5",
            "user_daily_budget_usd": 50.0,
            "limit_overrides": {"user:bea": {"user_daily_budget_usd": 2.0}},
            "health_check_seconds": 0.0,
        },
        static_users=USERS,
    )
    yield service
    service.stop()


def messages(
    svc: ProxyService, user: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    status, _, raw = svc.request("POST", "v1/messages", body, token=f"tok-{user}", headers=headers)
    return status, json.loads(raw) if raw else {}


def spent(svc: ProxyService, user: str) -> float:
    status, _, raw = svc.request("GET", "me", token=f"tok-{user}")
    assert status == 200, raw
    return float(json.loads(raw)["budget"]["spent_usd"])


def ask(model: str, words: int, **extra: Any) -> dict[str, Any]:
    """A Messages request whose prompt is about `words` * 1.5 tokens (six characters a word)."""
    text = "lorem " * words
    return {
        "model": model,
        "max_tokens": 20,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def usd(usage: dict[str, Any], rates: tuple[float, float], write: float) -> float:
    """What Anthropic bills for `usage` at (input, output) `rates`, cache writes at `write`."""
    fresh = usage["input_tokens"] + usage.get("cache_read_input_tokens", 0)
    written = usage.get("cache_creation_input_tokens", 0)
    return (fresh * rates[0] + written * write + usage["output_tokens"] * rates[1]) / 1e6


# 148,500 words: 891,000 characters, some 222,750 tokens, the finding's prompt
PAST_200K = 148_500


def test_a_prompt_past_200k_tokens_with_the_1m_beta_is_charged_anthropics_long_context_rates(
    svc: ProxyService, claude: FakeAnthropic
) -> None:
    claude.reset()
    body = ask("claude-sonnet-4-5", PAST_200K)
    # without the beta Anthropic takes no prompt past 200,000 tokens: nothing is charged
    status, err = messages(svc, "ann", body)
    assert status == 400 and "prompt is too long" in json.dumps(err)
    before = spent(svc, "ann")
    status, answer = messages(svc, "ann", body, LONG_BETA)
    assert status == 200, answer
    usage = answer["usage"]
    assert usage["input_tokens"] > 200_000
    charged = spent(svc, "ann") - before
    # the whole request at the long-context rates: $1.34 for this prompt, not the $0.67 that
    # the standard rates come to
    assert charged == pytest.approx(usd(usage, LONG, 12.0), abs=2e-6)
    assert charged > 1.9 * usd(usage, STANDARD, 6.0)
    # streamed, it is charged the same, from the usage its events carry
    before = spent(svc, "ann")
    status, _, raw = svc.request(
        "POST",
        "v1/messages",
        {**body, "stream": True},
        token="tok-ann",
        headers=LONG_BETA,
    )
    assert status == 200
    events = [
        json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")
    ]
    streamed = {
        **next(e["message"]["usage"] for e in events if e["type"] == "message_start"),
        **next(e["usage"] for e in events if e["type"] == "message_delta"),
    }
    assert spent(svc, "ann") - before == pytest.approx(usd(streamed, LONG, 12.0), abs=2e-6)


def test_a_request_with_the_1m_beta_is_reserved_at_the_long_context_rates(
    svc: ProxyService, claude: FakeAnthropic
) -> None:
    claude.reset()
    # bea's whole day is $2: this prompt's worst case is $1.34 at the standard rates (every
    # prompt token a one-hour cache write, $6 a million) and $2.67 at the long-context ones
    # ($12), so a budget that holds it only at the standard rates would let concurrent ones
    # spend past it
    status, err = messages(svc, "bea", ask("claude-sonnet-4-5", PAST_200K), LONG_BETA)
    assert status == 400, err
    reserved = re.search(r"may cost up to \$([0-9.]+)", err["error"]["message"])
    assert reserved is not None and float(reserved.group(1)) > 2.6, err
    assert claude.received == []
    assert spent(svc, "bea") == 0


def test_the_1m_beta_on_a_model_without_a_long_context_price_is_refused_naming_the_header(
    svc: ProxyService, claude: FakeAnthropic
) -> None:
    claude.reset()
    status, err = messages(svc, "cid", ask("claude-priced", 10), LONG_BETA)
    assert status == 400, err
    # the header, and the price setting an admin gives it
    assert "anthropic-beta: context-1m-2025-08-07" in err["error"]["message"]
    assert '"long_context"' in err["error"]["message"]
    assert claude.received == []
    # the same request without the beta is served at the admin's price
    status, answer = messages(svc, "cid", ask("claude-priced", 10))
    assert status == 200, answer


@pytest.mark.parametrize(
    ("field", "dearer", "standard"),
    [("speed", "fast", "standard"), ("inference_geo", "us", "global")],
)
def test_fast_mode_and_us_only_inference_are_refused_naming_the_field(
    svc: ProxyService, claude: FakeAnthropic, field: str, dearer: str, standard: str
) -> None:
    claude.reset()
    # fast mode is billed at a multiple of the model's price (6x on Claude Opus 4.6), US-only
    # inference at 1.1x: neither is in the price table
    status, err = messages(svc, "dan", ask("claude-sonnet-4-5", 10, **{field: dearer}))
    assert status == 400 and f"'{field}' '{dearer}'" in err["error"]["message"], err
    assert claude.received == []
    status, answer = messages(svc, "dan", ask("claude-sonnet-4-5", 10, **{field: standard}))
    assert status == 200, answer


def test_a_one_hour_cache_write_is_charged_what_anthropic_bills_for_it(
    svc: ProxyService, claude: FakeAnthropic
) -> None:
    claude.reset()
    system = [
        {
            "type": "text",
            "text": "You answer about SQL. " * 400,
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    before = spent(svc, "eve")
    status, answer = messages(svc, "eve", ask("claude-sonnet-4-5", 10, system=system))
    assert status == 200, answer
    usage = answer["usage"]
    assert usage["cache_creation"]["ephemeral_1h_input_tokens"] > 0
    # a one-hour write is twice the input price
    assert spent(svc, "eve") - before == pytest.approx(usd(usage, STANDARD, 6.0), abs=2e-6)
