"""Agent mode off (a policy window with ``"agent": false``, a group's or everyone's switch) is
decided by what a request does: every request that offers the model tools is refused, on every
API, whatever ``X-RSQL-Client`` says; plain questions go on. Over HTTP through the hub service's
handlers (static tokens for hub users), with an OpenAI-compatible and an Anthropic upstream, the
requests shaped as Claude Code, Codex and the SDKs send them (issue 53, finding 4). The real
CLIs in such a window: tests/e2e/test_ai_tools.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_anthropic import FakeAnthropic
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import Proxy, proxy_starter

CLAUDE_KEY = "test-anthropic-key-agent-windows"
LAB = {
    "name": "exam",
    "groups": ["students"],
    "mode": "custom",
    "models": ["*"],
    "agent": False,
    "message": "Exam: no agents",
    "start": "2027-01-15T07:00:00Z",  # the test clock starts at 08:00 UTC
    "end": "2027-01-15T10:00:00Z",
}
SCHEMA = {"type": "object", "properties": {"command": {"type": "string"}}}
# each API's request as the tools send it, with the tools they offer and without them
CHAT_TOOLS = {
    "model": "fake-small",
    "messages": [{"role": "user", "content": "list the files"}],
    "tools": [{"type": "function", "function": {"name": "shell", "parameters": SCHEMA}}],
}
CHAT_FUNCTIONS = {  # the legacy form, which the proxy still takes
    "model": "fake-small",
    "messages": [{"role": "user", "content": "list the files"}],
    "functions": [{"name": "shell", "parameters": SCHEMA}],
}
RESPONSES_TOOLS = {  # Codex: function tools, and a namespace of MCP tools the hub set up
    "model": "fake-small",
    "instructions": "You are Codex.",
    "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ls"}]}
    ],
    "tools": [
        {"type": "function", "name": "shell", "parameters": SCHEMA},
        {
            "type": "namespace",
            "name": "mcp__rsql",
            "tools": [{"type": "function", "name": "run_sql", "parameters": SCHEMA}],
        },
    ],
    "stream": False,
}
MESSAGES_TOOLS = {  # Claude Code: system blocks, its tools, and no header of ours
    "max_tokens": 200,
    "system": [{"type": "text", "text": "You are Claude Code."}],
    "messages": [{"role": "user", "content": [{"type": "text", "text": "ls"}]}],
    "tools": [{"name": "Bash", "description": "Run a command", "input_schema": SCHEMA}],
}


def without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in names}


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic({CLAUDE_KEY: AnthropicKey("claude")}) as fake:
        yield fake


@pytest.fixture
async def start_proxy(
    tmp_path: Path, fresh_provider: FakeProvider, claude: FakeAnthropic
) -> AsyncIterator[Callable[..., Any]]:
    upstreams = [
        *upstreams_for(fresh_provider),
        {
            "name": "claude",
            "provider": "anthropic",
            "base_url": claude.base_url,
            "api_key": CLAUDE_KEY,
            "models": {"claude-small": "claude-fake-small"},
        },
    ]
    async with proxy_starter(tmp_path, fresh_provider) as start:
        yield lambda **config: start(upstreams=upstreams, **config)


def sent(fresh_provider: FakeProvider, claude: FakeAnthropic) -> int:
    return len(fresh_provider.received) + len(claude.received)


async def refused_everywhere(
    p: Proxy, token: str, code: str, says: str, fresh_provider: FakeProvider, claude: FakeAnthropic
) -> None:
    """Every API's request that offers tools is a 403 naming the field, whatever the client
    header claims; nothing reaches a provider; the same requests without tools are answered."""
    before = sent(fresh_provider, claude)
    cases = [
        ("v1/chat/completions", CHAT_TOOLS, "tools"),
        ("v1/chat/completions", CHAT_FUNCTIONS, "functions"),
        ("v1/responses", RESPONSES_TOOLS, "tools"),
        ("v1/messages", {**MESSAGES_TOOLS, "model": "fake-small"}, "tools"),  # translated
        ("v1/messages", {**MESSAGES_TOOLS, "model": "claude-small"}, "tools"),  # sent as it is
    ]
    for path, body, field in cases:
        for claim in ({}, {"X-RSQL-Client": "chat"}, {"X-RSQL-Client": "inline"}):
            status, answer = await p.call("POST", path, token, body, claim)
            assert status == 403, (path, claim, answer)
            err = answer["error"]
            if path == "v1/messages":  # Anthropic's own error shape, for Claude Code
                assert answer["type"] == "error" and err["type"] == "permission_error"
            else:
                assert err["code"] == code and err["param"] == field
            assert says in err["message"] and repr(field) in err["message"]
    assert sent(fresh_provider, claude) == before  # refused before anything was sent
    for path, body, _ in cases:  # a plain question on every API goes on
        status, answer = await p.call("POST", path, token, without(body, "tools", "functions"))
        assert status == 200, (path, answer)
    status, _ = await p.call("POST", "v1/chat/completions", token, {**CHAT_TOOLS, "tools": []})
    assert status == 200  # an empty list offers nothing


async def test_a_window_without_agents_refuses_every_request_that_offers_tools_on_every_api(
    start_proxy, fresh_provider: FakeProvider, claude: FakeAnthropic
) -> None:
    p = await start_proxy(policy_windows=[LAB])
    await refused_everywhere(
        p, "tok-alice", "policy_window", "Exam: no agents", fresh_provider, claude
    )
    # a user outside the window keeps their agents; inside it after it ends, too
    assert (await p.call("POST", "v1/chat/completions", "tok-carol", CHAT_TOOLS))[0] == 200
    await p.step(3 * 3600)
    assert (await p.call("POST", "v1/chat/completions", "tok-alice", CHAT_TOOLS))[0] == 200
    assert (
        await p.call(
            "POST", "v1/messages", "tok-alice", {**MESSAGES_TOOLS, "model": "claude-small"}
        )
    )[0] == 200


async def test_agent_mode_off_for_a_group_refuses_tools_from_any_client(
    start_proxy, fresh_provider: FakeProvider, claude: FakeAnthropic
) -> None:
    p = await start_proxy(limit_overrides={"group:students": {"agent": False}})
    await refused_everywhere(
        p, "tok-alice", "agent_off", "agent mode is off", fresh_provider, claude
    )
    assert (await p.call("POST", "v1/responses", "tok-carol", RESPONSES_TOOLS))[0] == 200
