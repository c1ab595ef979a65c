"""Issue 24, finding 12: files the project reads and writes, planted or swapped by someone else.

- The usage spool: a folder others can write is not used; a planted segment (a symbolic link,
  a FIFO, a file of another owner or mode) is skipped with a warning naming it, and nothing in
  it is charged to anyone; a good segment left by a process that is gone is still written.
- The replay file: created owner-only, and never read or written through a symbolic link (a
  link to ~/.bashrc would have had answers appended to it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from jupyter_server_ext.engine import Caller, Outcome
from jupyter_server_ext.engine.accounting.usage import UsageLog, row_of
from jupyter_server_ext.store import open_store
from rsql_magic.client import ProxyClient
from rsql_magic.errors import UsageError
from rsql_magic.replay import Replay, ReplayStore
from tests.helpers import FAKE_KEY
from tests.helpers.fake_provider import FakeProvider

BILL = 1234.50


def outcome(request_id: str, user: str, cost: float = 0.001) -> Outcome:
    return Outcome(
        request_id,
        Caller(user, client="magic"),
        "fake-small",
        time.time(),
        upstream="a1",
        prompt_tokens=10,
        completion_tokens=5,
        cost_usd=cost,
        latency_s=0.2,
        upstream_s=0.15,
    )


def charged(db: Path) -> dict[str, float]:
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT user, SUM(cost_usd) FROM usage GROUP BY user").fetchall())


def planted_line(request_id: str) -> str:
    """A row as the spool holds it: what an attacker writes to bill bob."""
    return json.dumps(row_of(outcome(request_id, "bob", BILL), None)) + "\n"


def nobody() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


async def journal_and_abandon(spool: Path, tmp_path: Path, ids: list[str]) -> None:
    """A real process's journal left behind: its database was unreachable until it stopped."""
    away = tmp_path / "away"
    away.write_text("not a folder")
    log = UsageLog(
        open_store(f"sqlite:///{away}/usage.sqlite"), spool_dir=str(spool), interval=3600
    )
    await log.start()
    for request_id in ids:
        log.record(outcome(request_id, "carol"))
    await log.close()
    assert len(list(spool.glob("usage-*.jsonl"))) == 1  # noqa: ASYNC240 - a test reading its own folder


async def write_spool(spool: Path, db: Path) -> bool:
    """Start a usage log on `spool`, write what it takes over, stop; whether it used the spool."""
    log = UsageLog(open_store(f"sqlite:///{db}"), spool_dir=str(spool), interval=3600)
    await log.start()
    used = log.spool is not None
    await log.flush()
    await log.close()
    return used


async def test_planted_spool_segments_are_skipped_and_never_charged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rsql")
    spool, db = tmp_path / "spool", tmp_path / "usage.sqlite"
    await journal_and_abandon(spool, tmp_path, ["dead-1", "dead-2"])

    elsewhere = tmp_path / "elsewhere.jsonl"
    linked = planted_line("via-link")
    elsewhere.write_text(linked)
    elsewhere.chmod(0o600)
    planted = {
        "usage-1-1-aaaaaa.jsonl": "a symbolic link",
        "usage-2-2-bbbbbb.jsonl": "readable by others",
        "usage-3-3-cccccc.jsonl": "a FIFO",
    }
    (spool / "usage-1-1-aaaaaa.jsonl").symlink_to(elsewhere)
    wide = spool / "usage-2-2-bbbbbb.jsonl"
    wide.write_text(planted_line("wide-mode"))
    wide.chmod(0o644)
    os.mkfifo(spool / "usage-3-3-cccccc.jsonl", 0o600)  # opening it to read would hang
    other = nobody()
    if other is not None:  # as root: a file of another user's, mode and all right otherwise
        theirs = spool / "usage-4-4-dddddd.jsonl"
        theirs.write_text(planted_line("their-file"))
        theirs.chmod(0o600)
        os.chown(theirs, *other)
        planted[theirs.name] = "owned by another user"

    try:
        used = await asyncio.wait_for(write_spool(spool, db), 30)
    except TimeoutError:  # release the reader stuck on the FIFO, or the test run never ends
        os.close(os.open(spool / "usage-3-3-cccccc.jsonl", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("the spool hung opening a planted FIFO")
    assert used  # the folder itself is ours and private: the spool is in use
    # the dead process's rows, and nothing else
    assert charged(db) == {"carol": pytest.approx(0.002)}
    said = " | ".join(r.getMessage() for r in caplog.records)
    for name in planted:
        assert name in said, (name, said)
    assert elsewhere.read_text() == linked  # never written or removed through the link
    for name in planted:
        assert os.path.lexists(spool / name)  # noqa: ASYNC240 - skipped, left for the admin


@pytest.mark.parametrize("how", ["group-writable", "world-writable", "another user's"])
async def test_a_spool_folder_others_can_write_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.WARNING, logger="rsql")
    spool, db = tmp_path / "spool", tmp_path / "usage.sqlite"
    spool.mkdir()
    if how == "another user's":
        other = nobody()
        if other is None:
            pytest.skip("needs root to give the folder to another user")
        os.chown(spool, *other)
        spool.chmod(0o700)
    else:
        spool.chmod(0o770 if how == "group-writable" else 0o777)
    bill = spool / "usage-9-9-eeeeee.jsonl"
    bill.write_text(planted_line("planted"))
    bill.chmod(0o600)

    log = UsageLog(open_store(f"sqlite:///{db}"), spool_dir=str(spool), interval=3600)
    await log.start()
    try:
        assert log.spool is None  # not used
        log.record(outcome("live", "alice"))
        assert await log.flush()
    finally:
        await log.close()
    assert charged(db) == {"alice": pytest.approx(0.001)}
    said = [r.getMessage() for r in caplog.records if "usage spool off" in r.getMessage()]
    assert len(said) == 1 and str(spool) in said[0], said
    assert ("writable by others" in said[0]) if how != "another user's" else ("owned by" in said[0])


def test_a_new_spool_folder_is_private(tmp_path: Path) -> None:
    spool = tmp_path / "deep" / "spool"

    async def run() -> None:
        log = UsageLog(
            open_store(f"sqlite:///{tmp_path}/usage.sqlite"), spool_dir=str(spool), interval=3600
        )
        await log.start()
        await log.close()

    old = os.umask(0)  # a careless umask must not make it shared
    try:
        asyncio.run(run())
    finally:
        os.umask(old)
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700


# -- the replay file ---------------------------------------------------------------------------


def ask_and_record(provider: FakeProvider, path: Path) -> str:
    provider.script("SELECT 1")
    client = ProxyClient(f"http://127.0.0.1:{provider.port}/", FAKE_KEY)
    rp = Replay("auto", ReplayStore(path), kind="ask", cell="cell In [1]", question="q")
    return client.chat(
        [{"role": "user", "content": "q"}], model="fake-small", temperature=0, replay=rp
    ).text


def test_a_new_replay_file_is_readable_by_its_owner_only(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    path = tmp_path / ".rsql-replay.jsonl"
    old = os.umask(0o022)
    try:
        assert ask_and_record(fresh_provider, path) == "SELECT 1"
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_replay_file_that_is_a_symlink_is_refused(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    victim = tmp_path / "bashrc"
    victim.write_text("export PATH=$HOME/bin:$PATH\n")
    path = tmp_path / ".rsql-replay.jsonl"
    path.symlink_to(victim)  # planted in a notebook folder handed out
    with pytest.raises(UsageError) as err:
        ask_and_record(fresh_provider, path)
    msg = str(err.value)
    assert "symbolic link" in msg and str(path) in msg and "RSQL_REPLAY_FILE" in msg
    assert victim.read_text() == "export PATH=$HOME/bin:$PATH\n"
    for call in (ReplayStore(path).entries, ReplayStore(path).prune):
        with pytest.raises(UsageError):
            call()
    assert victim.read_text() == "export PATH=$HOME/bin:$PATH\n"
    # a FIFO in its place would have hung the kernel: refused at once
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file"):
        ReplayStore(fifo).entries()
