"""`rsql-proxy` given a port it cannot have (issue 77): in use, not a number, out of range, or
the hub's URL naming a bad one. With and without `--workers`: one line on stderr naming the
address and what to do, exit 2, no traceback, and nothing serves."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import child_env, free_port

pytestmark = pytest.mark.slow

# nothing is ever asked of this upstream: a refused start gets nowhere near it
UPSTREAM = (
    'c.RSQLProxy.upstreams = [{"name": "g", "base_url": "http://127.0.0.1:9/v1", '
    '"api_key": "sk-port-test-key", "models": ["m-1"]}]\n'
    'c.RSQLProxy.default_model = "m-1"\n'
    'c.RSQLProxyService.static_users = {"a-token-long-enough-for-tests": {"name": "ann"}}\n'
)


@pytest.fixture
def config(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A configuration that starts as written: one process, or two workers on Redis."""
    cfg = tmp_path / "rsql_config.py"
    text = UPSTREAM + f'c.RSQLProxy.database_url = "sqlite:///{tmp_path}/usage.sqlite"\n'
    if request.param == 2:
        redis_url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        text += f"c.RSQLProxy.state_url = {redis_url!r}\nc.RSQLProxy.state_prefix = {prefix!r}\n"
        text += "c.RSQLProxyService.workers = 2\n"
        # replicas' own warning (a pseudonym key each) is another test's: the key is shared
        text += 'c.RSQLProxy.user_id_secret = "one-key-for-every-worker"\n'
    cfg.write_text(text)
    return cfg


@pytest.fixture
def held_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A loopback port something else listens on: a plain socket, or one that shares its port
    (SO_REUSEPORT, as an rsql-proxy worker still running does)."""
    held = socket.socket()
    if request.param == "shared":
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    held.bind(("127.0.0.1", 0))
    held.listen()
    try:
        yield held.getsockname()[1]
    finally:
        held.close()


def run(cfg: Path, *args: str, **env: str) -> tuple[int, list[str]]:
    """`rsql-proxy --config cfg ARGS`: its exit code and stderr's lines (it must end by itself)."""
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_server_ext", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(**env),
        cwd=cfg.parent,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, lines


IN_USE = (
    "rsql-proxy: cannot listen on 127.0.0.1:{port}: the port is in use (an rsql-proxy still "
    "running, or another program: `ss -ltnp 'sport = :{port}'` names it); "
)


@pytest.mark.parametrize(
    ("config", "held_port"),
    [(1, "plain"), (1, "shared"), (2, "plain"), (2, "shared")],
    indirect=True,
    ids=["one-process", "one-process-beside-a-worker", "workers", "workers-beside-a-worker"],
)
def test_a_port_in_use_is_one_line_saying_what_to_do(config: Path, held_port: int) -> None:
    """Before: one process printed a 25-line traceback and exited 1; workers a line, exit 1."""
    code, said = run(config, "--port", str(held_port))
    assert (code, said) == (
        2,
        [
            IN_USE.format(port=held_port)
            + "start with --port N (another port) or stop what listens there"
        ],
    )


@pytest.mark.parametrize("config", [1, 2], indirect=True, ids=["one-process", "workers"])
def test_a_port_in_use_that_the_hub_chose_names_the_hubs_url(config: Path) -> None:
    """Started by the hub, the port is the service's url: that is what to change."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        code, said = run(config, JUPYTERHUB_SERVICE_URL=url)
    assert (code, said) == (
        2,
        [
            IN_USE.format(port=port)
            + f"the port is the one of $JUPYTERHUB_SERVICE_URL ({url}), the url the hub gives "
            "its service: change it in jupyterhub_config.py (configure_jupyterhub(url=...)) or "
            "stop what listens there"
        ],
    )


@pytest.mark.parametrize("config", [1, 2], indirect=True, ids=["one-process", "workers"])
@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            ("--port", "65536"),
            {},
            "RSQLProxyService.port (--port) must be from 0 to 65535, got 65536",
        ),
        (
            ("--port", "ten"),
            {},
            "RSQLProxyService.port (--port): expected an int, got the str 'ten'",
        ),
        (
            (),
            {"JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:99999"},
            "$JUPYTERHUB_SERVICE_URL 'http://127.0.0.1:99999': its port is not a number from 0 "
            "to 65535; fix the service's url in jupyterhub_config.py",
        ),
    ],
    ids=["out-of-range", "not-a-number", "hub-url"],
)
def test_a_bad_port_is_one_line_naming_it(
    config: Path, args: tuple[str, ...], env: dict[str, str], line: str
) -> None:
    """Before, the hub's URL with a bad port was a traceback (exit 1)."""
    assert run(config, *args, **env) == (2, [f"rsql-proxy: bad configuration: {line}"])


@pytest.mark.parametrize("config", [1], indirect=True)
def test_the_same_configuration_serves_on_a_free_port(config: Path) -> None:
    """The control: nothing above is refused for its configuration."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server_ext", "--config", str(config), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
        cwd=config.parent,
    )
    try:
        assert proc.stdout is not None
        for text in proc.stdout:
            if "rsql-proxy listening on" in text:
                break
        else:
            raise AssertionError(f"rsql-proxy ended ({proc.wait()}) without listening")
        assert f"http://127.0.0.1:{port}/" in text, text
    finally:
        proc.terminate()
        proc.wait(timeout=60)
