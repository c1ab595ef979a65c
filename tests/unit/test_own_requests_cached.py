"""Issue 74, must-have 3: the kernel's own requests are made to be cached. Its prompts put what
is stable first (rsql_common.prompt_layout); on an Anthropic upstream, which caches only what is
marked, the proxy marks the end of their system text and of their context; a client's own
requests are left as they are; an upstream that takes prompt_cache_key is sent the
conversation's. Over HTTP, through the hub service's handlers, in front of loopback providers
that cache per account."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from rsql_magic.prompt import ask_messages
from tests.helpers import upstreams_for
from tests.helpers.fake_anthropic import FakeAnthropic
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import Proxy, proxy_starter

CLAUDE_KEY = "test-anthropic-key-own-requests"
SONNET = {
    "input": 3.0,
    "output": 15.0,
    "cache_read": 0.3,
    "cache_write_5m": 3.75,
    "cache_write": 6.0,
}
SCHEMA = "\n".join(
    f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY, amount REAL, region TEXT);" for i in range(60)
)


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic({CLAUDE_KEY: AnthropicKey("claude")}) as fake:
        yield fake


@pytest.fixture
async def proxy(
    tmp_path: Path, fresh_provider: FakeProvider, claude: FakeAnthropic
) -> AsyncIterator[Proxy]:
    upstreams = [
        *upstreams_for(fresh_provider, a1={"prompt_cache_key": True}),
        {
            "name": "claude",
            "provider": "anthropic",
            "base_url": claude.base_url,
            "api_key": CLAUDE_KEY,
            "models": {"claude-small": "claude-fake-small"},
            "prices": {"claude-small": SONNET},
        },
    ]
    async with proxy_starter(tmp_path, fresh_provider) as start:
        yield await start(upstreams=upstreams)


async def ask(
    p: Proxy, body: dict[str, Any], client: str, token: str = "tok-alice"
) -> tuple[float, dict[str, Any]]:
    res = await p.client.fetch(
        p.base + "v1/chat/completions",
        method="POST",
        body=json.dumps(body),
        headers={"Authorization": f"Bearer {token}", "X-RSQL-Client": client},
    )
    return float(res.headers["X-RSQL-Cost-USD"]), json.loads(res.body)


def question(q: str) -> dict[str, Any]:
    """An %%ask question as the kernel sends it: its instructions, a schema, the question."""
    return {"model": "claude-small", "max_tokens": 30, "messages": ask_messages(q, SCHEMA, "sql")}


async def test_the_kernels_questions_read_the_instructions_and_context_from_anthropics_cache(
    proxy: Proxy, claude: FakeAnthropic
) -> None:
    first, _ = await ask(proxy, question("Total amount by region?"), "magic")
    sent = claude.received[-1].body
    assert sent["system"][-1]["cache_control"] == {"type": "ephemeral"}
    context, asked = sent["messages"][0]["content"]
    assert (
        context["cache_control"] == {"type": "ephemeral"} and "CREATE TABLE t59" in context["text"]
    )
    assert "cache_control" not in asked and asked["text"].endswith("Total amount by region?")
    assert claude.received[-1].cache_write > 1000
    second, answer = await ask(proxy, question("Which region sells least?"), "magic")
    assert claude.received[-1].cache_read == claude.received[-2].cache_write
    assert second < first / 3  # the schema is paid for once
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] > 1000


async def test_a_clients_own_requests_are_left_as_they_are(
    proxy: Proxy, claude: FakeAnthropic
) -> None:
    """Marks a client did not ask for would bill a write it may never read: none are added."""
    await ask(proxy, question("Total amount by region?"), "api")
    sent = claude.received[-1].body
    assert "cache_control" not in json.dumps(sent) and claude.received[-1].cache_write == 0
    # a client's own marks go as the client put them
    body = question("Total amount by region?")
    body["messages"][1] = {
        **body["messages"][1],
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
    }
    await ask(proxy, body, "magic")
    sent = claude.received[-1].body
    assert "cache_control" not in json.dumps(sent["system"])
    assert sent["messages"][0]["content"][-1]["cache_control"]["ttl"] == "1h"


async def test_an_upstream_that_takes_prompt_cache_key_gets_the_conversations(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    """One key per user and conversation (the affinity's digest: no prompt text, no name); a
    client's own key goes as it is."""
    body = {**question("Total amount by region?"), "model": "fake-small"}
    for _ in range(2):
        await ask(proxy, body, "magic")
    keys = [r.body.get("prompt_cache_key") for r in fresh_provider.received if r.alias == "a1"]
    sent = [r.body.get("prompt_cache_key") for r in fresh_provider.received]
    assert keys and all(isinstance(k, str) and len(k) == 32 for k in keys)
    assert len(set(keys)) == 1 and "alice" not in keys[0]
    assert all(
        k is None for r, k in zip(fresh_provider.received, sent, strict=True) if r.alias != "a1"
    )
    await ask(proxy, {**body, "prompt_cache_key": "mine"}, "api")
    assert fresh_provider.received[-1].body["prompt_cache_key"] == "mine"


async def test_the_prompt_cache_key_is_the_users_and_the_conversations_own(
    tmp_path: Path, fresh_provider: FakeProvider
) -> None:
    """The same conversation of the same user: one key every turn; another user's, or another
    conversation of the same user: another key (a1 alone serves the model here, so every
    request reaches the upstream that takes the key)."""
    upstreams = upstreams_for(
        fresh_provider,
        a1={"prompt_cache_key": True},
        a2={"models": ["fake-large"]},
        b1={"models": ["fake-large"]},
    )
    async with proxy_starter(tmp_path, fresh_provider) as start:
        p = await start(upstreams=upstreams)
        body = {**question("Total amount by region?"), "model": "fake-small"}
        other = {**question("Which customers ordered twice?"), "model": "fake-small"}
        other["messages"][0] = {**other["messages"][0], "content": "Another course's notes."}
        for token, asked in (("tok-alice", body), ("tok-alice", body), ("tok-bob", body)):
            await ask(p, asked, "magic", token)
        await ask(p, other, "magic")
    keys = [r.body.get("prompt_cache_key") for r in fresh_provider.received]
    assert len(keys) == 4 and all(isinstance(k, str) and len(k) == 32 for k in keys), keys
    alice, again, bob, elsewhere = keys
    assert alice == again and len({alice, bob, elsewhere}) == 3, keys
