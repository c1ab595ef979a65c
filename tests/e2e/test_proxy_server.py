"""The proxy inside a real Jupyter server, used the way users use it: the `openai` client. A bad
configuration stopping the server: tests/unit/test_proxy_config.py."""

from __future__ import annotations

import json
import re

import openai
import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import JupyterServer

pytestmark = pytest.mark.slow

KEY_TEXT = re.compile(r"sk-test-[a-z0-9]{2}-fake[0-9]+")


def client(server: JupyterServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.proxy_url + "v1", api_key=server.token, max_retries=0)


def test_openai_client_non_streaming(jupyter_proxy: JupyterServer, provider: FakeProvider) -> None:
    provider.reset()
    resp = client(jupyter_proxy).chat.completions.with_raw_response.create(
        model="fake-small", messages=[{"role": "user", "content": "what is a tibble?"}]
    )
    completion = resp.parse()
    assert completion.choices[0].message.content == "Fake answer to: what is a tibble?"
    assert completion.usage.total_tokens > 0
    assert resp.headers["x-rsql-upstream"] in {"a1", "a2", "b1"}
    assert provider.received[-1].body["messages"][0]["content"] == "what is a tibble?"


def test_openai_client_streaming(jupyter_proxy: JupyterServer, provider: FakeProvider) -> None:
    provider.reset()
    stream = client(jupyter_proxy).chat.completions.create(
        model="fake-small",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Fake answer to: one two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_default_model_and_models_list(
    jupyter_proxy: JupyterServer, provider: FakeProvider
) -> None:
    c = client(jupyter_proxy)
    assert {m.id for m in c.models.list()} == {"fake-small", "fake-large"}
    status, _, body = jupyter_proxy.request(
        "POST", "v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}
    )
    assert status == 200
    assert provider.received[-1].body["model"] == "fake-small"


def test_load_spreads_over_keys_through_the_server(
    jupyter_proxy: JupyterServer, provider: FakeProvider
) -> None:
    provider.reset()
    c = client(jupyter_proxy)
    for _ in range(12):
        c.chat.completions.create(model="fake-small", messages=[{"role": "user", "content": "x"}])
    counts = provider.count_by_alias()
    assert set(counts) == {"a1", "a2", "b1"} and min(counts.values()) >= 3


def test_failover_is_invisible_to_the_client(
    jupyter_proxy: JupyterServer, provider: FakeProvider
) -> None:
    provider.reset()
    provider.set_fault("a1", "status", status=500, count=1)
    provider.set_fault("a2", "status", status=502, count=1)
    c = client(jupyter_proxy)
    for stream in (False, True):
        for _ in range(3):
            r = c.chat.completions.create(
                model="fake-small", messages=[{"role": "user", "content": "ok?"}], stream=stream
            )
            text = (
                r.choices[0].message.content
                if not stream
                else "".join(ch.choices[0].delta.content or "" for ch in r if ch.choices)
            )
            assert text == "Fake answer to: ok?"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"model": "fake-small"}).encode(), "'messages'"),
        (
            json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(),
            "messages[0].role",
        ),
        (
            json.dumps({"messages": [{"role": "user", "content": "x"}], "max_tokens": -3}).encode(),
            "max_tokens",
        ),
        (
            json.dumps(
                {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}
            ).encode(),
            "temperature",
        ),
        (
            json.dumps({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}).encode(),
            "stream",
        ),
    ],
)
def test_malformed_requests_get_a_clear_400(
    jupyter_proxy: JupyterServer, body: bytes, needle: str
) -> None:
    status, headers, raw = jupyter_proxy.request("POST", "v1/chat/completions", body)
    assert status == 400
    err = json.loads(raw)["error"]
    assert needle in err["message"]
    assert err["type"] == "invalid_request_error"


def test_unknown_model_is_404_naming_the_models(jupyter_proxy: JupyterServer) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client(jupyter_proxy).chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "x"}]
        )
    assert "fake-small" in str(err.value)


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_requests_without_valid_credentials_are_refused(
    jupyter_proxy: JupyterServer, provider: FakeProvider, token: str | None
) -> None:
    provider.reset()
    status, _, raw = jupyter_proxy.request(
        "POST", "v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, token=token
    )
    assert status == 401
    assert "token" in json.loads(raw)["error"]["message"]
    assert provider.received == []  # cost nothing upstream


def test_all_capacity_spent_waits_then_429_with_retry_after(
    jupyter_server_factory, fresh_provider: FakeProvider
) -> None:
    limits = {"limits": ["1 per 60 seconds"]}
    server = jupyter_server_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=limits, b1=limits),
            "default_model": "fake-small",
            "max_wait_seconds": 1.0,
        }
    )
    c = client(server)
    for _ in range(2):
        c.chat.completions.create(model="fake-small", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError) as err:
        c.chat.completions.create(model="fake-small", messages=[{"role": "user", "content": "x"}])
    retry_after = int(err.value.response.headers["retry-after"])
    assert 50 <= retry_after <= 61
    body = err.value.response.json()["error"]
    assert body["type"] == "rate_limit_error" and body["retry_after"] == retry_after
    assert fresh_provider.too_many == 0


def test_no_key_text_in_responses_or_logs(
    jupyter_server_factory, fresh_provider: FakeProvider
) -> None:
    bad = "sk-test-zz-fake0123456789"  # a key the provider rejects
    server = jupyter_server_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1={"api_key": bad}),
            "default_model": "fake-small",
            "max_wait_seconds": 1.0,
        }
    )
    fresh_provider.set_fault("b1", "status", status=500)
    seen: list[str] = []
    c = client(server)
    for _ in range(6):
        r = c.chat.completions.with_raw_response.create(
            model="fake-small", messages=[{"role": "user", "content": "x"}]
        )
        seen.append(r.text() if callable(getattr(r, "text", None)) else r.http_response.text)
        seen.append(json.dumps(dict(r.headers)))
    for alias in ("a1", "a2", "b1"):
        fresh_provider.set_fault(alias, "status", status=503)
    with pytest.raises(openai.APIStatusError) as err:
        c.chat.completions.create(model="fake-small", messages=[{"role": "user", "content": "x"}])
    seen.append(err.value.response.text)
    seen.append(json.dumps(dict(err.value.response.headers)))
    for path in ("v1/models",):
        seen.append(server.request("GET", path)[2].decode())
    server.stop()
    seen.append(server.log())
    everything = "\n".join(seen)
    assert "a1" in server.log() and "rejected" in server.log()  # the key is named by alias
    assert not KEY_TEXT.search(everything), KEY_TEXT.search(everything)
    assert bad not in everything


def test_the_servers_start_is_frozen_for_the_collector(jupyter_proxy: JupyterServer) -> None:
    """By default (c.RSQLProxy.freeze_startup_objects) what a `jupyter server` process's start
    made is frozen once it runs, before it answers anything, and its log says how much: a full
    collection then walks only what came since (tests/unit/test_extension_gc.py)."""
    status, _, _ = jupyter_proxy.request("GET", "status")
    assert status == 200
    found = re.search(
        r"rsql proxy: (\d+) objects of the server's start frozen", jupyter_proxy.log()
    )
    assert found is not None, jupyter_proxy.log()[-3000:]
    assert int(found.group(1)) > 20_000
