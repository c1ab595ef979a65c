"""The benchmarks' Redis: the machine's own (``RSQL_BENCH_REDIS``, database 12 by default), each
run under a key prefix of its own that it deletes afterwards, and the server's pid for its CPU
time (bench_proxy.py's shared-state and workers sections)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

REDIS_URL = os.environ.get("RSQL_BENCH_REDIS", "redis://127.0.0.1:6379/12")


def redis_prefix(tag: str) -> str:
    """A key prefix of this run's own on the machine's Redis (deleted by `redis_cleanup`)."""
    return f"rsqlbench-{os.getpid()}-{tag}:"


def redis_cleanup(prefix: str) -> int:
    """Delete every key this run wrote under its own prefix."""
    try:
        import redis
    except ImportError:
        return 0
    r = redis.Redis.from_url(REDIS_URL)
    n = 0
    try:
        for key in r.scan_iter(match=prefix + "*", count=500):
            n += r.delete(key)
    except redis.RedisError:
        pass
    finally:
        r.close()
    return n


def redis_up() -> bool:
    try:
        import redis

        r = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        ok = bool(r.ping())
        r.close()
        return ok
    except Exception:
        return False


def redis_server_pid(port: int = 6379) -> int | None:
    """The pid of the redis-server serving `port` on this machine (to read its CPU time), if any."""
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if (
                d.name.isdigit()
                and (d / "comm").read_text().strip() == "redis-server"
                and f":{port}" in (d / "cmdline").read_text()
            ):
                return int(d.name)
    return None
