"""`rsql-proxy admin ...` against real proxies: the hub service and a Jupyter server."""

from __future__ import annotations

import io
import json
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_server_ext import admin_cli
from tests.helpers import REPO, child_env, free_port, upstreams_for
from tests.helpers.fake_provider import FakeProvider

USERS = {
    "tok-admin": {"name": "root", "admin": True},
    "tok-alice": {"name": "alice", "groups": ["students"]},
}
ASK = {"model": "fake-small", "messages": [{"role": "user", "content": "what is a join"}]}


def run(
    url: str, *args: str, token: str | None = "tok-admin", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """The CLI in this process (the same code the entry point runs): (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    environ = {
        "RSQL_PROXY_URL": url,
        **({"RSQL_PROXY_TOKEN": token} if token else {}),
        **(env or {}),
    }
    code = admin_cli.main(list(args), out=out, err=err, env=environ)
    return code, out.getvalue(), err.getvalue()


def columns(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


@pytest.fixture
def svc(service_factory: Callable, fresh_provider: FakeProvider) -> Any:
    s = service_factory(
        {
            "upstreams": upstreams_for(fresh_provider),
            "default_model": "fake-small",
            "user_limits": ["2/minute"],
            "health_check_seconds": 0.0,
        },
        static_users=USERS,
    )
    for _ in range(2):
        assert s.request("POST", "v1/chat/completions", ASK, token="tok-alice")[0] == 200
    # a refused one: alice's window is full
    assert s.request("POST", "v1/chat/completions", ASK, token="tok-alice")[0] == 429
    _logged(s, 3)
    return s


def _logged(s: Any, n: int) -> None:
    """Wait until the usage log holds `n` rows: it is written in batches, off the request path."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status, _, raw = s.request("GET", "admin/stats?hours=1", token="tok-admin")
        if status == 200 and json.loads(raw)["requests"] >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"the usage log did not reach {n} rows")


def _no_keys(text: str, fp: FakeProvider) -> None:
    for key in fp.keys:
        assert key not in text


def test_every_command(svc: Any, fresh_provider: FakeProvider) -> None:
    url = svc.url
    code, out, err = run(url, "status")
    assert code == 0 and err == ""
    assert columns(out)[0] == ["status", "ok"] and "fake-small" in out and "3 healthy" in out

    code, out, _ = run(url, "stats", "--hours", "1")
    assert code == 0
    assert "requests" in out and "cost USD" in out
    rows = columns(out.split("\n\n", 1)[1])
    cache = ["PROMPT", "CACHE", "SAVED", "USD"]  # the share of prompts read from a cache
    assert rows[0] == ["MODEL", "REQUESTS", "ERRORS", "TOKENS", "COST", "USD", *cache]
    assert rows[1][:3] == ["fake-small", "3", "1"]
    # what an admin looking for the prompt caches' savings types: the same table
    assert run(url, "usage", "--hours", "1")[1].split("\n\n", 1)[1] == out.split("\n\n", 1)[1]

    code, out, _ = run(url, "users")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["USER", "REQUESTS", "ERRORS", "TOKENS", "COST", "USD", *cache]
    assert lines[1].split()[:3] == ["alice", "3", "1"]
    # aligned: a number ends where its column's heading ends (right-aligned), text starts with it
    end = lines[0].index("REQUESTS") + len("REQUESTS")
    assert lines[1][end - 1] == "3" and lines[1][end] == " "
    assert lines[1].index("alice") == lines[0].index("USER") == 0

    code, out, _ = run(url, "errors")
    assert code == 0 and "429" in out and "alice" in out

    code, out, _ = run(url, "activity", "alice", "--limit", "5")
    assert code == 0
    assert len(columns(out)) == 1 + 3 and "429" in out and "200" in out

    code, out, _ = run(url, "keys")
    assert code == 0
    table = columns(out)
    assert table[0][:4] == ["ALIAS", "ACCOUNT", "PROVIDER", "STATE"]
    assert sorted(r[0] for r in table[1:]) == ["a1", "a2", "b1"]
    assert all(r[3] == "healthy" for r in table[1:])
    _no_keys(out, fresh_provider)

    code, out, _ = run(url, "--json", "keys")
    assert code == 0 and {u["alias"] for u in json.loads(out)["upstreams"]} == {"a1", "a2", "b1"}
    _no_keys(out, fresh_provider)
    code, out2, _ = run(url, "keys", "--json")  # --json after the command works too
    assert code == 0 and json.loads(out2).keys() == json.loads(out).keys()

    code, out, _ = run(url, "health-check")
    assert code == 0 and sorted(r[0] for r in columns(out)[1:]) == ["a1", "a2", "b1"]

    code, out, _ = run(url, "alerts")
    assert code == 0 and out.strip() == "(none)"

    # reset-limits: alice may ask again at once
    assert svc.request("POST", "v1/chat/completions", ASK, token="tok-alice")[0] == 429
    code, out, _ = run(url, "reset-limits", "alice")
    assert code == 0 and "'alice'" in out
    assert svc.request("POST", "v1/chat/completions", ASK, token="tok-alice")[0] == 200
    code, out, _ = run(url, "--json", "reset-limits", "--all")
    assert code == 0 and json.loads(out)["reset"] == "all"
    assert run(url, "reset-limits")[0] == admin_cli.USAGE
    assert run(url, "reset-limits", "alice", "--all")[0] == admin_cli.USAGE


def console_commands() -> list[list[str]]:
    """The `rsql-proxy admin ...` lines of console.md's shell example, as an admin types them,
    and the commands of its transcript (`$ rsql-proxy admin keys`)."""
    page = (REPO / "docs" / "admins" / "console.md").read_text()
    block = next(b for b in re.findall(r"^```bash\n(.*?)^```", page, re.M | re.S) if "admin" in b)
    lines = block.replace("\\\n", " ").splitlines()
    for shown in re.findall(r"^```\n(\$ .*?)^```", page, re.M | re.S):
        lines += [line.removeprefix("$ ") for line in shown.splitlines() if line.startswith("$ ")]
    return [shlex.split(line, comments=True) for line in lines if line.startswith("rsql-proxy ")]


def test_the_console_pages_commands_run_as_written(svc: Any) -> None:
    """Every command of docs/admins/console.md, against a real service, exits 0; `status`
    answers a student's token too, as the page says, and every other command does not."""
    commands = console_commands()
    assert len(commands) >= 12
    for argv in commands:
        assert argv[:2] == ["rsql-proxy", "admin"]
        code, out, err = run(svc.url, *argv[2:])
        assert code == 0, (argv, err)
    code, out, _ = run(svc.url, "status", token="tok-alice")
    assert code == 0 and "fake-small" in out
    assert run(svc.url, "keys", token="tok-alice")[0] == admin_cli.FORBIDDEN


def test_check_config_says_whether_a_configuration_starts(tmp_path: Path) -> None:
    """`rsql-proxy --check-config`: 0 and a summary for a good file, 2 and the cause for a bad
    one; it listens on nothing: the port it is given is held by another socket all along, which
    a check that bound it would meet."""
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(
        'c.RSQLProxy.upstreams = [{"name": "g", "base_url": "http://127.0.0.1:9/v1", '
        '"api_key_env": "DOCS_KEY", "models": ["m-1"]}]\n'
    )
    bad.write_text('c.RSQLProxy.user_limits = ["ten a minute"]\n')
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    cmd = [sys.executable, "-m", "jupyter_server_ext", "--check-config", "--port", str(port)]
    env = child_env(DOCS_KEY="sk-docs-check")
    with held:
        p = subprocess.run(
            [*cmd, "--config", str(good)], capture_output=True, text=True, env=env, timeout=60
        )
        assert p.returncode == 0, p.stderr
        assert "starts as written" in p.stdout and "models: m-1" in p.stdout
        assert "sk-docs-check" not in p.stdout + p.stderr
        p = subprocess.run(
            [*cmd, "--config", str(bad)], capture_output=True, text=True, env=env, timeout=60
        )
        assert p.returncode == 2 and "ten a minute" in p.stderr
        assert "in use" not in p.stderr  # the cause named is the file's, not the port's
    p = subprocess.run(
        [sys.executable, "-m", "jupyter_server_ext", "--help"], capture_output=True, text=True
    )
    assert "rsql-proxy admin" in p.stdout and "--check-config" in p.stdout


def test_errors_and_exit_codes(svc: Any, tmp_path: Path) -> None:
    url = svc.url
    code, out, err = run(f"http://127.0.0.1:{free_port()}/", "status")
    assert code == admin_cli.UNREACHABLE and out == "" and "cannot reach the proxy" in err

    code, _, err = run(url, "keys", token="tok-nobody")
    assert (
        code == admin_cli.UNAUTHORIZED
        and "401" in err
        and "not accepted" in err
        and "tok-nobody" not in err
    )
    code, _, err = run(url, "keys", token=None)
    assert code == admin_cli.UNAUTHORIZED and "RSQL_PROXY_TOKEN" in err

    code, _, err = run(url, "stats", token="tok-alice")
    assert code == admin_cli.FORBIDDEN and "403" in err and "not an rsql admin" in err

    # --token-file beats the environment; JUPYTERHUB_API_TOKEN is the fallback
    tf = tmp_path / "token"
    tf.write_text("tok-admin\n")
    # keys is the admin's alone: the file's token (root) is the one sent, not alice's
    assert run(url, "keys", token="tok-alice")[0] == admin_cli.FORBIDDEN
    assert run(url, "--token-file", str(tf), "keys", token="tok-alice")[0] == 0
    assert run(url, "keys", token=None, env={"JUPYTERHUB_API_TOKEN": "tok-admin"})[0] == 0
    code, _, err = run(url, "--token-file", str(tmp_path / "missing"), "status")
    assert code == admin_cli.USAGE and "--token-file" in err
    code, _, err = run("ftp://x/", "status")
    assert code == admin_cli.USAGE


def test_entry_points(svc: Any, fresh_provider: FakeProvider) -> None:
    """`rsql-proxy admin` and `python -m jupyter_server_ext admin`, in their own processes."""
    env = child_env(RSQL_PROXY_URL=svc.url, RSQL_PROXY_TOKEN="tok-admin")
    script = Path(sys.executable).parent / "rsql-proxy"
    commands = [[sys.executable, "-m", "jupyter_server_ext", "admin", "keys"]]
    if script.exists():
        commands.append([str(script), "admin", "keys"])
    for cmd in commands:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
        assert p.returncode == 0, p.stderr
        assert "ALIAS" in p.stdout and "b1" in p.stdout
        _no_keys(p.stdout + p.stderr, fresh_provider)
    p = subprocess.run(
        [sys.executable, "-m", "jupyter_server_ext", "admin", "stats"],
        capture_output=True,
        text=True,
        env={**env, "RSQL_PROXY_TOKEN": "tok-alice"},
        cwd=REPO,
        timeout=60,
    )
    assert p.returncode == admin_cli.FORBIDDEN and "403" in p.stderr


def test_against_a_jupyter_server(
    jupyter_server_factory: Callable, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    server = jupyter_server_factory(
        {"upstreams": upstreams_for(fresh_provider), "default_model": "fake-small"}
    )
    assert server.request("POST", "v1/chat/completions", ASK)[0] == 200
    tf = tmp_path / "tok"
    tf.write_text(server.token)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the usage log is written in batches
        code, out, err = run(server.proxy_url, "--token-file", str(tf), "users", token=None)
        assert code == 0, err
        if out.strip() != "(none)":
            break
        time.sleep(0.1)
    assert columns(out)[1][1] == "1"
    # the global options after the command work too
    code, out, err = run(
        "http://127.0.0.1:1/",
        "keys",
        "--url",
        server.proxy_url,
        "--token-file",
        str(tf),
        token=None,
    )
    assert code == 0 and "a1" in out, err
    _no_keys(out, fresh_provider)
    code, _, err = run(server.proxy_url, "keys", token="wrong-token")
    assert code in (admin_cli.UNAUTHORIZED, admin_cli.FORBIDDEN), err


def test_window_start_list_end_and_notebooks(svc: Any) -> None:
    url = svc.url
    code, out, err = run(
        url,
        "window",
        "start",
        "--name",
        "quiz",
        "--group",
        "students",
        "--minutes",
        "30",
        "--mode",
        "off",
        "--message",
        "Quiz: no assistant",
    )
    assert code == 0, err
    assert out.startswith("started window 'quiz' (off) until ") and "UTC" in out
    status, _, raw = svc.request("POST", "v1/chat/completions", ASK, token="tok-alice")
    assert status == 403 and json.loads(raw)["error"]["message"].startswith("Quiz: no assistant")
    code, out, _ = run(url, "window", "list")
    rows = columns(out)
    assert rows[0] == ["times", "in", "UTC;", "local:", "UTC"]
    assert rows[1][:4] == ["NAME", "MODE", "GROUPS", "/"] and rows[2][:4] == [
        "quiz",
        "off",
        "students",
        "yes",
    ]
    code, out, _ = run(url, "window", "list", "--json")
    assert code == 0 and json.loads(out)["windows"][0]["message"] == "Quiz: no assistant"
    # mistakes are usage errors, said plainly
    code, _, err = run(url, "window", "start", "--name", "q2", "--minutes", "5", "--mode", "off")
    assert code == admin_cli.USAGE and "--group" in err
    code, _, err = run(
        url, "window", "start", "--name", "quiz", "--group", "*", "--minutes", "5", "--mode", "off"
    )
    assert code == admin_cli.FAILED and "exists already" in err
    code, out, _ = run(url, "window", "end", "quiz")
    assert code == 0 and out.strip() == "ended window 'quiz'"
    code, _, err = run(url, "window", "end", "quiz")
    assert code == admin_cli.FAILED and "no window named 'quiz'" in err
    assert run(url, "window", "list", token="tok-alice")[0] == admin_cli.FORBIDDEN
    # a tutor window: the course's instruction, agent tools off unless said
    # (for the admin's own user: alice's window of requests is full)
    tutor = ["window", "start", "--name", "tutoring", "--user", "root", "--minutes", "30"]
    instruction = "Hints only: ask what the student tried first."
    code, out, err = run(url, *tutor, "--mode", "tutor", "--instruction", instruction)
    assert code == 0 and out.startswith("started window 'tutoring' (tutor)"), err
    code, out, _ = run(url, "window", "list", "--json")
    listed = json.loads(out)["windows"][0]
    assert listed["mode"] == "tutor" and listed["instruction"] == instruction
    assert listed["agent"] is False and listed["completions"] is True
    status, headers, _ = svc.request("POST", "v1/chat/completions", ASK, token="tok-admin")
    assert status == 200 and {k.lower(): v for k, v in headers.items()}["x-rsql-mode"] == "tutor"
    assert run(url, "window", "end", "tutoring")[0] == 0
    code, _, err = run(url, *tutor, "--mode", "off", "--instruction", instruction)
    assert code == admin_cli.USAGE and "--instruction is for --mode tutor" in err
    # requests from notebooks, per notebook and user
    for cell in ("c1", "c2"):
        svc.request(
            "POST",
            "v1/chat/completions",
            ASK,
            token="tok-admin",
            headers={"X-RSQL-Notebook": "lab%201.ipynb", "X-RSQL-Cell": cell},
        )
    deadline = time.monotonic() + 15
    while True:
        code, out, _ = run(url, "notebooks")
        if len(columns(out)) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    rows = columns(out)
    assert rows[0] == [
        "NOTEBOOK",
        "USER",
        "REQUESTS",
        "TOKENS",
        "COST",
        "USD",
        "PROMPT",
        "CACHE",
        "SAVED",
        "USD",
        "CELLS",
        "LAST",
        "REQUEST",
    ]
    assert rows[1][0].startswith("nb-") and rows[1][1:3] == ["root", "2"] and rows[1][7] == "2"
