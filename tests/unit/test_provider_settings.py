"""Upstream settings of each provider kind: what an admin may write, and the error for each
mistake, naming the upstream and the field (``c.RSQLProxy.upstreams``)."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_server_ext.engine import parse_upstreams
from jupyter_server_ext.engine.accounting.pricing import PriceBook
from jupyter_server_ext.engine.errors import ConfigError

AZ = {"name": "az", "provider": "azure", "base_url": "https://uni.openai.azure.com", "api_key": "k"}


@pytest.mark.parametrize(
    ("upstream", "words"),
    [
        (AZ, "'api_version' must be a dated Azure OpenAI API version"),
        ({**AZ, "api_version": "2024-13"}, "'api_version'"),
        (
            {**AZ, "base_url": "https://uni.openai.azure.com/openai", "api_version": "2024-10-21"},
            "resource endpoint",
        ),
        ({**AZ, "api_version": "v1", "auth": "managed"}, "'auth' must be one of"),
        ({**AZ, "api_version": "v1", "max_in_flight": 4}, "self-hosted OpenAI-compatible server"),
        (
            {"name": "an", "provider": "anthropic", "api_key": "k", "api_version": "v1"},
            "'api_version' is for 'provider': 'azure' only",
        ),
        ({"name": "an", "provider": "anthropic"}, "needs 'api_key_env'"),
        (
            {"name": "vl", "base_url": "http://127.0.0.1:1/v1", "models": {"m": 3}},
            "field 'models' as a dict",
        ),
        (
            {"name": "vl", "base_url": "http://127.0.0.1:1/v1", "models": {"*": "x"}},
            "cannot map '*'",
        ),
        (
            {"name": "vl", "base_url": "http://127.0.0.1:1/v1", "max_in_flight": 0.5},
            "'max_in_flight' must be an integer",
        ),
        (
            {"name": "lo", "provider": "llama_cpp", "max_in_flight": 2},
            "does not apply to the local model",
        ),
        ({"name": "x", "provider": "bedrock", "api_key": "k"}, "'provider' must be one of"),
    ],
)
def test_a_mistake_stops_start_up_naming_the_upstream_and_field(
    upstream: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_upstreams([upstream], env={})
    assert words in str(err.value)
    assert f"upstream {upstream['name']!r}" in str(err.value)


def test_each_kind_gets_its_sdks_default_root_and_public_names_map_to_the_providers_own() -> None:
    an, ge, az, vl = parse_upstreams(
        [
            {
                "name": "an",
                "provider": "anthropic",
                "api_key_env": "ANTHROPIC_API_KEY",
                "models": {"claude-sonnet": "claude-sonnet-4-5-20250929"},
            },
            {
                "name": "ge",
                "provider": "gemini",
                "api_key_env": "GEMINI_API_KEY",
                "models": ["gemini-2.5-flash"],
            },
            {
                **AZ,
                "api_version": "2024-10-21",
                "models": {"gpt-4o-mini": "mini-deploy", "gpt-4o": "gpt-4o"},
            },
            {"name": "vl", "base_url": "http://gpu-1:8000/v1", "max_in_flight": 8},
        ],
        env={"ANTHROPIC_API_KEY": "test-anthropic-key", "GEMINI_API_KEY": "AIza-x"},
    )
    assert an.base_url == "https://api.anthropic.com"
    assert ge.base_url == "https://generativelanguage.googleapis.com/v1beta/openai"
    assert an.serves("claude-sonnet") and not an.serves("claude-sonnet-4-5-20250929")
    assert an.provider_model("claude-sonnet") == "claude-sonnet-4-5-20250929"
    assert (
        az.provider_model("gpt-4o") == "gpt-4o"
        and az.provider_model("gpt-4o-mini") == "mini-deploy"
    )
    # a self-hosted server: no key needed, models read from it, no built-in price
    assert vl.api_key == "" and vl.discovers and vl.max_in_flight == 8
    book = PriceBook((an, ge, az, vl))
    assert book.known("gpt-4o-mini", "az") is not None  # priced as the public model
    vl.discovered.add("gpt-4o-mini")  # a name that happens to match a hosted model's
    assert book.known("gpt-4o-mini", "vl") is None and book.max_price("gpt-4o-mini") is None


def test_a_cache_write_costs_its_own_price_and_a_reservation_assumes_the_dearest() -> None:
    (an,) = parse_upstreams(
        [{"name": "an", "provider": "anthropic", "api_key": "k", "models": ["claude-haiku-4-5"]}],
        env={},
    )
    price = PriceBook((an,)).known("claude-haiku-4-5", "an")
    assert price is not None
    # 1,000 prompt tokens of which 400 written to the cache, 100 out: $1 / $2 (write) / $5 per M
    assert price.cost(1000, 100, 400) == pytest.approx((600 * 1.0 + 400 * 2.0 + 100 * 5.0) / 1e6)
    assert price.worst(1000, 100) == pytest.approx((1000 * 2.0 + 100 * 5.0) / 1e6)
    with pytest.raises(ConfigError, match="cannot be negative"):
        parse_upstreams(
            [
                {
                    "name": "c",
                    "base_url": "http://h/v1",
                    "api_key": "k",
                    "prices": {"m": {"input": 1, "output": 2, "cache_write": -1}},
                }
            ],
            env={},
        )


def test_a_laptops_anthropic_and_gemini_keys_make_in_process_upstreams() -> None:
    from jupyter_server_ext.inprocess import upstreams_from_env

    env = {"ANTHROPIC_API_KEY": "test-anthropic-key", "GEMINI_API_KEY": "AIzaX"}
    specs = parse_upstreams(upstreams_from_env(env), env=env)
    assert [(s.name, s.provider) for s in specs] == [
        ("anthropic", "anthropic"),
        ("gemini", "gemini"),
    ]
    assert all(PriceBook(specs).known(m, s.name) for s in specs for m in s.models)


def test_the_provider_kinds_are_one_registry() -> None:
    """The kinds the setting accepts, their default URLs, the APIs they speak natively and
    whether they run locally all come from one table; no upstream is spoken as a guessed kind."""
    from jupyter_server_ext.engine.upstreams.kinds import KINDS, kind_for

    with pytest.raises(ConfigError) as err:
        parse_upstreams([{"name": "x", "provider": "bedrock", "api_key": "k"}], env={})
    assert str(tuple(KINDS)) in str(err.value)
    anthropic, gemini = parse_upstreams(
        [
            {"name": "an", "provider": "anthropic", "api_key": "k", "models": ["c"]},
            {"name": "ge", "provider": "gemini", "api_key": "k", "models": ["g"]},
        ],
        env={},
    )
    assert (anthropic.base_url, anthropic.native_apis) == (
        "https://api.anthropic.com",
        ("messages",),
    )
    assert gemini.base_url == KINDS["gemini"].default_base_url and gemini.native_apis == ()
    assert [kind_for(s).kind for s in (anthropic, gemini)] == ["anthropic", "gemini"]
    assert not anthropic.window_counts_answer and not anthropic.local
    assert [name for name, kind in KINDS.items() if kind.local] == ["llama_cpp"]
