"""Issue 24, finding 9: a hostile user name or recorded field cannot drive the admin's terminal.

`rsql-proxy admin` against a real proxy whose usage log holds rows of a user named with
terminal control sequences (an OSC 52 clipboard write, a line erase and carriage return, a C1
CSI, DEL, a bidi override), and `rsql-replay` over a replay file holding the same: both run
as subprocesses, and nothing that a terminal obeys reaches their output.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_server_ext.engine import Caller, Outcome
from jupyter_server_ext.engine.accounting.usage import row_of
from jupyter_server_ext.store import open_store
from rsql_magic.replay import Entry, ReplayStore
from tests.helpers import REPO, child_env, upstreams_for
from tests.helpers.fake_provider import FakeProvider

pytestmark = pytest.mark.slow

# what a terminal obeys: OSC 52 (sets the clipboard), erase line + carriage return (hides the
# line), a C1 CSI (colours, on terminals that read 8-bit controls), DEL, a right-to-left override
CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4vKg==\x07"
HOSTILE_USER = f"{CLIPBOARD}eve\x1b[2K\r\x9b31m\u202egnp.exe\x7f"
HOSTILE_MODEL = "fake\x1b[8m-small"
HOSTILE_ERROR = "upstream said \x1b]0;owned\x07\r\x1b[2Kall fine\n\x1b[1A"
OBEYED = ["\x1b", "\x07", "\r", "\x9b", "\u202e", "\x7f", "\x00"]
ADMIN = {"tok-admin": {"name": "root", "admin": True}}


def obeyed(text: str) -> list[str]:
    return [repr(c) for c in OBEYED if c in text]


def plant_usage(db: Path) -> None:
    """Rows as the proxy would have logged them for a user of that name (and a normal one)."""
    now = time.time()
    rows = [
        row_of(
            Outcome(
                "r-evil-1",
                Caller(HOSTILE_USER, client="api"),
                HOSTILE_MODEL,
                now - 5,
                upstream="a1",
                prompt_tokens=10,
                completion_tokens=5,
                cost_usd=0.25,
                latency_s=0.2,
            ),
            None,
        ),
        row_of(
            Outcome(
                "r-evil-2",
                Caller(HOSTILE_USER, client="api"),
                HOSTILE_MODEL,
                now - 4,
                upstream="a1",
                status=500,
                error=HOSTILE_ERROR,
                latency_s=0.1,
            ),
            None,
        ),
        row_of(
            Outcome(
                "r-alice-1",
                Caller("alice", client="magic"),
                "fake-small",
                now - 3,
                upstream="a2",
                prompt_tokens=100,
                completion_tokens=50,
                cost_usd=1.5,
                latency_s=0.3,
            ),
            None,
        ),
    ]

    async def write() -> None:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        await store.write(rows)
        await store.close()

    asyncio.run(write())


@pytest.fixture
def svc(service_factory: Callable, fresh_provider: FakeProvider, tmp_path: Path) -> Any:
    db = tmp_path / "usage.sqlite"
    plant_usage(db)
    return service_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "database_url": f"sqlite:///{db}",
            "health_check_seconds": 0.0,
        },
        static_users=ADMIN,
    )


def admin(url: str, *args: str) -> subprocess.CompletedProcess:
    env = child_env(RSQL_PROXY_URL=url, RSQL_PROXY_TOKEN="tok-admin")
    return subprocess.run(
        [sys.executable, "-m", "jupyter_server_ext", "admin", *args],
        capture_output=True,
        env=env,
        cwd=REPO,
        timeout=60,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
    )


def test_admin_tables_show_a_hostile_user_name_and_fields_escaped(svc: Any) -> None:
    for args in (
        ["users", "--hours", "1"],
        ["errors"],
        ["activity", HOSTILE_USER],
        ["stats", "--hours", "1"],
        ["--json", "users", "--hours", "1"],
    ):
        out = admin(svc.url, *args)
        assert out.returncode == 0, (args, out.stderr)
        assert obeyed(out.stdout) == [] and obeyed(out.stderr) == [], (args, out.stdout)
        if "--json" not in args:  # shown, escaped: the admin sees what was sent
            assert "\\x1b" in out.stdout, (args, out.stdout)
            if args[0] in ("users", "errors"):  # the tables that name users
                assert "\\x1b]52;c;" in out.stdout, (args, out.stdout)
        else:
            users = {u["user"] for u in json.loads(out.stdout)["users"]}
            # the JSON keeps the exact value, escaped by JSON
            assert users == {
                HOSTILE_USER,
                "alice",
            }

    # still one line per row, and aligned: each number ends where its column's heading ends
    lines = admin(svc.url, "users", "--hours", "1").stdout.rstrip("\n").split("\n")
    assert len(lines) == 3
    end = lines[0].index("REQUESTS") + len("REQUESTS")
    assert all(line[end - 1].isdigit() and line[end] == " " for line in lines[1:]), lines
    errors = admin(svc.url, "errors").stdout.rstrip("\n").split("\n")
    assert len(errors) == 2 and "upstream said \\x1b]0;owned\\x07\\r\\x1b[2Kall fine" in errors[1]


def test_replay_list_and_show_print_hostile_recorded_fields_escaped(tmp_path: Path) -> None:
    path = tmp_path / "handed-out.jsonl"
    # a file someone hands out with a notebook: any field may hold anything
    ReplayStore(path).append(
        Entry(
            fp="ab" * 16,
            recorded="2026-01-01T00:00:00Z",
            text=f"answer {CLIPBOARD}\x9b2J\u2067",
            model=HOSTILE_MODEL,
            kind="ask\x1b[8m",
            cell=f"cell {CLIPBOARD}In [1]",
            question=HOSTILE_USER,
            model_requested="m\x7f",
            parts={f"user message 1: {CLIPBOARD}": "0" * 10},
        )
    )

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "rsql_magic.replay_cli", "--file", str(path), *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            env=child_env(),
            encoding="utf-8",
            errors="surrogateescape",
        )

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert obeyed(listed.stdout) == [] and obeyed(listed.stderr) == [], listed.stdout
    assert listed.stdout.count("\n") == 1 and "\\x1b]52;c;" in listed.stdout
    shown = cli("show", "abab")
    assert shown.returncode == 0, shown.stderr
    assert obeyed(shown.stdout) == [] and "\u2067" not in shown.stdout, shown.stdout
    entry = json.loads(shown.stdout)  # still JSON, with the exact values
    assert entry["question"] == HOSTILE_USER and entry["text"].endswith("\x9b2J\u2067")
    assert os.stat(path).st_size > 0


def test_replay_prune_refuses_a_replay_file_that_is_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "bashrc"
    victim.write_text("export PATH=$HOME/bin:$PATH\n")
    link = tmp_path / ".rsql-replay.jsonl"
    link.symlink_to(victim)
    for args in (["prune", "--keep-last", "0"], ["list"]):
        out = subprocess.run(
            [sys.executable, "-m", "rsql_magic.replay_cli", "--file", str(link), *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            env=child_env(),
        )
        assert out.returncode != 0, (args, out.stdout)
        assert "symbolic link" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert victim.read_text() == "export PATH=$HOME/bin:$PATH\n"
