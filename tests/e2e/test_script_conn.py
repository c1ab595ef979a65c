"""The hot path's Redis client (state/script_conn.py) against a real redis-server of the test's
own, which it restarts, pauses and protects with a password."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, require
from tests.helpers.services import redis_answers

pytestmark = pytest.mark.slow

ECHO = "return {ARGV[1], #KEYS, redis.call('INCR', KEYS[1])}"


class OwnRedis:
    """A redis-server on a loopback port of its own that the test may stop and start again."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.folder, self.extra = folder, extra
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.folder), *self.extra],
            stdout=(self.folder / "log").open("ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while not self.answers():
            assert self.proc.poll() is None and time.monotonic() < deadline, (self.folder / "log").read_text()
            time.sleep(0.05)

    def answers(self) -> bool:
        if "--requirepass" in self.extra:
            try:
                import redis

                return bool(redis.Redis(port=self.port, password=self.extra[1], socket_timeout=1).ping())
            except Exception:
                return False
        return redis_answers(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    require("redis-server", binary=True)
    r = OwnRedis(tmp_path)
    r.start()
    yield r
    r.stop()


def client(url: str):
    """The redis-py client the state backend makes (its pool's settings are the ones used)."""
    from jupyter_server_ext.state.redis import connect

    return connect(url)


def script_on(r, script: str):
    """`script` on a pipelined connection made from client `r`'s settings, and that connection."""
    from jupyter_server_ext.state.script_conn import (
        ScriptConnection,
        pipelined_connection,
        script_caller,
    )

    conn = pipelined_connection(r)
    assert conn is not None  # plain TCP: the pipelined client
    call = script_caller(r, script, conn)
    assert isinstance(call, ScriptConnection)
    return call, conn


async def test_many_calls_in_flight_each_get_their_own_reply(own_redis: OwnRedis) -> None:
    r = client(f"redis://127.0.0.1:{own_redis.port}/3")
    call, conn = script_on(r, ECHO)
    replies = await asyncio.gather(*(call(keys=["n"], args=[f"caller-{i}"]) for i in range(300)))
    assert [x[0] for x in replies] == [f"caller-{i}".encode() for i in range(300)]
    assert sorted(x[2] for x in replies) == list(range(1, 301))  # each ran once, in database 3
    assert int(await r.get("n")) == 300  # redis-py, also on database 3, sees the same count
    conn.close()
    await r.aclose()


async def test_a_script_error_is_a_response_error_and_the_connection_goes_on(own_redis: OwnRedis) -> None:
    from redis.exceptions import DataError, ResponseError

    from jupyter_server_ext.state.script_conn import script_caller

    r = client(f"redis://127.0.0.1:{own_redis.port}/0")
    good, conn = script_on(r, ECHO)
    bad = script_caller(r, "return redis.call('NOSUCHCOMMAND')", conn)  # the same connection
    with pytest.raises(ResponseError, match="(?i)unknown"):
        await bad()
    with pytest.raises(DataError, match="bool"):
        await good(keys=["k"], args=[True])
    assert (await good(keys=["k"], args=[1.5]))[0] == b"1.5"
    conn.close()
    await r.aclose()


async def test_a_restarted_redis_fails_calls_in_flight_then_works_again(own_redis: OwnRedis) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    r = client(f"redis://127.0.0.1:{own_redis.port}/0")
    call, conn = script_on(r, ECHO)
    assert (await call(keys=["k"], args=["before"]))[2] == 1
    own_redis.stop()
    with pytest.raises(RedisConnectionError):  # down: refused at once, not hung
        await asyncio.wait_for(call(keys=["k"], args=["down"]), 5)
    own_redis.start()  # a new server: the script is not loaded there (NOSCRIPT), and the data is gone
    assert await call(keys=["k"], args=["after"]) == [b"after", 1, 1]
    conn.close()
    await r.aclose()


async def test_a_server_that_stops_answering_times_out(own_redis: OwnRedis) -> None:
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from jupyter_server_ext.state.script_conn import PipelinedConnection, ScriptConnection

    conn = PipelinedConnection(host="127.0.0.1", port=own_redis.port, timeout=0.5)
    call = ScriptConnection(ECHO, conn)
    assert (await call(keys=["k"], args=["x"]))[2] == 1
    assert own_redis.proc is not None
    own_redis.proc.send_signal(19)  # SIGSTOP: the connection stays open, nothing answers
    try:
        t0 = time.monotonic()
        with pytest.raises(RedisTimeoutError, match="within 0.5 s"):
            await asyncio.gather(*(call(keys=["k"], args=["x"]) for _ in range(5)))
        assert time.monotonic() - t0 < 3
    finally:
        own_redis.proc.send_signal(18)  # SIGCONT
    assert (await call(keys=["k"], args=["x"]))[0] == b"x"  # a fresh connection
    conn.close()


async def test_a_password_and_database_from_the_url_are_used(tmp_path: Path) -> None:
    require("redis-server", binary=True)
    own = OwnRedis(tmp_path, "--requirepass", "s3cret-pw")
    own.start()
    try:
        from redis.exceptions import ResponseError

        r = client(f"redis://:s3cret-pw@127.0.0.1:{own.port}/5")
        call, conn = script_on(r, ECHO)
        assert (await call(keys=["p"], args=["ok"]))[2] == 1
        assert int(await r.get("p")) == 1  # the same database as redis-py's
        conn.close()
        await r.aclose()
        wrong = client(f"redis://:wrong@127.0.0.1:{own.port}/0")
        call, conn = script_on(wrong, ECHO)
        with pytest.raises(ResponseError, match="(?i)WRONGPASS|invalid"):
            await call(keys=["p"], args=["no"])
        conn.close()
        await wrong.aclose()
    finally:
        own.stop()
