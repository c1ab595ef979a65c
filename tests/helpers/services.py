"""Finding the PostgreSQL and Redis servers the tests use (see the fixtures in tests/conftest.py).

Nothing here changes the machine's own servers: the fixtures use one that lets them in from
loopback as it is, or start a throw-away one of their own.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import sqlalchemy as sa


def reachable(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def as_service_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def pg_bin(name: str) -> str | None:
    """A PostgreSQL tool on PATH, else the newest version's under /usr/lib/postgresql."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: p.parts[-3]
    )
    return str(candidates[-1]) if candidates else None


def trusted_postgres(port: int) -> bool:
    """The PostgreSQL on 127.0.0.1:port lets `postgres` in without a password."""
    import psycopg

    try:
        with psycopg.connect(
            f"host=127.0.0.1 port={port} user=postgres dbname=postgres", connect_timeout=3
        ):
            return True
    except psycopg.Error:
        return False


def redis_answers(port: int) -> bool:
    """A Redis on 127.0.0.1:port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# engines made on a pg_url database, disposed of before the pg_url fixture drops it
PG_ENGINES: list[sa.Engine] = []


def pg_engine(url: str) -> sa.Engine:
    """A SQLAlchemy engine on a pg_url database, disposed of with it."""
    eng = sa.create_engine(url)
    PG_ENGINES.append(eng)
    return eng


def leases_held(redis_url: str, prefix: str) -> dict[str, list[str]]:
    """Every user lease and upstream slot in flight still held in Redis under `prefix`, by key.

    Members are scored by when they expire and leave lazily, so expired ones are not counted;
    an upstream slot whose request is stamped (member ending in ':s') is no longer in flight."""
    import redis

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    secs, micros = r.time()
    now = secs + micros / 1e6
    held = {}
    for key in r.scan_iter(match=prefix + "*", count=1000):
        if key.endswith(":conc"):
            members = r.zrangebyscore(key, now, "+inf")
        elif key.endswith(":fly"):
            members = [m for m in r.zrangebyscore(key, now, "+inf") if not m.endswith(":s")]
        else:
            continue
        if members:
            held[key] = members
    r.close()
    return held
