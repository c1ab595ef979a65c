"""No usage row lost: PostgreSQL keeps one row per request, a real outage of the database as
the proxy sees it spools rows and writes each once, and a proxy killed with SIGKILL loses none;
the rows a killed child process journaled for a SQLite store are written once by the next one,
and a live one keeps its segment. The spool in one process: tests/unit/test_usage_spool.py.

The outage: a loopback TCP relay (asyncio, in this test) stands between the proxy and the test
PostgreSQL; cutting it closes every connection and refuses new ones. The machine's PostgreSQL
is never stopped.
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from jupyter_server_ext.engine import Caller, Outcome
from jupyter_server_ext.engine.accounting.usage import COLUMNS, UsageLog, row_of
from jupyter_server_ext.store import open_store
from tests.helpers import REPO, child_env, free_port, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService
from tests.helpers.usage_spool import Database, spooled_lines

USERS = {"tok-u1": {"name": "u1"}, "tok-admin": {"name": "admin", "admin": True}}
ASK = {"model": "fake-small", "messages": [{"role": "user", "content": "hello"}]}


def outcome(request_id: str) -> Outcome:
    return Outcome(
        request_id,
        Caller("alice", client="magic"),
        "fake-small",
        time.time(),
        upstream="a1",
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=0.001,
        latency_s=0.2,
        upstream_s=0.15,
    )


def stored_ids(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('rsql_usage')").fetchone()[0] is None:
            return []
        return [r[0] for r in conn.execute("SELECT request_id FROM rsql_usage")]


async def test_postgresql_stores_a_batch_sent_again_once(pg_database: str) -> None:
    store = open_store(pg_database)
    await store.open()
    try:
        rows = [row_of(outcome(f"r{i}"), None) for i in range(300)]
        await store.write(rows)
        await store.write(rows[100:] + rows[:100])  # a retry after a lost confirmation
        await store.write(rows[:1])
    finally:
        await store.close()
    ids = stored_ids(pg_database)
    assert len(ids) == 300 and set(ids) == {f"r{i}" for i in range(300)}


async def test_a_postgresql_table_holding_a_request_twice_is_settled(pg_database: str) -> None:
    """Exact copies (a retried write of an older version) go; rows that only share the
    request_id stay under a new one; then the unique index keeps one row per request."""
    import asyncpg

    conn = await asyncpg.connect(pg_database)
    try:
        await conn.execute(
            "CREATE TABLE rsql_usage (id BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, request_id TEXT "
            'NOT NULL, "user" TEXT NOT NULL, client TEXT NOT NULL, model TEXT, upstream TEXT, prompt_tokens '
            "INTEGER, completion_tokens INTEGER, cost_usd DOUBLE PRECISION, latency_ms DOUBLE PRECISION, "
            "overhead_ms DOUBLE PRECISION, status INTEGER, error TEXT, cache_hit INTEGER, prompt TEXT)"
        )
        for rid, user in [
            ("a", "alice"),
            ("a", "alice"),
            ("a", "bob"),
            ("b", "alice"),
            ("a", "alice"),
        ]:
            await conn.execute(
                'INSERT INTO rsql_usage (ts, request_id, "user", client, status) '
                "VALUES (1, $1, $2, 'magic', 200)",
                rid,
                user,
            )
    finally:
        await conn.close()
    log = UsageLog(open_store(pg_database), interval=3600)
    await log.start()
    try:
        log.record(outcome("a"))
        log.record(outcome("c"))
        assert await log.flush()
    finally:
        await log.close()
    import psycopg

    with psycopg.connect(pg_database) as c:
        rows = c.execute('SELECT request_id, "user" FROM rsql_usage ORDER BY id').fetchall()
    assert rows == [("a", "alice"), ("a~dup-3", "bob"), ("b", "alice"), ("c", "alice")]


# -- a real outage, as the proxy sees it -------------------------------------------------------------


class Relay:
    """A loopback TCP relay to PostgreSQL that can be cut (every connection closed, new ones
    refused) and restored on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pg-relay", daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.restore()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def restore(self) -> None:
        async def go() -> asyncio.Server:
            return await asyncio.start_server(self._client, "127.0.0.1", self.port)

        self.server = self._call(go())

    def cut(self) -> None:
        async def go() -> None:
            assert self.server is not None
            self.server.close()  # new connections are refused
            for w in list(self.writers):  # the open ones are reset
                w.transport.abort()
            self.writers.clear()

        self._call(go())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def relay(pg_database: str) -> Iterator[tuple[Relay, str]]:
    """The relay, and the test database's URL through it."""
    u = urllib.parse.urlsplit(pg_database)
    r = Relay((u.hostname or "127.0.0.1", u.port or 5432))
    yield r, urllib.parse.urlunsplit(u._replace(netloc=f"{u.username}@127.0.0.1:{r.port}"))
    r.close()


def proxy_config(provider: FakeProvider, database_url: str, spool: Path) -> dict[str, Any]:
    return {
        "upstreams": upstreams_for(provider),
        "default_model": "fake-small",
        "database_url": database_url,
        "usage_spool_dir": str(spool),
    }


def ask(svc: ProxyService) -> str:
    status, headers, body = svc.request("POST", "v1/chat/completions", ASK, token="tok-u1")
    assert status == 200, body
    return headers["x-request-id"]


def usage_status(svc: ProxyService) -> dict[str, Any]:
    status, _, body = svc.request("GET", "status", token="tok-admin")
    assert status == 200, body
    return json.loads(body)["usage_log"]


def wait_for(what: Any, seconds: float, message: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            assert value, message
            return value
        time.sleep(0.2)


@pytest.mark.slow
def test_a_database_outage_loses_and_duplicates_no_row(
    service_factory,
    fresh_provider: FakeProvider,
    relay: tuple[Relay, str],
    pg_database: str,
    tmp_path: Path,
) -> None:
    cable, url = relay
    svc = service_factory(proxy_config(fresh_provider, url, tmp_path / "spool"), static_users=USERS)
    ids: list[str] = []
    stop = threading.Event()

    def keep_asking() -> None:  # answered requests all along: before, during and after the cut
        for _ in range(400):
            if stop.is_set():
                return
            ids.append(ask(svc))
            time.sleep(0.01)

    with ThreadPoolExecutor(2) as pool:
        askers = [pool.submit(keep_asking) for _ in range(2)]
        wait_for(lambda: len(ids) >= 20, 30, "requests were not answered")
        cable.cut()
        # the proxy goes on answering; its rows go to the spool
        during = wait_for(
            lambda: (s := usage_status(svc))["unreachable_since"] and s["spool"]["rows"] > 0 and s,
            30,
            "the status never showed the outage",
        )
        assert during["error"] and during["dropped_rows"] == 0 and during["spool"]["enabled"]
        # long enough for the writer to back off and retry a few times
        answered_in_outage, cut_at = len(ids), time.monotonic()
        wait_for(
            lambda: len(ids) >= answered_in_outage + 20 and time.monotonic() > cut_at + 3,
            30,
            "no answers during the outage",
        )
        cable.restore()
        time.sleep(1)
        stop.set()
        for f in askers:
            f.result()
    wait_for(
        lambda: len(stored_ids(pg_database)) >= len(ids), 60, "the spooled rows were not written"
    )
    time.sleep(1)  # nothing more arrives: no row twice
    stored = stored_ids(pg_database)
    assert len(stored) == len(ids) and set(stored) == set(ids)
    after = usage_status(svc)
    assert (
        after["unreachable_since"] is None
        and after["spool"]["rows"] == 0
        and after["dropped_rows"] == 0
    )
    assert svc.stop(signal.SIGTERM) == 0
    log = svc.log()
    assert log.count("usage database unreachable") == 1, log
    assert log.count("usage database reachable again") == 1, log


@pytest.mark.slow
def test_rows_of_a_killed_proxy_are_written_after_its_restart(
    service_factory,
    fresh_provider: FakeProvider,
    relay: tuple[Relay, str],
    pg_database: str,
    tmp_path: Path,
) -> None:
    cable, url = relay
    spool = tmp_path / "spool"
    first = service_factory(proxy_config(fresh_provider, url, spool), static_users=USERS)
    ids = [ask(first) for _ in range(10)]
    cable.cut()
    ids += [ask(first) for _ in range(15)]
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    # what the database lacks is in the spool, on disk
    missing = set(ids) - set(stored_ids(pg_database))
    spooled = {
        json.loads(line)[1]
        for f in spool.glob("usage-*.jsonl")
        for line in f.read_text().splitlines()
    }
    assert len(missing) >= 15 and missing <= spooled
    cable.restore()
    second = service_factory(proxy_config(fresh_provider, url, spool), static_users=USERS)
    wait_for(
        lambda: len(stored_ids(pg_database)) >= len(ids),
        60,
        "the killed proxy's rows were not written",
    )
    ids.append(ask(second))
    wait_for(lambda: len(stored_ids(pg_database)) >= len(ids), 30, "a new row was not written")
    assert second.stop(signal.SIGTERM) == 0
    stored = stored_ids(pg_database)
    assert len(stored) == len(ids) and set(stored) == set(ids)
    assert [f for f in spool.glob("usage-*") if f.stat().st_size] == []
    taken = re.search(
        r"usage spool: writing (\d+) rows left in (\S+) by processes that are gone", second.log()
    )
    assert taken and int(taken[1]) >= 15 and taken[2] == str(spool), second.log()


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(tmp_path)


# -- other processes: one that is killed, one that is alive ------------------------------------------

CHILD = """
import asyncio, sys, time
from jupyter_server_ext.engine import Caller, Outcome
from jupyter_server_ext.engine.accounting.usage import COLUMNS, UsageLog, row_of
from jupyter_server_ext.store import open_store

async def main(url, spool, n):
    log = UsageLog(open_store(url), spool_dir=spool, interval=0.05)
    await log.start()
    for i in range(int(n)):
        log.record(Outcome(f"child-{i}", Caller("child"), "fake-small", time.time()))
    print("recorded", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.fixture
def child(tmp_path: Path) -> Iterator:
    """Start a process that journals `n` rows for a database it cannot reach, then waits."""
    started: list[subprocess.Popen] = []

    def start(spool: Path, n: int) -> subprocess.Popen:
        away = tmp_path / "away"
        away.write_text("not a folder")  # its database is unreachable: the rows stay spooled
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, f"sqlite:///{away}/usage.sqlite", str(spool), str(n)],
            stdout=subprocess.PIPE,
            stderr=(tmp_path / f"child{len(started)}.log").open("wb"),
            cwd=REPO,
            env=child_env(),
        )
        started.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else b""
        assert line.strip() == b"recorded", (tmp_path / f"child{len(started) - 1}.log").read_text()
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


async def test_rows_of_a_killed_process_are_written_by_the_next_one_once(
    db: Database, tmp_path: Path, child
) -> None:
    spool = tmp_path / "spool"
    proc = child(spool, 300)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    # it had written half before it died (the confirmation was lost): sent again, stored once
    store = open_store(db.url)
    await store.open()
    await store.write([tuple(r) for r in spooled_lines(spool)[:150]])
    await store.close()
    for _ in range(2):  # a second start finds nothing left to send
        log = UsageLog(open_store(db.url), spool_dir=str(spool), interval=3600)
        await log.start()
        try:
            await log.flush()
            assert log.status()["spool"]["rows"] == 0
        finally:
            await log.close()
        ids = db.ids()
        assert len(ids) == 300 and set(ids) == {f"child-{i}" for i in range(300)}
    assert list(spool.glob("usage-*")) == []


async def test_a_live_process_keeps_its_segment(db: Database, tmp_path: Path, child) -> None:
    spool = tmp_path / "spool"
    proc = child(spool, 40)
    log = UsageLog(open_store(db.url), spool_dir=str(spool), interval=0.05, adopt_interval=0.1)
    await log.start()
    try:
        log.record(outcome("mine"))
        assert await log.flush()
        await asyncio.sleep(0.5)  # several looks at the folder while the child lives
        assert db.ids() == ["mine"]
        assert len(spooled_lines(spool)) == 40  # the child's rows, untouched
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for _ in range(150):  # its next look at the folder takes the segment over
            if len(db.ids()) >= 41:
                break
            await asyncio.sleep(0.1)
        ids = db.ids()
        assert len(ids) == 41 and set(ids) == {"mine"} | {f"child-{i}" for i in range(40)}
    finally:
        await log.close()


async def test_rows_an_older_version_journaled_are_written_with_the_new_columns_empty(
    db: Database, tmp_path: Path, child
) -> None:
    """A proxy upgraded while its spool held rows: those rows lack the columns added since
    (the escalation stage and every column after it), and are stored with them empty, not
    refused."""
    spool = tmp_path / "spool"
    proc = child(spool, 20)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    cut = COLUMNS.index("escalation")  # as the version before the escalation column wrote them
    dropped: list[Any] = []
    for seg in spool.glob("usage-*.jsonl"):
        rows = [json.loads(line) for line in seg.read_text().splitlines()]
        dropped += [v for row in rows for v in row[cut:]]
        seg.write_text("".join(json.dumps(row[:cut]) + "\n" for row in rows))
    assert any(v is not None for v in dropped)  # the cut took values the rows had
    log = UsageLog(open_store(db.url), spool_dir=str(spool), interval=3600)
    await log.start()
    try:
        await log.flush()
    finally:
        await log.close()
    later = ", ".join(COLUMNS[cut:])
    with sqlite3.connect(db.path) as conn:
        rows = conn.execute(f"SELECT request_id, {later} FROM usage").fetchall()
    assert len(rows) == 20 and {v for row in rows for v in row[1:]} == {None}, rows[:2]
