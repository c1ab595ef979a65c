"""Per-user limits, budgets, leases and the 429s users get, over HTTP in a Jupyter server in this
process (pytest-jupyter)."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import InProcessJupyter

ASK = {"model": "fake-small", "messages": [{"role": "user", "content": "hello"}]}
PRICED = {"prices": {"fake-small": {"input": 1000.0, "output": 1000.0}}}  # $0.001 per token


def chat(server: InProcessJupyter, token: str, body: dict | None = None, **headers: str):
    return server.request("POST", "v1/chat/completions", body or ASK, token=token, headers=headers)


def me(server: InProcessJupyter, token: str) -> dict:
    status, _, raw = server.request("GET", "me", token=token)
    assert status == 200, raw
    return json.loads(raw)


@pytest.fixture
def limited(jupyter_app_factory, fresh_provider: FakeProvider) -> InProcessJupyter:
    return jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "user_limits": ["3 per 2 seconds", "5/hour"],
            "limit_overrides": {"user:carol": {"user_limits": ["100/minute"]}},
        },
        named_users=True,
    )


def test_moving_window_counts_exactly_at_its_edge(
    limited: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    t1_start = time.monotonic()
    assert chat(limited, "tok-alice")[0] == 200
    t1_end = time.monotonic()
    time.sleep(0.5)  # the other two come later, so only the first leaves at the edge
    assert [chat(limited, "tok-alice")[0] for _ in range(2)] == [200, 200]
    status, headers, raw = chat(limited, "tok-alice")
    assert status == 429
    assert json.loads(raw)["error"]["limit"] == "user 3 per 2 seconds"
    # just before the first request leaves the window: still refused
    time.sleep(max(0.0, t1_start + 1.85 - time.monotonic()))
    assert chat(limited, "tok-alice")[0] == 429
    # once it has left (2 s after it was counted), exactly one more fits
    time.sleep(max(0.0, t1_end + 2.05 - time.monotonic()))
    assert chat(limited, "tok-alice")[0] == 200
    assert chat(limited, "tok-alice")[0] == 429
    # the hour window counted only the 4 admitted requests: refused ones consumed nothing
    hour = next(w for w in me(limited, "tok-alice")["limits"] if w["limit"] == "5/hour")
    assert (hour["used"], hour["remaining"]) == (4, 1)
    assert sum(fresh_provider.count_by_alias().values()) == 4


def test_users_have_their_own_windows_and_overrides(limited: InProcessJupyter) -> None:
    assert [chat(limited, "tok-alice")[0] for _ in range(4)] == [200, 200, 200, 429]
    assert [chat(limited, "tok-bob")[0] for _ in range(3)] == [200, 200, 200]  # alice's use is hers
    assert all(chat(limited, "tok-carol")[0] == 200 for _ in range(8))  # carol's own limits
    assert me(limited, "tok-carol")["limits"][0]["limit"] == "100/minute"


def test_429_carries_retry_after_and_ratelimit_headers(limited: InProcessJupyter) -> None:
    for _ in range(3):
        chat(limited, "tok-bob")
    status, headers, raw = chat(limited, "tok-bob")
    assert status == 429
    retry = int(headers["retry-after"])
    assert 1 <= retry <= 2
    assert '"user 3 per 2 seconds";q=3;w=2' in headers["ratelimit-policy"]
    assert '"user 5/hour";q=5;w=3600' in headers["ratelimit-policy"]
    assert headers["ratelimit"] == f'"user 3 per 2 seconds";r=0;t={retry}'
    err = json.loads(raw)["error"]
    assert err["type"] == "rate_limit_error"
    assert "resets in" in err["message"] and err["reset"].endswith("Z")


def _send_raw(server: InProcessJupyter, token: str, body: dict) -> socket.socket:
    """A chat completion sent on a raw socket, so the test decides when the client goes away."""
    u = urllib.parse.urlparse(server.proxy_url)
    raw = json.dumps(body).encode()
    sock = socket.create_connection((u.hostname, u.port))
    sock.sendall(
        f"POST {u.path}v1/chat/completions HTTP/1.1\r\nHost: {u.netloc}\r\n"
        f"Authorization: token {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(raw)}\r\n\r\n".encode()
        + raw
    )
    return sock


def test_a_dropped_stream_gives_back_its_lease_once_read_on_for_at_most_the_drain(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    """A stream its client drops is read on for the usage the provider bills, holding the
    user's place while it is (the provider is still generating it), but for no longer than
    `usage_drain_seconds`: here 3 s of an answer that would take 20."""
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "user_concurrency": 1,
            "usage_drain_seconds": 3.0,
        },
        named_users=True,
    )
    fresh_provider.word_delay = 0.1
    fresh_provider.script(" ".join(["word"] * 200))  # 20 s of words
    long_question = {
        "model": "fake-small",
        "stream": True,
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "tell me a long story"}],
    }
    sock = _send_raw(server, "tok-alice", long_question)
    first = sock.recv(4096)
    assert b"200 OK" in first and b"data: " in first + sock.recv(4096)
    # while the stream runs, alice's one slot is taken
    assert chat(server, "tok-alice")[0] == 429
    assert me(server, "tok-alice")["concurrency"] == {"limit": 1, "in_flight": 1}
    sock.close()
    # the proxy sees the client gone at its next write (the words come 0.1 s apart): by then
    # the dropped answer is being read on, and alice's place is still held
    time.sleep(0.5)
    assert me(server, "tok-alice")["concurrency"] == {"limit": 1, "in_flight": 1}
    deadline = time.monotonic() + 8  # the drain's 3 s, with room; the answer's end is 20 s off
    while me(server, "tok-alice")["concurrency"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert me(server, "tok-alice")["concurrency"] == {"limit": 1, "in_flight": 0}
    fresh_provider.word_delay = 0.0  # the rest of the dropped answer goes at once
    assert chat(server, "tok-alice")[0] == 200


def test_a_client_that_leaves_while_the_provider_answers_is_charged_what_it_billed(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    """The provider generates, and bills, an answer whatever the client does: the proxy awaits
    it, reads it and charges what it billed (not the request's worst case, and not nothing), and
    gives back the user's lease and the key's slot once it is in."""
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "user_concurrency": 1,
            "user_daily_budget_usd": 100.0,
        },
        named_users=True,
    )
    fresh_provider.latency = 1.0
    # a worst case of some 2,000 tokens ($2), where the answer bills a few ($0.01)
    sock = _send_raw(server, "tok-alice", {**ASK, "max_tokens": 2000})
    deadline = time.monotonic() + 5
    while not fresh_provider.received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fresh_provider.received, "the request never reached the provider"
    sock.close()  # the client leaves while the provider answers
    time.sleep(0.2)
    # the request still holds alice's one place: the provider has it
    assert me(server, "tok-alice")["concurrency"] == {"limit": 1, "in_flight": 1}
    deadline = time.monotonic() + 10
    while me(server, "tok-alice")["concurrency"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    fresh_provider.latency = 0.0
    snapshot = me(server, "tok-alice")
    assert snapshot["concurrency"] == {"limit": 1, "in_flight": 0}
    billed = fresh_provider.billed() * 0.001
    assert 0 < billed < 0.1
    assert snapshot["budget"]["spent_usd"] == pytest.approx(billed, rel=0.01)
    # sent once: the answer that came was read, no other key was asked
    assert len(fresh_provider.received) == 1
    assert chat(server, "tok-alice")[0] == 200


def test_a_client_that_leaves_while_waiting_for_a_key_is_let_go_at_once(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    """A request that has not reached the provider stops as soon as its client leaves: nothing
    is sent for it later, and its user's place is free at once."""
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(
                fresh_provider,
                a1={"limits": ["1 per 4 seconds"]},
                a2={"limits": ["1 per 4 seconds"]},
                b1={"limits": ["1 per 4 seconds"]},
            ),
            "default_model": "fake-small",
            "max_wait_seconds": 20,
            "user_concurrency": 5,
        },
        named_users=True,
    )
    # both accounts' windows spent (a1 and a2 share one): the next request waits up to 4 s
    assert [chat(server, "tok-carol")[0] for _ in range(2)] == [200, 200]
    sock = _send_raw(server, "tok-alice", ASK)
    deadline = time.monotonic() + 5
    while not me(server, "tok-alice")["concurrency"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert me(server, "tok-alice")["concurrency"]["in_flight"] == 1  # waiting for a key
    sock.close()
    deadline = time.monotonic() + 2
    while me(server, "tok-alice")["concurrency"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert me(server, "tok-alice")["concurrency"]["in_flight"] == 0  # long before a key frees
    # and nothing is sent for her once the keys free: carol's next request, which waited for
    # them, is the only one sent then (a request left in the keys' waiting line would go
    # first, at the same moment, to the other account)
    assert chat(server, "tok-carol")[0] == 200
    time.sleep(0.5)  # a request sent beside carol's would have reached the provider by now
    assert len(fresh_provider.received) == 3, fresh_provider.received


def test_concurrent_requests_never_overspend_a_budget(
    jupyter_app_factory, fresh_provider: FakeProvider
) -> None:
    fresh_provider.latency = 0.1
    budget = 0.05
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "user_daily_budget_usd": budget,
        },
        named_users=True,
    )
    body = {**ASK, "max_tokens": 10}
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: chat(server, "tok-alice", body), range(50)))
    ok = [json.loads(r[2]) for r in results if r[0] == 200]
    refused = [json.loads(r[2]) for r in results if r[0] == 429]
    assert ok and refused and len(ok) + len(refused) == 50
    assert all(e["error"]["limit"] == "user daily budget $0.05" for e in refused)
    spent = sum(c["usage"]["cost_usd"] for c in ok)
    assert spent <= budget + 1e-9
    # upstream saw only admitted requests; the reservations were settled to the real cost
    assert sum(fresh_provider.count_by_alias().values()) == len(ok)
    mine = me(server, "tok-alice")["budget"]
    assert mine["spent_usd"] == pytest.approx(spent, abs=1e-6)
    assert mine["remaining_usd"] == pytest.approx(budget - spent, abs=1e-6)


def test_cost_is_in_usage_and_header(jupyter_app_factory, fresh_provider: FakeProvider) -> None:
    server = jupyter_app_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
        },
    )
    status, headers, raw = chat(server, server.token)
    usage = json.loads(raw)["usage"]
    expected = (usage["prompt_tokens"] + usage["completion_tokens"]) * 0.001
    assert usage["cost_usd"] == pytest.approx(expected)
    assert float(headers["x-rsql-cost-usd"]) == pytest.approx(expected)


def test_cache_hits_misses_and_bypass(
    limited: InProcessJupyter, fresh_provider: FakeProvider
) -> None:
    det = {**ASK, "temperature": 0, "messages": [{"role": "user", "content": "cache me"}]}
    s1, h1, b1 = chat(limited, "tok-carol", det)
    s2, h2, b2 = chat(limited, "tok-carol", det)
    assert (h1["x-rsql-cache"], h2["x-rsql-cache"]) == ("miss", "hit")
    assert json.loads(b1)["choices"] == json.loads(b2)["choices"]
    assert h2["x-rsql-cost-usd"] == "0"
    assert (
        len([r for r in fresh_provider.received if r.body["messages"][0]["content"] == "cache me"])
        == 1
    )
    # a hit costs no quota: alice can still make her 3 requests after 5 hits
    for _ in range(5):
        assert chat(limited, "tok-alice", det)[1]["x-rsql-cache"] == "hit"
    assert [chat(limited, "tok-alice")[0] for _ in range(3)] == [200, 200, 200]
    # explicit bypass, and a non-deterministic request, go upstream every time
    assert chat(limited, "tok-carol", det, **{"X-RSQL-No-Cache": "1"})[1]["x-rsql-cache"] == "miss"
    warm = {**det, "temperature": 0.7}
    assert [chat(limited, "tok-carol", warm)[1]["x-rsql-cache"] for _ in range(2)] == [
        "miss",
        "miss",
    ]
    # a streamed request is answered from the cache as a stream
    status, headers, raw = chat(limited, "tok-carol", {**det, "stream": True})
    assert headers["x-rsql-cache"] == "hit" and raw.rstrip().endswith(b"data: [DONE]")
    text = "".join(
        (json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
        for line in raw.split(b"\n")
        if line.startswith(b"data: {")
    )
    assert text == json.loads(b1)["choices"][0]["message"]["content"]
