"""A hostile hub user against the proxy's promises, over HTTP against a real rsql-proxy service.

The bill rule: what the provider can bill for a request is what the user is charged. The fake
provider bills as providers do (every token it generated, whether or not the client read it),
so each test compares what the proxy charged with what the provider billed.

One user cannot degrade the service for others: key-level consequences only follow errors about
the key, and CPU-heavy work runs after admission and away from the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import statistics
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from jupyter_server_ext.engine import Caller, Engine, EngineSettings, parse_upstreams
from jupyter_server_ext.engine.admission.limiter import LimitSettings, UserRules
from jupyter_server_ext.engine.errors import BadRequest, PayloadTooLarge, RateLimited
from jupyter_server_ext.engine.privacy.offload import Offload, redact_fields
from jupyter_server_ext.engine.privacy.redact import BUILTIN
from jupyter_server_ext.engine.upstreams.specs import parse_rates
from jupyter_server_ext.state import MemoryState
from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService, start_service

pytestmark = pytest.mark.slow

USD_PER_TOKEN = 0.001
PRICED = {
    "prices": {
        "fake-small": {"input": 1000.0, "output": 1000.0},
        "fake-large": {"input": 1000.0, "output": 1000.0},
    }
}
MAX_TOKENS = 40  # the default completion limit: what a budget request is capped at
TIMEOUT = 2.0  # upstream_timeout_seconds
USERS = [
    "alice",
    "dora",
    "bert",
    "tim",
    "lee",
    "fay",
    "bob",
    "rex",
    "vic",
    "mal",
    "gus",
    "eve",
    "ann",
    "kim",
    "oli",
]
BUDGET = {"alice": 0.5, "dora": 1.0, "bert": 1.0, "tim": 1.0, "lee": 1.0}
LONG_ANSWER = " ".join(f"w{i}" for i in range(60))
# text shaped like IBANs that fail their check: the slowest input for the built-in patterns
IBAN_LIKE = "DE89 3704 " * 19_000  # 190,000 characters


def _overrides() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        f"user:{u}": {"user_daily_budget_usd": b} for u, b in BUDGET.items()
    }
    out["user:tim"]["user_limits"] = ["100/minute"]
    out["user:rex"] = {"user_limits": ["3/minute"]}
    out["user:kim"] = {"user_limits": ["2/minute"]}
    return out


@pytest.fixture(scope="module")
def svc(provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyService]:
    service = start_service(
        tmp_path_factory.mktemp("abuse"),
        {
            "upstreams": upstreams_for(provider, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "default_max_tokens": MAX_TOKENS,
            # far above what any test here runs at once: set so that GET me counts a user's
            # requests still open (settled_spend waits for them)
            "user_concurrency": 50,
            "upstream_timeout_seconds": TIMEOUT,
            "health_check_seconds": 0.0,  # a disabled key would stay disabled: nothing re-enables it
            "redact_patterns": ["email", "iban", "card", "phone"],
            "limit_overrides": _overrides(),
        },
        static_users={
            **{f"tok-{u}": {"name": u} for u in USERS},
            "tok-root": {"name": "root", "admin": True},
        },
    )
    yield service
    service.stop()


# -- helpers ------------------------------------------------------------------------------


def chat(
    svc: ProxyService,
    user: str,
    body: dict[str, Any],
    path: str = "v1/chat/completions",
    timeout: float = 60,
) -> tuple[int, dict[str, Any]]:
    status, _, raw = svc.request("POST", path, body, token=f"tok-{user}", timeout=timeout)
    return status, json.loads(raw) if raw else {}


def ask(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-small", "messages": [{"role": "user", "content": text}], **extra}


def me(svc: ProxyService, user: str) -> dict[str, Any]:
    status, _, raw = svc.request("GET", "me", token=f"tok-{user}")
    assert status == 200, raw
    return json.loads(raw)


def settled_spend(svc: ProxyService, user: str, seconds: float = 20) -> float:
    """The user's spend once every request of theirs has ended: an answer its client left is
    read on in the background, holding the user's place and its reservation until it is
    charged (a spend that merely stops moving may be that reservation, still held)."""
    deadline = time.monotonic() + seconds
    while True:
        snapshot = me(svc, user)
        if snapshot["concurrency"]["in_flight"] == 0:
            return snapshot["budget"]["spent_usd"]
        assert time.monotonic() < deadline, f"{user}'s requests did not end: {snapshot}"
        time.sleep(0.05)


def key_states(svc: ProxyService) -> dict[str, str]:
    status, _, raw = svc.request("GET", "admin/upstreams", token="tok-root")
    assert status == 200, raw
    return {u["alias"]: u["state"] for u in json.loads(raw)["upstreams"]}


def open_stream(
    svc: ProxyService, user: str, body: dict[str, Any]
) -> tuple[http.client.HTTPConnection, Any]:
    u = urllib.parse.urlsplit(svc.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request(
        "POST",
        u.path + "v1/chat/completions",
        json.dumps({**body, "stream": True}),
        {"Authorization": f"Bearer tok-{user}", "Content-Type": "application/json"},
    )
    return conn, conn.getresponse()


def drop_stream(svc: ProxyService, user: str, body: dict[str, Any], events: int = 1) -> int:
    """Stream `body`, read `events` events, then hang up as a client that lost interest does;
    the status (a 429 is read whole)."""
    conn, resp = open_stream(svc, user, body)
    if resp.status != 200:
        resp.read()
        conn.close()
        return resp.status
    seen = 0
    while seen < events:
        line = resp.fp.readline()
        if not line:
            break
        seen += line.startswith(b"data: ")
    conn.sock.close()  # type: ignore[union-attr]
    conn.close()
    return 200


# -- the bill rule ------------------------------------------------------------------------


def test_streams_the_client_drops_are_charged_what_the_provider_billed(
    svc: ProxyService, fresh_provider: FakeProvider
) -> None:
    fresh_provider.word_delay = 0.02  # about a second an answer: the client leaves early
    budget = BUDGET["alice"]
    statuses = []
    for _ in range(40):
        fresh_provider.script(LONG_ANSWER)
        statuses.append(drop_stream(svc, "alice", ask("tell me a story")))
        if statuses[-1] == 429:
            break
        time.sleep(0.2)
    charged = settled_spend(svc, "alice")
    billed = fresh_provider.billed() * USD_PER_TOKEN
    # each dropped stream was read on for the usage the provider reports: charged to the token
    assert charged == pytest.approx(billed, abs=1e-6), (charged, billed)
    # so the budget held: the provider never billed past it, and the user was refused at the end
    assert 429 in statuses, statuses
    assert billed <= budget + 1e-9, billed


def test_a_dropped_stream_without_usage_is_charged_its_prompt_and_chunks(
    svc: ProxyService, fresh_provider: FakeProvider
) -> None:
    fresh_provider.send_usage = False  # a provider that never reports usage on a stream
    # 3 s of words: the client's leaving, after three events, is seen long before the end
    fresh_provider.word_delay = 0.05
    fresh_provider.script(LONG_ANSWER)
    # a reservation far above the answer (400 tokens): charging it would show
    body = ask("tell me a story", max_tokens=400)
    assert drop_stream(svc, "dora", body, events=3) == 200
    charged = settled_spend(svc, "dora")
    billed = fresh_provider.billed() * USD_PER_TOKEN
    # the estimate is the prompt and a token a chunk: the 60 words generated, read on after
    # the client left, and a few tokens more (the prompt's estimate, the first and last
    # chunks), never the reservation
    assert billed <= charged <= billed + 20 * USD_PER_TOKEN, (charged, billed)
    assert charged < 100 * USD_PER_TOKEN


def test_a_stream_that_breaks_off_is_charged_what_was_generated(
    svc: ProxyService, fresh_provider: FakeProvider
) -> None:
    for alias in ("a1", "a2", "b1"):
        fresh_provider.set_fault(alias, "die_mid_stream")
    fresh_provider.script(LONG_ANSWER)
    # a reservation far above the answer (400 tokens): charging it would show
    conn, resp = open_stream(svc, "bert", ask("tell me a story", max_tokens=400))
    text = resp.read().decode()
    conn.close()
    assert "broke off" in text and "[DONE]" not in text
    charged = settled_spend(svc, "bert")
    billed = fresh_provider.billed() * USD_PER_TOKEN
    # the words generated before the break (half of the 60) and a few tokens more (the
    # prompt's estimate, the first chunk), never the reservation
    assert billed <= charged <= billed + 20 * USD_PER_TOKEN, (charged, billed)
    assert charged < 100 * USD_PER_TOKEN


def test_a_slow_answer_is_charged_once_and_takes_no_key_out(
    svc: ProxyService, fresh_provider: FakeProvider
) -> None:
    fresh_provider.latency = TIMEOUT + 1.5  # slower than the proxy waits
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: chat(svc, "tim", ask("write a long essay")), range(3)))
    fresh_provider.latency = 0.0
    for status, body in results:
        assert status == 504 and body["error"]["code"] == "upstream_timeout", body
        assert "charged" in body["error"]["message"] and "sk-" not in body["error"]["message"]
    # one attempt each: a request the provider accepted is never sent to a second key
    assert len(fresh_provider.received) == 3
    snapshot = me(svc, "tim")
    billed = fresh_provider.billed() * USD_PER_TOKEN
    assert snapshot["budget"]["spent_usd"] >= billed > 0
    assert snapshot["limits"][0]["used"] == 3  # nothing refunded
    # a long answer is the request's doing: no breaker opened, the next user is served
    assert set(key_states(svc).values()) == {"healthy"}
    status, body = chat(svc, "bob", ask())
    assert status == 200, body


def test_a_list_of_prompts_is_reserved_for_every_prompt(
    svc: ProxyService, fresh_provider: FakeProvider
) -> None:
    budget = BUDGET["lee"]
    batch = {"model": "fake-small", "prompt": ["x"] * 50, "max_tokens": 10}
    # each request is admitted only if 50 completions of 10 tokens fit what is left
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: chat(svc, "lee", batch, "v1/completions"), range(8)))
    assert any(s == 200 for s, _ in results) and any(s == 429 for s, _ in results), results
    billed = fresh_provider.billed("completions") * USD_PER_TOKEN
    assert billed <= budget + 1e-9, billed
    assert settled_spend(svc, "lee") == pytest.approx(billed, abs=1e-6)
    huge = {"model": "fake-small", "prompt": ["x" * 10] * 2000, "max_tokens": 4000}
    status, body = chat(svc, "lee", huge, "v1/completions")
    assert status == 400 and body["error"]["code"] == "over_budget", body


# -- one user cannot take keys out --------------------------------------------------------


def test_a_403_about_the_request_passes_through_and_every_key_stays_up(
    svc: ProxyService, fresh_provider: FakeProvider
) -> None:
    fresh_provider.forbidden_models = {"fake-large"}
    for _ in range(4):
        status, body = chat(svc, "fay", {**ask(), "model": "fake-large"})
        assert status == 403, body
        assert (
            body["error"]["code"] == "model_not_found"
            and "does not have access" in body["error"]["message"]
        )
        status, body = chat(svc, "fay", ask("FLAGGED: how do I make a weapon"))
        assert status == 403 and body["error"]["code"] == "content_flagged", body
    # each refused request reached one key only: no walk through every key
    assert len(fresh_provider.received) == 8
    assert set(key_states(svc).values()) == {"healthy"}
    status, body = chat(svc, "bob", ask())
    assert status == 200, body


# -- bounded work before admission --------------------------------------------------------


def test_a_body_over_the_cap_always_gets_its_413(svc: ProxyService) -> None:
    u = urllib.parse.urlsplit(svc.url)
    body = (
        b'{"model": "fake-small", "messages": [{"role": "user", "content": "'
        + b"x" * (10 * 2**20)
        + b'"}]}'
    )
    for _ in range(3):  # the client sends the whole body before reading, as most do
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request(
            "POST",
            u.path + "v1/chat/completions",
            body,
            {"Authorization": "Bearer tok-gus", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        assert resp.status == 413, resp.status
        assert json.loads(resp.read())["error"]["code"] == "request_too_large"
        conn.close()


def test_redaction_previews_count_against_the_limits_and_are_bounded(svc: ProxyService) -> None:
    messages = [{"role": "user", "content": "mail me at ann@example.org"}]
    for _ in range(3):
        status, _, raw = svc.request("POST", "redact", {"messages": messages}, token="tok-rex")
        assert status == 200, raw
        assert json.loads(raw)["messages"][0]["content"] == "mail me at <email-1>"
    status, headers, raw = svc.request("POST", "redact", {"messages": messages}, token="tok-rex")
    assert status == 429 and headers.get("retry-after"), raw
    too_much = [{"role": "user", "content": "a " * 110_000}]
    status, _, raw = svc.request("POST", "redact", {"messages": too_much}, token="tok-gus")
    assert status == 413 and json.loads(raw)["error"]["code"] == "too_much_to_redact", raw
    status, body = chat(svc, "gus", {**ask(), "messages": too_much})
    assert status == 413 and body["error"]["code"] == "too_much_to_redact", body
    # a text part that also carries a `content` is scanned for its text, so counted for it too
    hidden = [{"role": "user", "content": [{"type": "text", "text": "a " * 110_000, "content": 0}]}]
    for path, body_of in (
        ("redact", lambda: {"messages": hidden}),
        ("v1/chat/completions", lambda: {**ask(), "messages": hidden}),
    ):
        status, _, raw = svc.request("POST", path, body_of(), token="tok-gus")
        assert status == 413 and json.loads(raw)["error"]["code"] == "too_much_to_redact", (
            path,
            raw,
        )


def _hammer(stop: threading.Event, deadline: float, work: Callable[[], Any]) -> int:
    n = 0
    while not stop.is_set() and time.monotonic() < deadline and n < 200:
        try:
            work()
        except OSError:  # a reset while a 413 goes out is the attacker's problem
            pass
        n += 1
    return n


def _latencies(svc: ProxyService, user: str, n: int, text: str = "hello") -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        status, body = chat(svc, user, ask(text), timeout=30)
        out.append(time.monotonic() - t0)
        assert status == 200, body
    return out


def test_one_user_hammering_every_path_leaves_others_their_latency(
    svc: ProxyService, fresh_provider: FakeProvider
) -> None:
    u = urllib.parse.urlsplit(svc.url)
    fresh_provider.forbidden_models = {"fake-large"}
    # redacted in the worker
    big_context = "Our table holds rows like DE89 3704 0044 0532 0130 00. " * 200
    _latencies(svc, "vic", 3)  # warm up
    before = _latencies(svc, "vic", 10)
    before_long = _latencies(svc, "vic", 3, big_context)
    t0 = time.monotonic()  # one of the attacker's redaction jobs, alone
    assert (
        svc.request(
            "POST",
            "redact",
            {"messages": [{"role": "user", "content": IBAN_LIKE}]},
            token="tok-mal",
            timeout=60,
        )[0]
        == 200
    )
    job = time.monotonic() - t0

    huge = b"x" * (10 * 2**20)

    def post_huge() -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request(
            "POST", u.path + "v1/chat/completions", huge, {"Authorization": "Bearer tok-mal"}
        )
        conn.getresponse().read()
        conn.close()

    attacks = [
        lambda: svc.request(
            "POST",
            "redact",
            {"messages": [{"role": "user", "content": IBAN_LIKE}]},
            token="tok-mal",
            timeout=60,
        ),
        lambda: chat(svc, "mal", {**ask(IBAN_LIKE), "model": "fake-large"}),
        lambda: chat(svc, "mal", {**ask(), "model": "fake-large"}),
        lambda: chat(svc, "mal", ask("FLAGGED " * 100)),
        post_huge,
    ]
    stop = threading.Event()
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(len(attacks)) as pool:
        running = [pool.submit(_hammer, stop, deadline, a) for a in attacks]
        time.sleep(1.0)  # the attack is under way
        try:
            during = _latencies(svc, "vic", 10)
            during_long = _latencies(svc, "vic", 3, big_context)
        finally:
            stop.set()
        done = [f.result() for f in running]
    assert all(n > 0 for n in done), done
    print(
        f"one attacker redaction job alone: {job:.2f} s; victim, short prompts: median "
        f"{statistics.median(before):.3f} s before, {statistics.median(during):.3f} s (max {max(during):.3f}) "
        f"during; long prompts: max {max(before_long):.3f} s before, {max(during_long):.3f} s during; "
        f"attack requests {done}"
    )
    # every key still serves, and the victim's answers stay quick: short prompts never wait for
    # the attacker's redaction, a long one waits for at most the job the worker is running
    assert set(key_states(svc).values()) == {"healthy"}
    assert statistics.median(during) < statistics.median(before) + 0.25, (before, during)
    assert max(during) < 1.5, during
    assert max(during_long) < job + max(before_long) + 1.5, (job, during_long)


def test_the_escalation_header_stores_only_a_stage_name(svc: ProxyService) -> None:
    """X-RSQL-Escalation goes into the usage log the admin reads: only %%sql_ai's stage words
    are kept; markup or long text is dropped and the request still runs (control characters
    the HTTP server refuses itself)."""
    sent = {"schema": "schema", "<img src=x onerror=alert(1)>": None, "database" * 200: None}
    for value in sent:
        status, _, raw = svc.request(
            "POST",
            "v1/chat/completions",
            ask("hi"),
            token="tok-eve",
            headers={"X-RSQL-Escalation": value},
        )
        assert status == 200, raw
    status, _, _ = svc.request(
        "POST",
        "v1/chat/completions",
        ask("hi"),
        token="tok-eve",
        headers={"X-RSQL-Escalation": "\x1b]0;pwned\x07"},
    )
    assert status == 400
    deadline = time.monotonic() + 10
    while True:
        status, _, raw = svc.request("GET", "admin/users/eve/activity?limit=10", token="tok-root")
        rows = json.loads(raw)["activity"]
        if len(rows) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sorted(str(r["escalation"]) for r in rows) == sorted(str(v) for v in sent.values())


def test_bodies_of_a_million_objects_stall_nobody_and_the_probes_keep_their_time(
    svc: ProxyService,
) -> None:
    # about 1.4 million empty objects in 4 MiB, for a model nobody serves: cheap to send, and
    # parsed object by object in Python it would hold the event loop about a second each
    many = b'{"model": "nope", "messages": [' + b",".join([b"{}"] * 1_398_000) + b"]}"
    u = urllib.parse.urlsplit(svc.url)
    statuses: list[tuple[int, str]] = []

    def send_many() -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        conn.request(
            "POST",
            u.path + "v1/chat/completions",
            many,
            {"Authorization": "Bearer tok-gus", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        code = json.loads(resp.read())["error"]["code"]
        statuses.append((resp.status, code))
        conn.close()

    def probe(path: str) -> float:
        t0 = time.monotonic()
        status, _, raw = svc.request("GET", path)
        assert status == 200, raw
        return time.monotonic() - t0

    _latencies(svc, "vic", 3)  # warm up
    before = _latencies(svc, "vic", 10)
    stop = threading.Event()
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(_hammer, stop, deadline, send_many) for _ in range(2)]
        time.sleep(1.0)  # the flood is under way
        try:
            during = _latencies(svc, "vic", 10)
            probes = [probe(p) for p in ("health/live", "health/ready") * 3]
        finally:
            stop.set()
        sent = [f.result() for f in running]
    print(
        f"victim median {statistics.median(before):.3f} s before, "
        f"{statistics.median(during):.3f} s (max {max(during):.3f}) during; probes max "
        f"{max(probes):.3f} s; attack bodies {sent}, answered {sorted(set(statuses))}"
    )
    # each such body is refused for its shape, before it is parsed
    assert statuses and set(statuses) == {(400, "json_too_complex")}, statuses
    assert statistics.median(during) < statistics.median(before) + 0.25, (before, during)
    assert max(during) < 1.5, during
    assert max(probes) < 1.0, probes  # the orchestrator's probes give up after 3 s


def test_brackets_in_text_pass_and_a_body_of_too_many_objects_or_items_is_refused_naming_the_cap(
    svc: ProxyService,
) -> None:
    # a prompt holding pasted JSON: 24,000 brackets, past the cap, all of them text inside one
    # string: counted exactly in the worker process and let through
    pasted = json.dumps([{"t": []} for _ in range(12_000)])
    status, body = chat(svc, "fay", ask(pasted))
    assert status == 200, body
    # 30,000 real objects, past the default 20,000
    many = {**ask(), "metadata": {"rows": [{} for _ in range(30_000)]}}
    status, body = chat(svc, "fay", many)
    assert status == 400, body
    assert body["error"]["code"] == "json_too_complex"
    assert "30005 JSON objects and arrays" in body["error"]["message"]
    assert "max_json_containers" in body["error"]["message"]
    # half a million numbers in one array, past the 400,000 items
    status, body = chat(svc, "fay", {**ask(), "metadata": {"ids": [1] * 500_000}})
    assert status == 400 and "max_json_items" in body["error"]["message"], body
    # a legitimate embeddings request of 296,000 token ids is within the cap
    ids = {"model": "fake-small", "input": [[7] * 8000 for _ in range(37)]}
    status, body = chat(svc, "fay", ids, path="v1/embeddings")
    assert status == 200, body


# -- #35 2, the review's holes: the worker and the loop, in front of the engine itself ---------


def ask_small(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-small", "messages": [{"role": "user", "content": text}], **extra}


def engine_for(fp: FakeProvider, budget: float | None = None, **settings: Any) -> Engine:
    prices = {"prices": {"fake-small": {"input": 1.0, "output": 1.0}}}
    limits = settings.pop("user_limits", ())
    return Engine(
        EngineSettings(
            upstreams=parse_upstreams(upstreams_for(fp, **{a: prices for a in ("a1", "a2", "b1")})),
            default_model="fake-small",
            health_check_seconds=0,
            limits=LimitSettings(
                user=UserRules(daily_budget_usd=budget, limits=parse_rates(limits, where="test"))
            ),
            **settings,
        ),
        state=MemoryState(),
    )


class LoopWatch:
    """The longest the event loop went without running a 5 ms ticker: what another user's
    request would have waited for the loop."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.worst = max(self.worst, now - last)
            last = now

    def __enter__(self) -> LoopWatch:
        self._task = asyncio.ensure_future(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


# -- the shape count in the worker: linear for every input ----------------------------------


async def test_escaped_quotes_that_never_close_are_counted_in_linear_time_and_delay_no_one(
    fresh_provider: FakeProvider,
) -> None:
    # past the 20,000 objects and arrays a body may hold, so counted exactly in the worker; the
    # run of \" with no closing quote made the string-skipping pattern retry from every quote
    # (16,000 of them took 2 s; these 60,000 about half a minute, a 4 MiB body hours)
    attack = b"[" * 20_001 + b'\\"' * 60_000
    # another user's prompt of pasted JSON: past the bound too, so it needs the worker as well
    victim = json.dumps(ask_small(json.dumps([{"t": []} for _ in range(12_000)]))).encode()
    engine = engine_for(fresh_provider)
    try:
        started = time.monotonic()
        mallory = asyncio.ensure_future(engine.decode_body(attack, Caller("mallory")))
        await asyncio.sleep(0)  # hers is in the worker's queue first
        body = await asyncio.wait_for(engine.decode_body(victim, Caller("vic")), 20)
        waited = time.monotonic() - started
        with pytest.raises(BadRequest) as err:
            await asyncio.wait_for(mallory, 20)
        # the whole 4 MiB of it is refused as quickly
        huge = b"[" * 20_001 + b'\\"' * (2 * 2**20 - 10_001)
        t0 = time.monotonic()
        with pytest.raises(BadRequest) as err_huge:
            await asyncio.wait_for(engine.decode_body(huge, Caller("mallory")), 20)
        huge_took = time.monotonic() - t0
    finally:
        await engine.close()
    print(f"victim waited {waited:.3f} s; a 4 MiB attack refused in {huge_took:.3f} s")
    assert isinstance(body, dict) and body["model"] == "fake-small"
    assert "nested more than 64 levels" in err.value.message  # what is wrong, not a time-out
    assert "nested more than 64 levels" in err_huge.value.message
    assert waited < 5.0  # a worker start and two counts; was the attacker's half a minute
    assert huge_took < 5.0


async def test_a_job_past_its_deadline_is_refused_and_the_worker_replaced_for_the_next_user() -> (
    None
):
    offload = Offload()
    offload.job_seconds = 1.0
    patterns = (BUILTIN["email"],)
    text = "write to ann@example.com " * 400  # past the size redacted in place
    try:
        started = time.monotonic()
        # whatever a job is, it holds the one shared worker: a job that never ends stands for
        # one no bound foresaw
        stuck = asyncio.ensure_future(offload.run("mallory", time.sleep, 60))
        await asyncio.sleep(0)
        fields, redactor = await asyncio.wait_for(
            offload.redact(patterns, {"messages": [{"role": "user", "content": text}]}, "vic"),
            20,
        )
        waited = time.monotonic() - started
        with pytest.raises(PayloadTooLarge) as err:
            await asyncio.wait_for(stuck, 5)
        # the replaced worker goes on serving everyone
        again, _ = await asyncio.wait_for(
            offload.run("mallory", redact_fields, patterns, {"input": text}), 20
        )
    finally:
        await offload.close()
    assert "ann@example.com" not in json.dumps(fields)
    assert redactor.counts.get("email") == 400
    assert "1 s" in err.value.message and err.value.code == "too_much_work"
    assert "ann@example.com" not in json.dumps(again)
    assert waited < 10.0  # the deadline, a new worker's start, the job: not the minute


def _pdf_part(pdf: bytes) -> dict[str, Any]:
    data = "data:application/pdf;base64," + base64.b64encode(pdf).decode()
    return {"type": "file", "file": {"filename": "a.pdf", "file_data": data}}


def inflate_bomb() -> bytes:
    """A PDF of some 16 KB whose object stream inflates to 8 MiB of page objects."""
    hidden = zlib.compress(b"/Type /Page " * (8 * 2**20 // 12), 9)
    return (
        b"%PDF-1.5\n1 0 obj\n<< /Type /ObjStm /N 1 /First 0 /Filter /FlateDecode >>\nstream\n"
        + hidden
        + b"\nendstream\nendobj\n%%EOF\n"
    )


def markers(size: int) -> bytes:
    """A PDF of nothing but object-stream markers: each one a place a stream may start."""
    return b"%PDF-1.5\n" + b"/ObjStm" * (size // 7)


async def test_pdfs_in_a_request_are_counted_off_the_event_loop(
    fresh_provider: FakeProvider,
) -> None:
    # each part was inflated and scanned on the event loop before admission: some 80 ms a
    # bomb, and the markers' pattern retried from every marker (about 4 s for these 200 KB)
    parts = [_pdf_part(inflate_bomb()) for _ in range(19)] + [_pdf_part(markers(200_000))]
    attack = {**ask_small(), "messages": [{"role": "user", "content": parts}], "max_tokens": 5}
    engine = engine_for(fresh_provider)
    try:
        with LoopWatch() as watch:
            results = await asyncio.wait_for(
                asyncio.gather(
                    *(engine.chat(attack, Caller("mallory")) for _ in range(3)),
                    engine.chat(ask_small(), Caller("vic")),
                ),
                60,
            )
    finally:
        await engine.close()
    print(f"the event loop's longest wait: {watch.worst:.3f} s")
    assert all(r.status == 200 for r in results)
    assert watch.worst < 0.5  # was some 2 s a request, one after another


def padded_pdf(pages: int, padding: int) -> bytes:
    """A PDF 1.5 of `pages` pages whose object stream inflates to `padding` bytes more."""
    hidden = zlib.compress(
        b"<< /Type /Pages /Count %d >> " % pages + b"<< /Type /Page >> " * pages + b" " * padding
    )
    return (
        b"%PDF-1.5\n1 0 obj\n<< /Type /ObjStm /N 9 /First 0 /Filter /FlateDecode >>\nstream\n"
        + hidden
        + b"\nendstream\nendobj\n%%EOF\n"
    )


async def test_what_is_inflated_to_count_pages_is_bounded_per_request_not_per_pdf(
    fresh_provider: FakeProvider,
) -> None:
    # three two-page PDFs, each inflating to 6 MiB: each within what one PDF could inflate
    # (8 MiB), together past what one request may (16 MiB), so the third one's pages are unseen
    # and reserved the most a PDF may have: 100 pages of $0.006 each, past a $0.1 budget
    parts = [_pdf_part(padded_pdf(2, 6 * 2**20)) for _ in range(3)]
    body = {**ask_small(), "messages": [{"role": "user", "content": parts}], "max_tokens": 5}
    engine = engine_for(fresh_provider, budget=0.1)
    try:
        with pytest.raises(BadRequest) as err:
            await asyncio.wait_for(engine.chat(body, Caller("mallory")), 60)
        # two of them are seen whole: reserved by their pages, and answered
        two = {**body, "messages": [{"role": "user", "content": parts[:2]}]}
        reply = await asyncio.wait_for(engine.chat(two, Caller("ann")), 60)
    finally:
        await engine.close()
    assert err.value.code == "over_budget", err.value.message
    assert reply.status == 200


def test_with_redaction_on_no_personal_value_is_kept_in_a_stored_response(
    svc: ProxyService, fresh_provider: FakeProvider
) -> None:
    """A stored response is kept a week, whatever `log_prompts` says. The provider saw a
    placeholder and the user got their value back in the answer; what is kept holds the
    placeholder only, and a continuation sends it on as the provider first saw it (issue 53)."""
    first_body = {"model": "fake-small", "input": "Write to ann.lee@example.org about the report"}
    status, first = chat(svc, "ann", first_body, path="v1/responses")
    assert status == 200, first
    assert "ann.lee@example.org" in json.dumps(first)  # the answer, mapped back for its user
    status, _, raw = svc.request("GET", f"v1/responses/{first['id']}", token="tok-ann")
    assert status == 200 and b"ann.lee@example.org" not in raw, raw
    assert b"<email-1>" in raw
    follow = {"model": "fake-small", "input": "and then?", "previous_response_id": first["id"]}
    status, _ = chat(svc, "ann", follow, path="v1/responses")
    assert status == 200
    sent = json.dumps(fresh_provider.received[-1].body)
    assert "ann.lee@example.org" not in sent and "<email-1>" in sent


def object_stream_markers(size: int) -> bytes:
    """A PDF of object-stream markers, each followed by the ">>" a stream's dictionary ends
    with: read from every marker for a stream start, 2.9 MB took 4.8 s of the shared worker."""
    return b"%PDF-1.5\n" + b"/ObjStm>>" * (size // 9)


def hostile_pdf_request() -> dict[str, Any]:
    part = _pdf_part(object_stream_markers(2_900_000))
    return {**ask_small(), "messages": [{"role": "user", "content": [part]}], "max_tokens": 5}


async def test_a_spent_window_is_a_429_before_a_pdf_takes_any_of_the_shared_worker(
    fresh_provider: FakeProvider,
) -> None:
    """kim may send one request a minute: her next one, with a PDF whose pages need the
    worker, is refused before any worker job (it took 9-14 s of the worker to get its 429)."""
    engine = engine_for(fresh_provider, user_limits=["1/minute"])
    try:
        assert (await engine.chat(ask_small(), Caller("kim"))).status == 200
        started = time.monotonic()
        with pytest.raises(RateLimited) as err:
            await asyncio.wait_for(engine.chat(hostile_pdf_request(), Caller("kim")), 60)
        refused_in = time.monotonic() - started
    finally:
        await engine.close()
    print(f"refused in {refused_in:.3f} s")
    assert "user 1/minute" in err.value.message
    assert refused_in < 1.0  # no page count ran: it took the worker 4.8 s


async def test_one_users_pdfs_delay_only_that_user_in_the_shared_worker(
    fresh_provider: FakeProvider,
) -> None:
    """oli's PDFs and vic's long prompt both need the worker (page counts, redaction): vic's
    redaction waits for no more than oli's one job in the worker (it waited 2.3-3.7 s)."""
    engine = engine_for(fresh_provider, redact_patterns=(BUILTIN["email"], BUILTIN["iban"]))
    context = (
        "Our table holds rows like DE89 3704 0044 0532 0130 00. " * 200
    )  # redacted off the loop
    try:
        await engine.chat(ask_small(context), Caller("vic"))  # the worker started: warm
        attacks = [
            asyncio.ensure_future(engine.chat(hostile_pdf_request(), Caller("oli")))
            for _ in range(3)
        ]
        await asyncio.sleep(0.05)  # oli's jobs are in the worker's queue first
        started = time.monotonic()
        reply = await asyncio.wait_for(engine.chat(ask_small(context), Caller("vic")), 60)
        waited = time.monotonic() - started
        answered = await asyncio.wait_for(asyncio.gather(*attacks, return_exceptions=True), 60)
    finally:
        await engine.close()
    print(f"vic waited {waited:.3f} s; oli got {[getattr(a, 'status', a) for a in answered]}")
    assert reply.status == 200
    # each of oli's was read for its pages in the worker, then refused by its size (3.9 MB of
    # base64 is some 966,000 prompt tokens by size alone): each took its turn all the same
    assert all(isinstance(a, BadRequest) and a.code == "request_too_large" for a in answered)
    assert waited < 1.0


async def test_a_users_jobs_in_the_shared_worker_are_capped() -> None:
    """No user may line up work in the worker without end: past four jobs of theirs at once
    (the running one included), a 429; another user's job then waits only for the running one."""
    offload = Offload()
    try:
        await asyncio.wait_for(offload.run("vic", len, "warm"), 30)  # the worker started
        held = [asyncio.ensure_future(offload.run("mallory", time.sleep, 1.0)) for _ in range(4)]
        await asyncio.sleep(0)
        with pytest.raises(RateLimited) as err:
            await offload.run("mallory", time.sleep, 1.0)
        started = time.monotonic()
        assert await asyncio.wait_for(offload.run("vic", len, "abc"), 30) == 3
        waited = time.monotonic() - started
        await asyncio.wait_for(asyncio.gather(*held), 30)
    finally:
        await offload.close()
    assert "4 of your requests are already waiting" in err.value.message
    assert err.value.retry_after == 1
    assert waited < 2.0  # mallory's one running job, not her four
