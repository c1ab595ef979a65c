"""`rsql-proxy --workers N` and the files it makes, attacked as another local OS user would
(issue 24): counters planted in a guessable metrics folder, and the usage log and pseudonym key
that several workers create at once under umask 022."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import child_env, free_port, servers, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService

pytestmark = pytest.mark.slow

USERS = {"tok-u1": {"name": "u1"}, "tok-admin": {"name": "admin", "admin": True}}
ASK = {"model": "fake-small", "messages": [{"role": "user", "content": "hello"}]}
NOBODY = 65534


def start_workers(
    cwd: Path, tmpdir: Path, proxy_config: dict[str, Any], workers: int = 2
) -> ProxyService:
    """`rsql-proxy --workers N` in `cwd`, its temporary files under `tmpdir`, under umask 022."""
    return servers.start_workers(
        cwd, proxy_config, workers, static_users=USERS, umask=0o022, env={"TMPDIR": str(tmpdir)}
    )


def plant_stale_counters(folder: Path) -> None:
    """Counter files as an earlier run (or another user) would have left them in `folder`."""
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    code = (
        "from prometheus_client import Counter; "
        "Counter('rsql_planted', 'counted by someone else').inc(424242)"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env=child_env(PROMETHEUS_MULTIPROC_DIR=str(folder)),
    )
    assert list(folder.glob("*.db")), "prometheus_client wrote no counter file"
    if os.geteuid() == 0:
        for path in [folder, *folder.iterdir()]:
            os.chown(path, NOBODY, -1)


def test_workers_count_in_a_fresh_private_folder_and_make_their_files_private(
    tmp_path: Path, fresh_provider: FakeProvider, redis_url: str, redis_prefix: str
) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    tmpdir.chmod(0o1777)  # a shared /tmp: anyone may add folders to it
    planted = {tmpdir / name for name in ("rsql-metrics-", "rsql-metrics-0", "rsql-metrics-stale")}
    for folder in planted:
        plant_stale_counters(folder)
    cwd = tmp_path / "svc"
    cwd.mkdir()
    svc = start_workers(
        cwd,
        tmpdir,
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "state_url": redis_url,
            "state_prefix": redis_prefix,
            "log_prompts": True,
        },
    )
    try:
        for _ in range(4):
            status, _, raw = svc.request("POST", "v1/chat/completions", ASK, token="tok-u1")
            assert status == 200, raw
        ours = {p for p in tmpdir.iterdir() if p.name.startswith("rsql-metrics-")} - planted
        assert len(ours) == 1, sorted(p.name for p in tmpdir.iterdir())
        folder = ours.pop()
        info = folder.stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, os.geteuid())
        status, _, raw = svc.request("GET", "metrics", token="tok-admin")
        assert status == 200, raw
        text = raw.decode()
        assert "rsql_requests_total" in text and "rsql_planted" not in text
        # nor its count under any name: a sample of 424242 (a digit run inside another value, a
        # latency sum of 0.0142424..., is no sample of it)
        values = [ln.rsplit(" ", 1)[-1] for ln in text.splitlines() if ln and ln[0] != "#"]
        assert 424242.0 not in map(float, values), text

        # the usage log the workers opened at once, its WAL and the pseudonym key: owner-only
        log = cwd / "rsql_usage.sqlite"
        names = [log, Path(f"{log}-wal"), Path(f"{log}-shm"), cwd / "user-id.secret"]
        deadline = time.monotonic() + 20
        while not all(p.exists() for p in names) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in names} == {
            p.name: "0o600" for p in names
        }
    finally:
        assert svc.stop() == 0, svc.log()
    assert not folder.exists()  # removed with the run: never found again by a later one
    assert all(p.exists() for p in planted)  # and nothing of someone else's was touched


def test_another_os_user_cannot_take_a_share_of_the_workers_port() -> None:
    """The workers share their port with SO_REUSEPORT; Linux lets a socket join only when it is
    of the same effective user, so a local user cannot bind beside them and take a share of the
    connections (and the tokens in them). The same bind by the proxy's own user is the control."""
    from jupyter_server_ext.workers import bind_reuseport

    if os.geteuid() != 0:
        pytest.skip("needs root, to try the bind as another OS user")
    port = free_port()
    held = bind_reuseport(port, "127.0.0.1")

    def try_bind(uid: int | None) -> str:
        """Bind (127.0.0.1, port) with SO_REUSEPORT in a child process, as `uid`."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: only system calls, then _exit
            said = b"joined"
            try:
                if uid is not None:
                    os.setgid(uid)
                    os.setuid(uid)
                import socket

                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                s.bind(("127.0.0.1", port))
                s.listen()
            except OSError as exc:
                said = f"refused: {exc.strerror}".encode()
            os.write(write, said)
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read, "rb") as f:
            return f.read().decode()

    try:
        assert try_bind(NOBODY).startswith("refused"), "another user joined the workers' port"
        assert try_bind(None) == "joined"  # what the proxy's own workers do
    finally:
        for sock in held:
            sock.close()
