"""A SQLite usage database that can be cut off and restored, and the rows a usage spool holds:
for tests/unit/test_usage_spool.py and tests/e2e/test_usage_spool_outages.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path


class Database:
    """A SQLite usage database whose folder can be made unusable (an outage) and usable again."""

    def __init__(self, tmp: Path) -> None:
        self.folder = tmp / "db"
        self.path = self.folder / "usage.sqlite"
        self.url = f"sqlite:///{self.path}"

    def cut(self) -> None:
        self.folder.write_text("a file where the database's folder should be")

    def restore(self) -> None:
        self.folder.unlink()

    def ids(self) -> list[str]:
        if not self.path.exists():
            return []
        with sqlite3.connect(self.path) as conn:
            return [r[0] for r in conn.execute("SELECT request_id FROM usage")]


def spooled_lines(folder: Path) -> list[list]:
    return [
        json.loads(line)
        for f in sorted(folder.glob("usage-*.jsonl"))
        for line in f.read_text().splitlines()
    ]
