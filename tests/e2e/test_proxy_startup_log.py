"""What `rsql-proxy` prints before it says it listens: its own lines, none of a library's."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService

pytestmark = pytest.mark.slow

USERS = {"svc-alice": {"name": "alice", "groups": []}}

# a usage table as an older version made it: none of the columns added since
OLD_TABLE = """
CREATE TABLE usage (
  id INTEGER PRIMARY KEY,
  ts REAL NOT NULL, request_id TEXT NOT NULL, user TEXT NOT NULL, client TEXT NOT NULL,
  model TEXT, upstream TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL,
  latency_ms REAL, overhead_ms REAL, status INTEGER, error TEXT, cache_hit INTEGER, prompt TEXT
);
"""


def _until_listening(svc: ProxyService) -> list[str]:
    deadline = time.monotonic() + 30
    while "rsql-proxy listening" not in svc.log():
        assert time.monotonic() < deadline, svc.log()
        time.sleep(0.05)
    lines = svc.log().splitlines()
    return lines[: next(i for i, line in enumerate(lines) if "rsql-proxy listening" in line) + 1]


def test_the_start_up_log_is_the_proxys_own_lines(
    service_factory, fresh_provider: FakeProvider
) -> None:
    """JupyterHub's client imports alembic, which said "setup plugin ..." seven times at INFO
    before the proxy's first line; an older usage table's migration is one line."""
    svc = service_factory(
        {"upstreams": upstreams_for(fresh_provider), "default_model": "fake-small"},
        static_users=USERS,
    )
    lines = _until_listening(svc)
    assert not [line for line in lines if "alembic" in line], "\n".join(lines)
    assert all(" rsql" in line.split("]")[0] for line in lines if line.startswith("[")), lines

    old = svc.cwd / "old-usage.sqlite"
    with sqlite3.connect(old) as conn:
        conn.executescript(OLD_TABLE)
    old.chmod(0o600)  # private, as the proxy keeps it: its mode is not what this test is about
    svc.stop()
    migrated = service_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "database_url": f"sqlite:///{old}",
        },
        static_users=USERS,
    )
    deadline = time.monotonic() + 30
    while "added the columns" not in migrated.log():
        assert time.monotonic() < deadline, migrated.log()
        time.sleep(0.05)
    said = [line for line in migrated.log().splitlines() if "usage log" in line]
    assert len(said) == 1 and "result_rows" in said[0], said
    columns = {row[1] for row in sqlite3.connect(old).execute("PRAGMA table_info(usage)")}
    assert {"notebook", "cell", "api", "result_rows"} <= columns
