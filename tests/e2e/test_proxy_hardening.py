"""Attacks on budgets and on the proxy's inputs, tried over HTTP against real servers.

Budgets: parameters that multiply the output (n, best_of, max_tokens in its two spellings,
absent or huge), models without a price, made-up model names and client kinds in metric labels.
Inputs: bodies over the size cap (declared, chunked, huge), JSON that is deep, duplicated, not
numbers, not UTF-8, and wrong types for every field the proxy reads; none may give a 500.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import http, require, upstreams_for
from tests.helpers.bad_requests import HELLO, WORKER_BODIES
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import JupyterServer, ProxyService, start_jupyter_server, start_service

pytestmark = pytest.mark.slow

PRICED = {"prices": {"fake-small": {"input": 1000.0, "output": 1000.0}}}  # $0.001 a token
ASK = {"model": "fake-small", "messages": HELLO}
MiB = 2**20


# -- helpers ------------------------------------------------------------------------------


def chat(
    server: JupyterServer, token: str, body: dict | bytes, **headers: str
) -> tuple[int, dict, dict]:
    status, hdrs, raw = server.request(
        "POST", "v1/chat/completions", body, token=token, headers=headers
    )
    return status, hdrs, json.loads(raw)


def me(server: JupyterServer, token: str) -> dict:
    status, _, raw = server.request("GET", "me", token=token)
    assert status == 200, raw
    return json.loads(raw)


def spent(server: JupyterServer, token: str) -> float:
    return me(server, token)["budget"]["spent_usd"]


def reset(server: JupyterServer, user: str) -> None:
    assert server.request("POST", "admin/reset-limits", {"user": user}, token="tok-carol")[0] == 200


def completion(n_choices: int, prompt: int, completion_tokens: int) -> dict:
    """What a provider that honours `n` answers, and bills."""
    return {
        "id": "chatcmpl-n",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-small",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "length",
            }
            for i in range(n_choices)
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        },
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def raw_post(
    url: str, headers: dict[str, str], chunks: Iterator[bytes], timeout: float = 60
) -> tuple[int, dict, int]:
    """POST whose body a thread keeps sending while the answer is read, as a client that does
    not wait for the server would; returns (status, JSON body, bytes of body sent)."""
    u = urllib.parse.urlparse(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
    head = f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    sock.sendall(head.encode() + b"\r\n")
    sent = [0]

    def pump() -> None:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:  # the server answered and closed: the rest is never read
            pass

    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            assert got, f"connection closed without an answer: {data!r}"
            data += got
        head_raw, _, rest = data.partition(b"\r\n\r\n")
        lines = head_raw.decode("latin1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(hdrs["content-length"])
        while len(rest) < length:
            got = sock.recv(65536)
            if not got:
                break
            rest += got
    finally:
        sock.close()
        sender.join(timeout)
    return status, json.loads(rest[:length]), sent[0]


def zeros(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    block = b"0" * size
    for _ in range(total // size):
        yield block


def chunked(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    for block in zeros(total, size):
        yield f"{len(block):x}\r\n".encode() + block + b"\r\n"
    yield b"0\r\n\r\n"


# -- servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def budgets(
    provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    """alice and bob (students) have $1 a day through a group override; carol (admin) has no
    budget. fake-small costs $0.001 a token; fake-large has no known price."""
    server = start_jupyter_server(
        tmp_path_factory.mktemp("hardening"),
        {
            "upstreams": upstreams_for(provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "default_max_tokens": 20,
            "limit_overrides": {"group:students": {"user_daily_budget_usd": 1.0}},
            "admin_users": ["carol"],
        },
        named_users=True,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain(
    provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    """A personal server with the default body cap (4 MiB)."""
    server = start_jupyter_server(
        tmp_path_factory.mktemp("plain"),
        {"upstreams": upstreams_for(provider), "default_model": "fake-small"},
    )
    yield server
    server.stop()


SVC_USERS = {"svc-alice": {"name": "alice"}, "svc-root": {"name": "root", "admin": True}}


@pytest.fixture(scope="module")
def service(
    provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyService]:
    """rsql-proxy with small caps, a global budget and unpriced models let through as free."""
    svc = start_service(
        tmp_path_factory.mktemp("svc"),
        {
            "upstreams": upstreams_for(provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "global_daily_budget_usd": 5.0,
            "unpriced_models": "free",
            "max_body_bytes": 64 * 1024,
            "max_json_depth": 8,
            "max_messages": 3,
            "max_message_chars": 1000,
        },
        static_users=SVC_USERS,
    )
    yield svc
    svc.stop()


# -- budgets ------------------------------------------------------------------------------


def test_n_is_reserved_and_settled_to_what_the_provider_billed(
    budgets: JupyterServer, fresh_provider: FakeProvider
) -> None:
    reset(budgets, "alice")
    # 128 choices of at most 4 tokens: about 0.52 USD reserved, and billed, each
    body = {**ASK, "n": 128, "max_tokens": 4}
    fresh_provider.script(completion(128, 8, 512))
    status, headers, answer = chat(budgets, "tok-alice", body)
    assert status == 200, answer
    assert answer["usage"]["cost_usd"] == pytest.approx(0.52)
    assert spent(budgets, "tok-alice") == pytest.approx(0.52)
    # the next such request could take alice past $1: refused before it reaches the provider
    status, headers, err = chat(budgets, "tok-alice", body)
    assert status == 429 and err["error"]["limit"] == "user daily budget $1"
    assert "may cost up to $0.52" in err["error"]["message"]
    assert len(fresh_provider.received) == 1
    # a cheap answer with the same reservation is charged what it really cost: 40 choices of
    # one word and the prompt, as the provider bills them
    fresh_provider.script("ok")
    status, _, answer = chat(budgets, "tok-alice", {**ASK, "n": 40, "max_tokens": 4})
    assert status == 200 and len(answer["choices"]) == 40
    bill = fresh_provider.received[-1].billed_tokens * 0.001
    assert answer["usage"]["cost_usd"] == pytest.approx(bill) and bill < 0.06
    assert spent(budgets, "tok-alice") == pytest.approx(0.52 + answer["usage"]["cost_usd"])
    assert spent(budgets, "tok-alice") <= 1.0


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 5000}, "'n'"),
        ({"n": 0}, "'n'"),
        ({"n": "2"}, "'n'"),
        ({"n": True}, "'n'"),
        ({"n": 2.5}, "'n'"),
        ({"best_of": 129}, "'best_of'"),
        ({"max_tokens": -1}, "'max_tokens'"),
        ({"max_tokens": 0}, "'max_tokens'"),
        ({"max_tokens": 2**31}, "'max_tokens'"),
        ({"max_tokens": 10**100}, "'max_tokens'"),
        ({"max_completion_tokens": "many"}, "'max_completion_tokens'"),
        ({"max_completion_tokens": 1.0}, "'max_completion_tokens'"),
    ],
)
def test_multipliers_out_of_range_are_400s(
    budgets: JupyterServer, fresh_provider: FakeProvider, extra: dict, param: str
) -> None:
    status, _, err = chat(budgets, "tok-alice", {**ASK, **extra})
    assert status == 400, err
    assert param in err["error"]["message"] and err["error"]["param"] == param.strip("'")
    assert fresh_provider.received == []


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 128, "max_tokens": 10},  # 1280 completion tokens: $1.28 at worst
        {"best_of": 100, "max_tokens": 20},
        {"max_tokens": 2**31 - 1},
        # the provider may honour either spelling: the larger one is what may be billed
        {"max_completion_tokens": None, "max_tokens": 5000},
        {"max_completion_tokens": 10, "max_tokens": 3000},
        {"max_completion_tokens": 3000, "max_tokens": 10},
    ],
)
def test_a_request_dearer_than_the_whole_budget_is_a_400(
    budgets: JupyterServer, fresh_provider: FakeProvider, extra: dict
) -> None:
    reset(budgets, "alice")
    status, headers, err = chat(budgets, "tok-alice", {**ASK, **extra})
    assert status == 400, err
    assert err["error"]["code"] == "over_budget" and "retry-after" not in headers
    assert "more than the whole user daily budget $1" in err["error"]["message"]
    assert "'max_tokens'" in err["error"]["message"]
    assert fresh_provider.received == []
    assert spent(budgets, "tok-alice") == 0


def test_an_answer_without_usage_is_charged_its_reservation(
    budgets: JupyterServer, fresh_provider: FakeProvider
) -> None:
    reset(budgets, "alice")
    silent = completion(1, 8, 10)
    del silent["usage"]  # a provider (or a crafted upstream) that reports no usage
    fresh_provider.script(silent)
    status, headers, answer = chat(budgets, "tok-alice", {**ASK, "max_tokens": 10})
    assert status == 200 and "usage" not in answer
    charged = float(headers["x-rsql-cost-usd"])
    assert charged > 0.01  # about 10 tokens out and the prompt, at $0.001 a token
    assert spent(budgets, "tok-alice") == pytest.approx(charged)


def test_no_max_tokens_is_capped_at_what_was_reserved(
    budgets: JupyterServer, fresh_provider: FakeProvider
) -> None:
    reset(budgets, "alice")
    words = {"model": "fake-small", "messages": [{"role": "user", "content": "w " * 150}]}
    status, _, answer = chat(budgets, "tok-alice", words)
    assert status == 200
    # default_max_tokens (20) was reserved, so that is all the provider may write
    assert fresh_provider.received[-1].body["max_completion_tokens"] == 20
    assert answer["usage"]["completion_tokens"] == 20
    assert spent(budgets, "tok-alice") == pytest.approx(answer["usage"]["cost_usd"])
    # without a budget nothing changes: carol's answer is as long as the provider makes it
    status, _, answer = chat(budgets, "tok-carol", words)
    assert status == 200 and answer["usage"]["completion_tokens"] > 20
    assert "max_completion_tokens" not in fresh_provider.received[-1].body


def test_a_model_without_a_price_is_refused_under_a_budget(
    budgets: JupyterServer, fresh_provider: FakeProvider
) -> None:
    status, _, err = chat(budgets, "tok-alice", {**ASK, "model": "fake-large", "max_tokens": 1})
    assert status == 403, err
    msg = err["error"]["message"]
    assert "'fake-large' has no known price" in msg
    assert '"prices"' in msg and 'c.RSQLProxy.unpriced_models = "free"' in msg
    assert err["error"]["code"] == "model_not_priced" and err["error"]["param"] == "model"
    assert fresh_provider.received == []
    # carol has no budget: the same model is served
    status, _, answer = chat(budgets, "tok-carol", {**ASK, "model": "fake-large"})
    assert status == 200 and answer["usage"]["cost_usd"] == 0


def test_metric_labels_take_only_configured_models_and_clients(budgets: JupyterServer) -> None:
    for i in range(40):
        status, _, _ = chat(
            budgets, "tok-carol", {**ASK, "model": f"made-up-{i}"}, **{"X-RSQL-Client": f"evil-{i}"}
        )
        assert status == 404
    chat(budgets, "tok-alice", {**ASK, "model": "also-made-up"}, **{"X-RSQL-Client": "chat"})
    status, _, raw = budgets.request("GET", "metrics", token="tok-carol")
    assert status == 200
    text = raw.decode()
    assert "made-up" not in text and "evil" not in text
    assert 'model="other"' in text
    models = {
        line.split('model="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("rsql_") and 'model="' in line
    }
    assert models <= {"fake-small", "fake-large", "other", "-"}
    clients = {
        line.split('client="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("rsql_requests_total{")
    }
    assert clients <= {"magic", "chat", "sql", "api"}


def test_unpriced_free_and_a_global_budget_on_the_service(
    service: ProxyService, fresh_provider: FakeProvider
) -> None:
    status, headers, raw = service.request(
        "POST", "v1/chat/completions", {**ASK, "model": "fake-large"}, token="svc-alice"
    )
    assert status == 200, raw
    assert float(headers["x-rsql-cost-usd"]) == 0


def test_global_budget_denies_unpriced_models_by_default(
    service_factory, fresh_provider: FakeProvider
) -> None:
    svc = service_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "global_daily_budget_usd": 100.0,
        },
        static_users=SVC_USERS,
    )
    status, _, raw = svc.request(
        "POST", "v1/chat/completions", {**ASK, "model": "fake-large"}, token="svc-alice"
    )
    assert (
        status == 403 and "'fake-large' has no known price" in json.loads(raw)["error"]["message"]
    )
    assert svc.request("POST", "v1/chat/completions", ASK, token="svc-alice")[0] == 200
    assert fresh_provider.count_by_alias() and all(
        r.body["model"] == "fake-small" for r in fresh_provider.received
    )


def test_the_local_model_stays_free_under_budgets(jupyter_server_factory) -> None:
    require("llama_cpp", reason="the local extra")
    server = jupyter_server_factory({"user_daily_budget_usd": 0.5, "global_daily_budget_usd": 1.0})
    status, headers, raw = server.request(
        "POST",
        "v1/chat/completions",
        {
            "model": "smollm2-135m",
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "Say hi"}],
        },
    )
    assert status == 200, raw
    assert json.loads(raw)["usage"]["cost_usd"] == 0
    assert json.loads(server.request("GET", "me")[2])["budget"]["spent_usd"] == 0


# -- bodies -------------------------------------------------------------------------------


def test_a_body_over_the_cap_is_413_on_the_jupyter_host(
    plain: JupyterServer, fresh_provider: FakeProvider
) -> None:
    big = {**ASK, "messages": [{"role": "user", "content": "x" * (5 * MiB)}]}
    status, headers, raw = plain.request("POST", "v1/chat/completions", big)
    assert status == 413, raw[:200]
    err = json.loads(raw)["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "request_too_large"
    assert "c.RSQLProxy.max_body_bytes" in err["message"] and err["max_body_bytes"] == 4 * MiB
    # just under the cap is read and parsed: the message cap is the next to say no
    status, _, raw = plain.request(
        "POST",
        "v1/chat/completions",
        {**ASK, "messages": [{"role": "user", "content": "x" * (4 * MiB - 200)}]},
    )
    assert status == 400 and json.loads(raw)["error"]["param"] == "messages[0].content"
    assert fresh_provider.received == []
    ok = {**ASK, "messages": [{"role": "user", "content": "x" * 900_000}]}
    assert plain.request("POST", "v1/chat/completions", ok)[0] == 200


@pytest.mark.parametrize("mode", ["declared", "chunked"])
def test_a_huge_body_is_refused_without_being_read(plain: JupyterServer, mode: str) -> None:
    before = peak_rss_mb(plain.proc.pid)
    total = 300 * MiB
    hdrs = {"Authorization": f"token {plain.token}", "Content-Type": "application/json"}
    if mode == "declared":
        status, err, sent = raw_post(
            plain.proxy_url + "v1/chat/completions",
            {**hdrs, "Content-Length": str(total)},
            zeros(total),
        )
    else:
        status, err, sent = raw_post(
            plain.proxy_url + "v1/chat/completions",
            {**hdrs, "Transfer-Encoding": "chunked"},
            chunked(total),
        )
    assert status == 413 and err["error"]["code"] == "request_too_large"
    assert sent < total / 2  # the connection was closed long before the end
    assert peak_rss_mb(plain.proc.pid) - before < 40


def test_other_jupyter_handlers_keep_their_limits(plain: JupyterServer) -> None:
    content = "y" * (6 * MiB)  # over the proxy's cap, well under Jupyter's own
    status, _, raw = http(
        "PUT",
        plain.url + "api/contents/big.txt",
        {"type": "file", "format": "text", "content": content},
        authorization=f"token {plain.token}",
    )
    assert status in (200, 201), raw[:300]
    assert json.loads(raw)["size"] == len(content)


def test_body_caps_on_the_service(service: ProxyService, fresh_provider: FakeProvider) -> None:
    url = service.url + "v1/chat/completions"
    status, _, raw = service.request(
        "POST",
        "v1/chat/completions",
        {**ASK, "messages": [{"role": "user", "content": "z" * 100_000}]},
        token="svc-alice",
    )
    assert status == 413 and json.loads(raw)["error"]["max_body_bytes"] == 64 * 1024
    before = peak_rss_mb(service.proc.pid)
    hdrs = {"Authorization": "Bearer svc-alice", "Content-Type": "application/json"}
    for extra, body in (
        ({"Transfer-Encoding": "chunked"}, chunked(200 * MiB)),
        ({"Content-Length": str(200 * MiB)}, zeros(200 * MiB)),
    ):
        status, err, sent = raw_post(url, {**hdrs, **extra}, body)
        assert status == 413 and "max_body_bytes" in err["error"]["message"]
        assert sent < 100 * MiB
    assert peak_rss_mb(service.proc.pid) - before < 40
    assert fresh_provider.received == []
    # the service is unharmed
    assert service.request("POST", "v1/chat/completions", ASK, token="svc-alice")[0] == 200


def test_a_client_cannot_put_another_address_in_the_services_log(service: ProxyService) -> None:
    """Forwarded headers a client sets are not believed: the service's log names the address of
    the connection a malformed request came on, never one the client wrote in X-Real-Ip or
    X-Forwarded-For (an admin reading the log would look for the wrong machine)."""
    u = urllib.parse.urlparse(service.url)
    seen = len(service.log())
    with socket.create_connection((u.hostname, u.port), timeout=30) as sock:
        sock.sendall(
            f"POST {u.path}v1/chat/completions HTTP/1.1\r\nHost: {u.netloc}\r\n"
            "Authorization: Bearer svc-alice\r\nContent-Type: application/json\r\n"
            "X-Real-Ip: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.9\r\n"
            "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n".encode()
        )
        answer = b""
        while got := sock.recv(65536):
            answer += got
    assert answer.startswith(b"HTTP/1.1 400 ")
    deadline = time.monotonic() + 10
    while "Malformed HTTP message" not in service.log()[seen:] and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = service.log()[seen:]
    lines = [line for line in logged.splitlines() if "Malformed HTTP message" in line]
    assert lines and all("from 127.0.0.1:" in line for line in lines), logged
    assert "203.0.113.7" not in logged and "198.51.100.9" not in logged


@pytest.mark.parametrize(
    ("body", "needle", "param"),
    [
        ({**ASK, "messages": HELLO * 4}, "'messages' has 4 messages; at most 3", "messages"),
        (
            {**ASK, "messages": [{"role": "user", "content": "q" * 1001}]},
            "1001 characters",
            "messages[0].content",
        ),
        (
            {**ASK, "metadata": {"a": [[[[[[[[1]]]]]]]]}},
            "'metadata' is nested more than 8 levels",
            "metadata",
        ),
    ],
)
def test_caps_are_configurable(service: ProxyService, body: dict, needle: str, param: str) -> None:
    status, _, raw = service.request("POST", "v1/chat/completions", body, token="svc-alice")
    assert status == 400, raw
    err = json.loads(raw)["error"]
    assert needle in err["message"] and err["param"] == param


# -- JSON and fields: every one a 400 naming what is wrong, never a 500 ----------------------
# Every case of the table is in tests/unit/test_request_fields.py; here the bodies too large to
# read inline, which the proxy's worker process counts, over HTTP to a real Jupyter server.


@pytest.mark.parametrize(
    ("body", "needle", "param"),
    WORKER_BODIES,
    ids=lambda v: repr(v)[:40] if isinstance(v, bytes) else None,
)
def test_malformed_json_is_a_400(
    budgets: JupyterServer,
    fresh_provider: FakeProvider,
    body: bytes,
    needle: str,
    param: str | None,
) -> None:
    status, _, raw = budgets.request("POST", "v1/chat/completions", body, token="tok-carol")
    assert status == 400, raw[:300]
    err = json.loads(raw)["error"]
    assert needle in err["message"] and err["type"] == "invalid_request_error"
    assert err.get("param") == param
    assert fresh_provider.received == []


def test_well_formed_edge_cases_are_served(
    budgets: JupyterServer, fresh_provider: FakeProvider
) -> None:
    parts = [
        {"type": "text", "text": "what is in"},
        {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}},
    ]
    for body in (
        {"messages": [{"role": "user", "content": parts}]},
        {
            "messages": [
                {"role": "system", "content": None},
                {"role": "user", "content": "héllo ✓ 你好"},
            ]
        },
        {
            "messages": HELLO,
            "metadata": {"a": [[[[1]]]]},
            "n": 1,
            "best_of": 1,
            "max_completion_tokens": 5,
        },
        {"messages": HELLO, "temperature": 0, "seed": 10**20},
    ):
        status, _, raw = budgets.request("POST", "v1/chat/completions", body, token="tok-carol")
        assert status == 200, raw[:300]
    # the image counts toward alice's reservation, not toward a 500
    reset(budgets, "alice")
    status, _, raw = budgets.request(
        "POST",
        "v1/chat/completions",
        {"messages": [{"role": "user", "content": parts * 200}]},
        token="tok-alice",
    )
    assert status == 400 and json.loads(raw)["error"]["code"] == "over_budget"


def test_the_server_survived(budgets: JupyterServer) -> None:
    status, _, raw = budgets.request("GET", "status", token="tok-carol")
    assert status == 200 and json.loads(raw)["status"] == "ok"
    assert "Traceback" not in budgets.log()
