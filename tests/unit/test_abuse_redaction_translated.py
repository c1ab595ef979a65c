"""Issue 73, also found: what a translated request's chat form carries besides its text. With
redaction on, the Messages and Responses APIs are translated to chat completions (so the
redaction reads them); the chat form's tool-call arguments, a free-form tool's input, the tools'
descriptions, a document's title and an image's URL went to the provider unmasked. Over HTTP,
through the hub service's handlers, to a chat upstream."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import Proxy, proxy_starter

EMAIL = "bob.jones@example.org"


@pytest.fixture
async def proxy(tmp_path: Path, fresh_provider: FakeProvider) -> AsyncIterator[Proxy]:
    async with proxy_starter(tmp_path, fresh_provider) as start:
        yield await start(redact_patterns=["email"])


def sent_text(fp: FakeProvider) -> str:
    return json.dumps(fp.received[-1].body)


async def test_a_messages_requests_calls_tools_titles_and_urls_are_redacted(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    pdf = base64.b64encode(b"%PDF-1.4\n<< /Type /Pages /Count 1 >>\n%%EOF\n").decode()
    body = {
        "model": "fake-small",
        "max_tokens": 50,
        "tools": [
            {
                "name": "lookup",
                "description": f"Finds a customer; the admin is {EMAIL}",
                "input_schema": {
                    "type": "object",
                    "properties": {"who": {"type": "string", "description": f"e.g. {EMAIL}"}},
                },
            }
        ],
        "messages": [
            {"role": "user", "content": "find him"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"who": EMAIL}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found"},
                    {
                        "type": "document",
                        "title": f"letter to {EMAIL}",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
                    },
                    {
                        "type": "image",
                        "source": {
                            "type": "url",
                            "url": f"https://img.example.com/a.png?u={EMAIL}",
                        },
                    },
                    {"type": "text", "text": "what now?"},
                ],
            },
        ],
    }
    status, answer = await proxy.call("POST", "v1/messages", "tok-alice", body)
    assert status == 200, answer
    sent = sent_text(fresh_provider)
    assert EMAIL not in sent
    assert sent.count("<email-1>") >= 5  # one value, one placeholder, wherever it was
    call = fresh_provider.received[-1].body["messages"][1]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"who": "<email-1>"}  # still JSON


async def test_a_responses_requests_calls_and_free_form_input_are_redacted(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    body = {
        "model": "fake-small",
        "input": [
            {"role": "user", "content": "mail him"},
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "send",
                "arguments": json.dumps({"to": EMAIL, "n": 4111111111111111}),
            },
            {"type": "function_call_output", "call_id": "c1", "output": "sent"},
            {"type": "custom_tool_call", "call_id": "c2", "name": "note", "input": f"cc {EMAIL}"},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": "ok"},
        ],
        "tools": [
            {"type": "function", "name": "send", "description": f"from {EMAIL}"},
            {"type": "custom", "name": "note", "description": "a note"},
        ],
    }
    status, answer = await proxy.call("POST", "v1/responses", "tok-alice", body)
    assert status == 200, answer
    sent = sent_text(fresh_provider)
    assert EMAIL not in sent
    calls = fresh_provider.received[-1].body["messages"][1]["tool_calls"]
    args = json.loads(calls[0]["function"]["arguments"])
    assert args == {"to": "<email-1>", "n": 4111111111111111}  # a number stays a number
