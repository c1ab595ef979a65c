"""Issue 73, findings 4 and 7: the configuration check, attacked through `rsql-proxy` run as a
process (`--check-config`, and start-up as a hub starts it).

4. No key, token or password the configuration holds reaches what `rsql-proxy` prints (a
   terminal, a CI log, the service's log), whatever the mistake that made it speak: the file is
   refused (exit 2) with a line naming the setting and the field, and the secret is nowhere in
   stdout or stderr. Before: `api_key_env` holding the key printed the key, a `base_url` with a
   scheme typo printed its password, an MCP URL missing a slash was printed whole.
7. `c.RSQLProxyService.static_users` is checked as every other setting: `"groups": "students"`
   (its letters as groups), a misspelled `"group"` (no group at all) and `"admin": "no"` (an
   admin) each refuse the file, one line naming the entry by its user, never by its token.
   Before: "starts as written", and the service ran, with those users outside the students'
   windows and the `"admin": "no"` user on the admin API. What the check protects, a correctly
   written static student refused in an "off" window, is
   tests/e2e/test_admin_cli.py::test_window_start_list_end_and_notebooks.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import child_env, free_port

RSQL_PROXY = Path(sys.executable).with_name("rsql-proxy")
PREFIX = "rsql-proxy: bad configuration: "
GROQ = "https://api.groq.com/openai/v1"
# fresh for each run: a secret found in the output can only have come from this file
KEY = "gsk_" + secrets.token_hex(24)  # a Groq key: also a valid variable name
DASHED_KEY = "sk-proj-" + secrets.token_urlsafe(30)  # an OpenAI key: no variable's name
PASSWORD = "pw" + secrets.token_hex(8)
TOKEN = secrets.token_urlsafe(32)
ENV_KEY = "RSQL_ABUSE_CONFIG_KEY"  # holds KEY2: a key the environment holds is a secret too
KEY2 = "gsk_" + secrets.token_hex(24)


@dataclass
class Mistake:
    """A configuration with one mistake that holds a secret, and what the refusing line names."""

    settings: str  # the file's lines
    secret: str
    names: tuple[str, ...]  # what the one problem line must say, to be fixed from it
    env: dict[str, str] = field(default_factory=lambda: {ENV_KEY: KEY2})


def upstream(**fields: Any) -> str:
    entry = {"name": "groq", "base_url": GROQ, "api_key_env": ENV_KEY, "models": ["m-1"]}
    entry.update(fields)
    return f"c.RSQLProxy.upstreams = [{entry!r}]\nc.RSQLProxy.default_model = 'm-1'\n"


GOOD = upstream()
MISTAKES = {
    # the three of the finding
    "api_key_env holds a Groq key": Mistake(
        upstream(api_key_env=KEY), KEY, ("upstream 'groq'", "'api_key_env'", "not shown")
    ),
    "api_key_env holds an OpenAI key": Mistake(
        upstream(api_key_env=DASHED_KEY),
        DASHED_KEY,
        ("upstream 'groq'", "'api_key_env'", "not shown"),
    ),
    "base_url with a scheme typo": Mistake(
        upstream(base_url=f"https//svc:{PASSWORD}@llm.internal/v1"),
        PASSWORD,
        ("upstream 'groq'", "'base_url'", "https//svc:***@llm.internal/v1"),
    ),
    "MCP URL missing a slash": Mistake(
        GOOD
        + "c.RSQLProxy.mcp_connections = "
        + repr({"dw": {"url": f"postgresql:/reader:{PASSWORD}@db.internal/dw", "role": "reader"}})
        + "\n",
        PASSWORD,
        ("RSQLProxy.mcp_connections['dw']['url']", "postgresql:/reader:***@db.internal/dw"),
    ),
    # and more
    "a key written as the upstream's name": Mistake(
        upstream(name=KEY), KEY, ("RSQLProxy.upstreams[0]", "'name'", "not shown")
    ),
    "a key in a misspelled api_key": Mistake(
        upstream(api_kye=KEY), KEY, ("upstream 'groq'", "'api_kye'")
    ),
    "a key in the models field": Mistake(
        upstream(models=DASHED_KEY), DASHED_KEY, ("upstream 'groq'", "'models'")
    ),
    "a database_url with a password and a bad port": Mistake(
        GOOD
        + f"c.RSQLProxy.database_url = 'postgresql://rsql:{PASSWORD}@db.internal:54x2/usage'\n",
        PASSWORD,
        ("RSQLProxy.database_url", "rsql:***@db.internal:54x2", "port"),
    ),
    "a state_url of the wrong scheme with a password": Mistake(
        GOOD + f"c.RSQLProxy.state_url = 'http://:{PASSWORD}@cache.internal:6379/0'\n",
        PASSWORD,
        ("RSQLProxy.state_url", "redis://"),
    ),
    "a static user's entry with a mistake": Mistake(
        GOOD
        + f"c.RSQLProxyService.static_users = {{{TOKEN!r}: {{'name': 'alice', 'grops': []}}}}\n",
        TOKEN,
        ("static_users, entry 1 (user 'alice')", "'grops'", "'groups'"),
    ),
}


@dataclass
class Run:
    code: int | None  # None: it was serving (and was stopped)
    said: str  # stdout and stderr, as a terminal or a log collector gets them

    def problems(self) -> list[str]:
        return [line.removeprefix(PREFIX) for line in self.said.splitlines() if line.strip()]


def rsql_proxy(cfg: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    """`rsql-proxy --config cfg ARGS` until it exits; one that starts serving (a file it should
    have refused) is stopped with SIGTERM, and what it says while stopping is kept."""
    proc = subprocess.Popen(
        [str(RSQL_PROXY), "--config", str(cfg), "--port", str(free_port()), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(**(env or {})),
        cwd=cfg.parent,
    )
    guard = threading.Timer(90, proc.kill)  # a hung process fails the test, not the run
    guard.start()
    lines, served = [], False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # until the process exits and closes it
            lines.append(line)
            if "rsql-proxy listening on" in line and not served:
                served = True
                proc.send_signal(signal.SIGTERM)
        code = proc.wait()
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Run(None if served else code, "".join(lines))


def both_ways(cfg: Path, env: dict[str, str] | None = None) -> tuple[Run, Run]:
    """`--check-config`, and start-up without it."""
    return rsql_proxy(cfg, "--check-config", env=env), rsql_proxy(cfg, env=env)


@pytest.mark.parametrize("case", list(MISTAKES), ids=list(MISTAKES))
def test_no_secret_of_the_configuration_is_ever_printed(case: str, tmp_path: Path) -> None:
    mistake = MISTAKES[case]
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(mistake.settings)
    for run in both_ways(cfg, mistake.env):
        for secret in (mistake.secret, KEY, KEY2, DASHED_KEY, PASSWORD, TOKEN):
            assert secret not in run.said, f"{case}: a secret printed:\n{run.said}"
        assert run.code == 2, f"{case}: {run.code}\n{run.said}"
        # the admin can still fix it: one line names the setting and the field
        assert any(all(n in p for n in mistake.names) for p in run.problems()), run.said
        assert "Traceback" not in run.said, run.said


def test_a_token_on_the_command_line_is_not_repeated(tmp_path: Path) -> None:
    """A value of the wrong type on the command line is said by its type when the setting is a
    secret's (traitlets' own message repeats it)."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(GOOD)
    for extra in ((), ("--check-config",)):
        run = rsql_proxy(
            cfg, *extra, f"--RSQLProxyService.static_users={TOKEN}", env={ENV_KEY: KEY2}
        )
        assert run.code == 2 and TOKEN not in run.said, run.said
        assert run.problems() == ["RSQLProxyService.static_users: expected a dict, got a list"], (
            run.said
        )


def test_a_good_file_prints_no_secret_either(tmp_path: Path) -> None:
    """A file that starts: its summary, and the service's log from start to stop, name the
    upstream and the users' count, never a key, a password or a token."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(
        GOOD
        + f"c.RSQLProxy.user_id_secret = {PASSWORD!r}\n"
        + f"c.RSQLProxyService.static_users = {{{TOKEN!r}: {{'name': 'alice'}}}}\n"
    )
    check, start = both_ways(cfg, {ENV_KEY: KEY2})
    assert check.code == 0 and "starts as written; upstreams: groq" in check.said, check.said
    assert start.code is None and "upstreams: groq" in start.said, start.said
    for run in (check, start):
        for secret in (KEY2, PASSWORD, TOKEN):
            assert secret not in run.said, run.said


STUDENT = {"name": "ann", "groups": ["students"], "admin": False}  # written as documented
STATIC_MISTAKES = {
    # a string of groups: its letters were the groups ("s", "t", "u", ...), not "students"
    "groups as a string": (
        {"name": "bea", "groups": "students"},
        "entry 2 (user 'bea'): field 'groups' must be a list of group names, like ['students']",
    ),
    # a misspelled key was ignored: no group at all, so no window of the students' applied
    "a misspelled groups": (
        {"name": "cid", "group": ["students"]},
        "entry 2 (user 'cid'): unknown field 'group'; did you mean 'groups'?",
    ),
    # a non-empty string is truthy: "no" made an admin
    "admin as a string": (
        {"name": "dan", "groups": ["students"], "admin": "no"},
        "entry 2 (user 'dan'): field 'admin' must be True or False, got the str 'no'",
    ),
}


@pytest.mark.parametrize("case", list(STATIC_MISTAKES), ids=list(STATIC_MISTAKES))
def test_a_mistaken_static_user_is_refused_naming_its_entry(case: str, tmp_path: Path) -> None:
    entry, says = STATIC_MISTAKES[case]
    users = {secrets.token_urlsafe(32): STUDENT, TOKEN: entry}
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(GOOD + f"c.RSQLProxyService.static_users = {users!r}\n")
    for run in both_ways(cfg, {ENV_KEY: KEY2}):
        assert run.code == 2, run.said
        (said,) = run.problems()
        assert said.startswith(f"RSQLProxyService.static_users, {says}"), run.said
        assert TOKEN not in run.said and "starts as written" not in run.said, run.said


def test_every_static_user_mistake_is_said_at_once(tmp_path: Path) -> None:
    """All three entries and a setting of another section: four lines, each naming its entry
    by its user (a name that is itself the mistake: by its place), no token among them."""
    users: dict[str, Any] = {secrets.token_urlsafe(32): STUDENT}
    users |= {secrets.token_urlsafe(32): entry for entry, _ in STATIC_MISTAKES.values()}
    users[TOKEN] = {"name": "eve/x"}
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(
        GOOD
        + f"c.RSQLProxyService.static_users = {users!r}\n"
        + "c.RSQLProxy.max_wait_seconds = -1\n"
    )
    check, start = both_ways(cfg, {ENV_KEY: KEY2})
    assert check.code == start.code == 2, check.said + start.said
    assert check.problems() == start.problems()
    said = check.problems()
    assert len(said) == 5, said
    for n, user in ((2, "bea"), (3, "cid"), (4, "dan")):
        assert any(
            p.startswith(f"RSQLProxyService.static_users, entry {n} (user {user!r})") for p in said
        )
    assert any(p.startswith("RSQLProxyService.static_users, entry 5: field 'name'") for p in said)
    assert "RSQLProxy.max_wait_seconds must be >= 0, got -1.0" in said
    assert not any(t in check.said + start.said for t in users), said


def test_a_short_static_token_is_said_not_refused(tmp_path: Path) -> None:
    """A token of a few characters works (tests and benchmarks use them) but can be guessed on
    a reachable port: a warning at start-up and in the check's summary, naming the user."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(GOOD + "c.RSQLProxyService.static_users = {'tok-ann': {'name': 'ann'}}\n")
    check = rsql_proxy(cfg, "--check-config", env={ENV_KEY: KEY2})
    assert check.code == 0, check.said
    assert "users: 1 static (1 with a short token)" in check.said, check.said
    assert "the token of 'ann' is shorter than 16 characters" in check.said, check.said
    assert "tok-ann" not in check.said
