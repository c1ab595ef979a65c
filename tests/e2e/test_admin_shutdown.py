"""The usage log when a real `jupyter server` process is stopped (SIGTERM): nothing is lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider

pytestmark = pytest.mark.slow


def test_usage_log_is_flushed_on_clean_shutdown(
    jupyter_server_factory, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    db = tmp_path / "usage.sqlite"
    server = jupyter_server_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "database_url": f"sqlite:///{db}",
        }
    )
    ids = []
    for _ in range(20):
        status, headers, _ = server.request(
            "POST", "v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}
        )
        ids.append(headers["x-request-id"])
    server.stop()  # SIGTERM right after the last answer
    stored = {r[0] for r in sqlite3.connect(db).execute("SELECT request_id FROM usage")}
    assert stored == set(ids)
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
