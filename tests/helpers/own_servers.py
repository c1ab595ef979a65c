"""Redis and PostgreSQL servers of a test's (or the soak's) own, which it may stop, kill and
start again without touching the machine's own servers: loopback only, a free port, a
temporary folder removed afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import free_port, stop_process
from .services import as_service_user, pg_bin, redis_answers


class OwnRedis:
    """A redis-server on 127.0.0.1 and a port of its own; `extra` are its command-line options."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.folder, self.extra = folder, extra
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                *self.extra,
            ],
            stdout=(self.folder / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not start:\n{(self.folder / 'redis.log').read_text()}"
                )
            time.sleep(0.05)

    def answers(self) -> bool:
        if "--requirepass" in self.extra:
            import redis

            try:
                return bool(
                    redis.Redis(
                        port=self.port,
                        password=self.extra[self.extra.index("--requirepass") + 1],
                        socket_timeout=1,
                    ).ping()
                )
            except redis.RedisError:
                return False
        return redis_answers(self.port)

    def stop(self, sig: int = 15) -> None:
        """SIGTERM: Redis saves what its options say it keeps, then exits; SIGKILL: nothing."""
        if self.proc is not None:
            stop_process(self.proc, sig)


class OwnPostgres:
    """A throw-away PostgreSQL cluster (initdb, pg_ctl; as the `postgres` user when root)."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            raise FileNotFoundError("PostgreSQL is not installed (initdb, pg_ctl)")
        # not under a private temporary folder: the server runs as `postgres` when we are root
        self.folder = Path(tempfile.mkdtemp(prefix="rsql-own-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        subprocess.run(
            as_service_user(
                [self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"]
            ),
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            as_service_user(
                [
                    self.pg_ctl,
                    "-D",
                    str(self.data),
                    "-o",
                    opts,
                    "-l",
                    str(self.folder / "log"),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            as_service_user([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"]),
            capture_output=True,
        )

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
