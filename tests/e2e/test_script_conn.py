"""The hot path's Redis client (state/connection/pipelined.py) against a real redis-server of the test's
own, which it restarts, pauses and protects with a password."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import require
from tests.helpers.own_servers import OwnRedis

pytestmark = pytest.mark.slow

ECHO = "return {ARGV[1], #KEYS, redis.call('INCR', KEYS[1])}"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    require("redis-server", binary=True)
    r = OwnRedis(tmp_path)
    r.start()
    yield r
    r.stop(9)


def client(url: str):
    """The redis-py client the state backend makes (its pool's settings are the ones used)."""
    from jupyter_server_ext.state.admission.redis import connect

    return connect(url)


def script_on(r, script: str):
    """`script` on a pipelined connection made from client `r`'s settings, and that connection."""
    from jupyter_server_ext.state.connection.pipelined import (
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


async def test_a_script_error_is_a_response_error_and_the_connection_goes_on(
    own_redis: OwnRedis,
) -> None:
    from redis.exceptions import DataError, ResponseError

    from jupyter_server_ext.state.connection.pipelined import script_caller

    r = client(f"redis://127.0.0.1:{own_redis.port}/0")
    good, conn = script_on(r, ECHO)
    bad = script_caller(r, "return redis.call('NOSUCHCOMMAND')", conn)  # the same connection
    with pytest.raises(ResponseError, match="(?i)unknown"):
        await bad()
    with pytest.raises(DataError, match="bool"):
        await good(keys=["k"], args=[True])
    assert (await good(keys=["k"], args=[1.5]))[0] == b"1.5"
    # calls in flight beside the failing one on the same connection are answered, each its own
    said = await asyncio.gather(
        good(keys=["k"], args=["a"]),
        bad(),
        good(keys=["k"], args=["b"]),
        good(keys=["k"], args=["c"]),
        return_exceptions=True,
    )
    assert isinstance(said[1], ResponseError), said
    assert [said[i][0] for i in (0, 2, 3)] == [b"a", b"b", b"c"], said
    conn.close()
    await r.aclose()


async def test_a_restarted_redis_fails_calls_in_flight_then_works_again(
    own_redis: OwnRedis,
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    r = client(f"redis://127.0.0.1:{own_redis.port}/0")
    call, conn = script_on(r, ECHO)
    assert (await call(keys=["k"], args=["before"]))[2] == 1
    own_redis.stop(9)
    with pytest.raises(RedisConnectionError):  # down: refused at once, not hung
        await asyncio.wait_for(call(keys=["k"], args=["down"]), 5)
    own_redis.start()  # a new server: the script is not loaded there (NOSCRIPT), and the data is gone
    assert await call(keys=["k"], args=["after"]) == [b"after", 1, 1]
    conn.close()
    await r.aclose()


async def test_a_server_that_stops_answering_times_out(own_redis: OwnRedis) -> None:
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from jupyter_server_ext.state.connection.pipelined import PipelinedConnection, ScriptConnection

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
        own.stop(9)


async def test_a_redis_still_loading_its_data_reads_as_down_not_as_a_bug() -> None:
    """Right after a restart Redis answers every command with LOADING until its data is read
    back (seen in the soak): that is an outage (the state backend answers 503), not an error."""
    from redis.exceptions import BusyLoadingError
    from redis.exceptions import ConnectionError as RedisConnectionError

    from jupyter_server_ext.state.connection.pipelined import PipelinedConnection, ScriptConnection

    async def loading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):  # a server that has not finished loading
            writer.write(b"-LOADING Redis is loading the dataset in memory\r\n")
        writer.close()

    server = await asyncio.start_server(loading, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = PipelinedConnection(host="127.0.0.1", port=port)
    try:
        with pytest.raises(BusyLoadingError) as err:
            await ScriptConnection(ECHO, conn)(keys=["k"], args=["x"])
        assert isinstance(err.value, RedisConnectionError)
    finally:
        conn.close()
        server.close()
