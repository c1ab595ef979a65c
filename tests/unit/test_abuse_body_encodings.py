"""Issue 73, finding 3: bodies that are not UTF-8. Python's JSON reader takes UTF-16 and UTF-32
by their first bytes, but the checks before the parse read the bytes as UTF-8: in UTF-16 a
character such as U+2200 carries a quote byte, so the exact count of objects took the 600,000
that follow it for text inside a string, and the body was parsed object by object on the event
loop and forwarded whole. JSON on the wire is UTF-8 (RFC 8259, section 8.1): such a body is a
400 now, before any count or parse. Over HTTP, through the hub service's handlers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import Proxy, proxy_starter


@pytest.fixture
async def proxy(tmp_path: Path, fresh_provider: FakeProvider) -> AsyncIterator[Proxy]:
    async with proxy_starter(tmp_path, fresh_provider) as start:
        yield await start()


async def post_raw(p: Proxy, raw: bytes) -> tuple[int, Any]:
    res = await p.client.fetch(
        p.base + "v1/chat/completions",
        method="POST",
        raise_error=False,
        body=raw,
        headers={"Authorization": "Bearer tok-alice", "Content-Type": "application/json"},
        request_timeout=60,
    )
    return res.code, json.loads(res.body) if res.body else {}


def body_text(content: str, padding: str = "") -> str:
    """A chat completion's JSON text, with an unread field `padding` (raw JSON) after it."""
    text = json.dumps({"model": "fake-small", "messages": [{"role": "user", "content": content}]})
    return text[:-1] + (f', "pad": {padding}' if padding else "") + "}"


def not_utf8(status: int, answer: Any) -> bool:
    return status == 400 and "not UTF-8" in answer["error"]["message"]


async def test_a_utf16_body_of_many_objects_is_refused_before_it_is_counted_or_parsed(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    # U+2200 in UTF-16-LE is the bytes 00 22: a quote byte, so every bracket after it looked
    # like text in a string to the exact count, and 600,000 objects (cap 20,000) passed
    raw = body_text("\u2200", "[" + ",".join(["{}"] * 600_000) + "]").encode("utf-16-le")
    status, answer = await post_raw(proxy, raw)
    assert not_utf8(status, answer), (status, answer)
    assert fresh_provider.received == []


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        ('"\\ud800 alone"', "utf-16-le"),  # a lone surrogate: a 500 (the cache key) before
        ("1e999", "utf-16-be"),  # infinity: it reached the provider as `inf` before
        ('"hello"', "utf-32"),
        ('"hello"', "utf-16"),  # with its byte order mark
    ],
    ids=["lone-surrogate", "huge-number", "utf-32", "utf-16-bom"],
)
async def test_every_body_not_in_utf8_is_a_400_naming_why(
    proxy: Proxy, fresh_provider: FakeProvider, content: str, encoding: str
) -> None:
    text = body_text("hi")[:-1] + f', "pad": {content}' + "}"
    status, answer = await post_raw(proxy, text.encode(encoding))
    assert not_utf8(status, answer), (status, answer)
    assert fresh_provider.received == []


async def test_utf8_with_or_without_a_byte_order_mark_is_read_as_before(
    proxy: Proxy, fresh_provider: FakeProvider
) -> None:
    """The control: RFC 8259 lets a reader ignore a UTF-8 byte order mark, as Python's does."""
    for raw in (body_text("Grüße ∀").encode(), b"\xef\xbb\xbf" + body_text("Grüße ∀").encode()):
        status, answer = await post_raw(proxy, raw)
        assert status == 200, answer
        sent = fresh_provider.received[-1].body["messages"][0]["content"]
        assert sent == "Grüße ∀"
    # the same checks still hold for UTF-8 itself
    status, answer = await post_raw(proxy, body_text("x", "1e999").encode())
    assert status == 400 and "out of range" in answer["error"]["message"], answer
