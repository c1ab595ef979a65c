"""ProxyClient over real HTTP: the loopback fake provider speaks the same OpenAI protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsql_magic.client import ProxyClient, ProxyError, find_local_server
from tests.helpers.fake_provider import FakeProvider

KEY = "sk-test-a1-fake0123456789"  # conftest's provider: alias a1, account acct-a


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No discovery hints from the outer environment; an empty runtime dir."""
    import os

    for k in list(os.environ):
        if (
            k.startswith(("RSQL_", "JUPYTERHUB_"))
            or k.endswith("_API_KEY")
            or k == "JPY_PARENT_PID"
        ):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("RSQL_LOCAL_MODEL", "off")  # the local model is tested on its own
    rt = tmp_path / "runtime"
    rt.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(rt))
    return rt


def client_for(fp: FakeProvider, key: str = KEY) -> ProxyClient:
    return ProxyClient(f"http://127.0.0.1:{fp.port}/", key, timeout=10)


def test_chat_plain(fresh_provider: FakeProvider) -> None:
    fresh_provider.script("the answer")
    res = client_for(fresh_provider).chat([{"role": "user", "content": "q?"}], model="fake-small")
    assert res.text == "the answer"
    assert res.model == "fake-small"
    assert res.usage["completion_tokens"] == 2
    assert res.latency_s > 0
    assert fresh_provider.received[-1].body["messages"] == [{"role": "user", "content": "q?"}]
    assert "stream" not in fresh_provider.received[-1].body


def test_chat_stream_deltas(fresh_provider: FakeProvider) -> None:
    fresh_provider.script("one two three four")
    pieces: list[str] = []
    res = client_for(fresh_provider).chat(
        [{"role": "user", "content": "q"}], model="fake-small", stream=True, on_delta=pieces.append
    )
    assert res.text == "one two three four"
    assert len(pieces) == 4 and "".join(pieces) == res.text
    assert res.usage["completion_tokens"] == 4  # the final usage chunk was asked for and read
    body = fresh_provider.received[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_stream_that_dies_is_an_error(fresh_provider: FakeProvider) -> None:
    fresh_provider.set_fault("a1", "die_mid_stream", count=1)
    with pytest.raises(ProxyError) as ei:
        client_for(fresh_provider).chat(
            [{"role": "user", "content": "a b c d e f g h i j"}], model="fake-small", stream=True
        )
    assert ei.value.status == 502


def test_rate_limit_error_says_limit_and_reset(fresh_provider: FakeProvider) -> None:
    fresh_provider.keys[KEY].limit = 1
    fresh_provider.keys[KEY].window = 30
    c = client_for(fresh_provider)
    c.chat([{"role": "user", "content": "first"}], model="fake-small")
    with pytest.raises(ProxyError) as ei:
        c.chat([{"role": "user", "content": "second"}], model="fake-small")
    e = ei.value
    assert e.status == 429
    assert e.retry_after is not None and 1 <= e.retry_after <= 31
    assert e.reset  # from the body's "reset", else derived from Retry-After
    assert "rate limited (429)" in str(e) and "retry after" in str(e)


def test_http_errors(fresh_provider: FakeProvider) -> None:
    fresh_provider.set_fault("a1", "status", status=500, count=1)
    with pytest.raises(ProxyError) as ei:
        client_for(fresh_provider).chat([{"role": "user", "content": "x"}], model="fake-small")
    assert ei.value.status == 500 and "upstream fault injected" in ei.value.message
    with pytest.raises(ProxyError) as ei:
        client_for(fresh_provider, "sk-wrong").chat(
            [{"role": "user", "content": "x"}], model="fake-small"
        )
    assert ei.value.status == 401


def test_unreachable_proxy() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ProxyError) as ei:
        ProxyClient(f"http://127.0.0.1:{port}/rsql/", None, timeout=5).chat(
            [{"role": "user", "content": "x"}]
        )
    assert ei.value.status == 0 and "cannot reach the proxy" in str(ei.value)


def test_discovery_order(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # nothing configured: the error explains every way to configure a proxy
    with pytest.raises(ProxyError) as ei:
        ProxyClient.discover()
    msg = str(ei.value)
    assert ei.value.status == 0 and "no proxy found" in msg
    for hint in (
        "RSQLMagic.proxy_url",
        "RSQL_PROXY_URL",
        "JUPYTERHUB_API_TOKEN",
        "JPY_PARENT_PID",
        "GROQ_API_KEY",
        "OPENAI_BASE_URL",
        "RSQL_UPSTREAMS",
        "RSQL_LOCAL_MODEL",
        "jupyter server",
    ):
        assert hint in msg

    # the local Jupyter server the kernel runs under
    (clean_env / "jpserver-4242.json").write_text(
        json.dumps({"url": "http://127.0.0.1:9999/base/", "token": "srvtok", "pid": 4242})
    )
    (clean_env / "jpserver-1111.json").write_text(
        json.dumps({"url": "http://other/", "token": "x"})
    )
    monkeypatch.setenv("JPY_PARENT_PID", "4242")
    c = ProxyClient.discover()
    assert c.base_url == "http://127.0.0.1:9999/base/rsql/" and c.token == "srvtok"
    assert c.description == "local Jupyter server http://127.0.0.1:9999/base/ (jpserver-4242.json)"
    assert find_local_server("7777") is None

    # RSQL_PROXY_URL beats the local server; JUPYTERHUB_API_TOKEN is the token fallback
    monkeypatch.setenv("RSQL_PROXY_URL", "https://hub.example.org/services/rsql")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hubtok")
    c = ProxyClient.discover()
    assert c.base_url == "https://hub.example.org/services/rsql/" and c.token == "hubtok"
    assert c.description.startswith("RSQL_PROXY_URL ")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", "rsqltok")
    assert ProxyClient.discover().token == "rsqltok"

    # explicit configuration beats everything
    c = ProxyClient.discover("http://explicit:1/rsql/", "t0")
    assert (c.base_url, c.token) == ("http://explicit:1/rsql/", "t0")
    assert "configured" in c.description


def test_error_body_parsing() -> None:
    from rsql_magic.client.answers import error_from

    body = json.dumps(
        {
            "error": {
                "message": "user daily token budget exhausted",
                "type": "rate_limit_error",
                "code": "user_budget",
                "limit": "user tokens/day",
                "reset": "2026-01-01T00:00:00Z",
            }
        }
    )
    e = error_from(429, body, {"Retry-After": "3600"})
    assert (e.status, e.limit, e.reset, e.retry_after, e.code) == (
        429,
        "user tokens/day",
        "2026-01-01T00:00:00Z",
        3600.0,
        "user_budget",
    )
    assert "limit: user tokens/day" in str(e) and "resets: 2026-01-01" in str(e)
    e = error_from(502, b"upstream said: bad gateway", {})
    assert e.status == 502 and "bad gateway" in e.message
    e = error_from(404, b"<!DOCTYPE HTML><html><title>Jupyter Server</title></html>", {})
    assert e.status == 404 and "HTML page" in e.message and "<html" not in e.message
