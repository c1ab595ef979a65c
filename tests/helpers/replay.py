"""Replay store entries for tests/unit/test_replay.py and tests/e2e/test_replay_processes.py."""

from __future__ import annotations

from rsql_magic.replay import Entry


def entry(i: int, recorded: str = "2026-01-01T00:00:00Z", fp: str | None = None) -> Entry:
    return Entry(
        fp=fp or f"{i:032x}",
        recorded=recorded,
        text=f"answer {i} " + "x" * 300,
        model="m",
        usage={"prompt_tokens": i},
    )
