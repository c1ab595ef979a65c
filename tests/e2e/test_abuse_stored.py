"""A hostile hub user against stored responses (the Responses API's `store` and
`previous_response_id`), over HTTP against a real rsql-proxy service (issue 53, finding 1).

What is stored is what the upstream saw, bounded like a request body; reading or continuing a
stored response is counted in the user's windows before any record is read. With redaction on,
no personal value is kept at rest: tests/e2e/test_abuse_proxy.py (its service redacts).
Replicas sharing stored responses through Redis, and the per-user cap under concurrent writers:
tests/e2e/test_stored_responses_redis.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService, start_service

pytestmark = pytest.mark.slow

PRICED = {"prices": {"fake-small": {"input": 1.0, "output": 1.0}}}
# b1 speaks the Responses API: a request to its model goes upstream as sent, items and all
NATIVE = {
    "models": {"native-small": "fake-small"},
    "prices": {"native-small": {"input": 1.0, "output": 1.0}},
    "responses_api": True,
}
MAX_BODY = 512 * 1024
# what no chat message carries (an upstream that speaks the API is sent one with its content)
REASONING = {"type": "reasoning", "summary": [], "encrypted_content": "gAAA-opaque"}


@pytest.fixture(scope="module")
def svc(provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyService]:
    service = start_service(
        tmp_path_factory.mktemp("abuse-stored"),
        {
            "upstreams": upstreams_for(provider, a1=PRICED, a2=PRICED, b1=NATIVE),
            "default_model": "fake-small",
            "health_check_seconds": 0.0,
            "max_body_bytes": MAX_BODY,
            "limit_overrides": {"user:rex": {"user_limits": ["3/minute"]}},
        },
        static_users={f"tok-{u}": {"name": u} for u in ("mal", "rex", "liz")},
    )
    yield service
    service.stop()


def call(
    svc: ProxyService, method: str, path: str, user: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    status, _, raw = svc.request(method, path, body, token=f"tok-{user}", timeout=60)
    return status, json.loads(raw) if raw else {}


def respond(svc: ProxyService, user: str, **body: Any) -> tuple[int, dict[str, Any]]:
    return call(svc, "POST", "v1/responses", user, {"model": "fake-small", **body})


def test_a_conversation_keeps_only_what_the_upstream_saw(
    svc: ProxyService, fresh_provider: FakeProvider
) -> None:
    """Reasoning items go to no chat upstream, unbilled: they must not pile up in the stored
    conversation, where a chain of cheap requests grew one record to 418,000 items. Continued
    on an upstream that speaks the API (which is sent every stored item), none arrive."""
    earlier = None
    for turn in range(4):
        items = [REASONING] * 1_000 + [{"role": "user", "content": f"turn {turn}"}]
        extra = {"previous_response_id": earlier} if earlier else {}
        status, body = respond(svc, "mal", input=items, **extra)
        assert status == 200, body
        earlier = body["id"]
    status, body = call(
        svc,
        "POST",
        "v1/responses",
        "mal",
        {"model": "native-small", "input": "and now?", "previous_response_id": earlier},
    )
    assert status == 200, body
    sent = fresh_provider.received[-1].body["input"]
    kinds = [i.get("type", "message") for i in sent]
    assert "reasoning" not in kinds, f"{kinds.count('reasoning')} reasoning items were kept"
    said = [i["content"] for i in sent if i.get("role") == "user"]
    assert said == ["turn 0", "turn 1", "turn 2", "turn 3", "and now?"], said
    assert len(sent) == 9  # four questions, four answers, the new one


def test_reading_or_continuing_a_stored_response_is_counted_before_anything_is_read(
    svc: ProxyService,
) -> None:
    """rex may send 3 requests a minute. Reading a stored response is a request: it counts, and
    past the window every read, continuation and delete is a 429 before any record is read (a
    missing id gets the 429 too, not the 404 a read would find)."""
    status, first = respond(svc, "rex", input="hello")
    assert status == 200, first
    path = f"v1/responses/{first['id']}"
    assert call(svc, "GET", path, "rex")[0] == 200
    assert call(svc, "GET", path, "rex")[0] == 200
    for method, where, body in (
        ("GET", path, None),
        ("DELETE", path, None),
        (
            "POST",
            "v1/responses",
            {"model": "fake-small", "input": "again", "previous_response_id": first["id"]},
        ),
        (
            "POST",
            "v1/responses",
            {"model": "fake-small", "input": "x", "previous_response_id": "resp_nosuch"},
        ),
    ):
        status, _, raw = svc.request(method, where, body, token="tok-rex", timeout=30)
        assert status == 429, (method, where, raw)
        assert b"user 3/minute" in raw


def test_a_conversation_past_a_request_bodys_bounds_is_not_kept_for_continuing(
    svc: ProxyService,
) -> None:
    """A stored conversation is read back as a request body is: one larger than a body may be
    (max_body_bytes) is not kept for continuing, and continuing it says why; the response
    itself is still there to read."""
    text = "word " * 60_000  # 300 kB: each request is within the 512 kB a body may be
    status, first = respond(svc, "liz", input=text)
    assert status == 200, first
    status, second = respond(svc, "liz", input=text, previous_response_id=first["id"])
    assert status == 200, second  # its conversation (both texts, 600 kB) went upstream whole
    assert call(svc, "GET", f"v1/responses/{second['id']}", "liz")[1]["id"] == second["id"]
    status, body = respond(svc, "liz", input="more", previous_response_id=second["id"])
    assert status == 413, body
    assert body["error"]["code"] == "conversation_too_long"
    assert "max_body_bytes" in body["error"]["message"]
    assert body["error"]["param"] == "previous_response_id"
