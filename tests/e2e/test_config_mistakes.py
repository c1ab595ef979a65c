"""A configuration mistake never starts `rsql-proxy`: a file that does not load, an unknown or
misspelled setting or section, a value of the wrong type or out of range, a feature whose
packages are missing. `--check-config` and start-up (one process, or `--workers N`) both exit 2
with one line per problem, naming the setting, and nothing listens on the port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import child_env, free_port

# a configuration that starts as written: nothing is connected to by a check, and a refused
# start never gets as far as asking this upstream anything
GOOD = (
    'c.RSQLProxy.upstreams = [{"name": "g", "base_url": "http://127.0.0.1:9/v1", '
    '"api_key": "sk-config-mistakes", "models": ["m-1"]}]\n'
    'c.RSQLProxy.default_model = "m-1"\n'
)
PREFIX = "rsql-proxy: bad configuration: "


def problems(stderr: str) -> list[str]:
    """The lines that name a problem; anything else on stderr is listed too, to be seen."""
    return [line.removeprefix(PREFIX) for line in stderr.splitlines() if line.strip()]


def check(cfg: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """`rsql-proxy --check-config --config cfg`: its exit code and stderr's lines."""
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_server_ext", "--check-config", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(**(env or {})),
        cwd=cfg.parent,
    )
    return done.returncode, problems(done.stderr)


def start(cfg: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """`rsql-proxy --config cfg` as a hub starts it: its exit code and stderr's lines. Fails
    the test if anything ever answers on its port while it runs."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server_ext", "--config", str(cfg), "--port", str(port)]
        + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(**(env or {})),
        cwd=cfg.parent,
    )
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    raise AssertionError(f"rsql-proxy listens on {port} with a bad configuration")
            except OSError:
                time.sleep(0.05)
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "listening" not in out + err, out + err
    return proc.returncode, problems(err)


def refused_both_ways(cfg: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """Check and start-up refuse the file alike (exit 2, the same lines): those lines."""
    code, said = check(cfg, *args, env=env)
    assert code == 2, said
    assert start(cfg, *args, env=env) == (2, said)
    assert not any("Traceback" in line for line in said), said
    return said


def test_a_file_with_a_syntax_error_starts_nothing(tmp_path: Path) -> None:
    """Before: traitlets logged the error and the service answered with the local model."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(
        GOOD + 'c.RSQLProxy.user_limits = ["10/minute"\nc.RSQLProxy.log_prompts = False\n'
    )
    (said,) = refused_both_ways(cfg)
    assert said.startswith(f"{cfg}:3: SyntaxError: ") and "does not load" in said, said


def test_an_exception_while_the_file_runs_names_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(GOOD + 'import os\nc.RSQLProxy.state_url = os.environ["RSQL_NO_SUCH_VAR"]\n')
    (said,) = refused_both_ways(cfg)
    assert said.startswith(f"{cfg}:4: KeyError: 'RSQL_NO_SUCH_VAR'"), said


def test_a_misspelled_setting_or_section_gets_the_nearest_name(tmp_path: Path) -> None:
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(
        GOOD
        + 'c.RSQLProxy.default_modle = "m-1"\n'
        + 'c.RSQLProxi.user_limits = ["10/minute"]\n'
        + 'c.RSQLProxyService.static_user = {"t": {"name": "alice"}}\n'
    )
    assert refused_both_ways(cfg) == [
        f"{cfg}:3: c.RSQLProxy.default_modle: no such setting; did you mean default_model?",
        f"{cfg}:4: c.RSQLProxi: no such section; did you mean RSQLProxy?",
        f"{cfg}:5: c.RSQLProxyService.static_user: no such setting; did you mean static_users?",
    ]


def test_a_value_of_the_wrong_type_is_one_line_naming_it(tmp_path: Path) -> None:
    """Before: a 40-line traceback and exit 1."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(GOOD + 'c.RSQLProxy.max_wait_seconds = "ten"\n')
    assert refused_both_ways(cfg) == [
        f"{cfg}:3: c.RSQLProxy.max_wait_seconds: expected a float, got the str 'ten'"
    ]


def test_a_command_line_value_of_the_wrong_type_is_one_line_naming_it(tmp_path: Path) -> None:
    """Before: traitlets' own CRITICAL log line and exit 1."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(GOOD)
    assert refused_both_ways(cfg, "--workers", "two") == [
        "RSQLProxyService.workers (--workers): expected an int, got the str 'two'"
    ]


def test_a_value_out_of_range_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(GOOD + "c.RSQLProxy.max_wait_seconds = -1\n")
    assert refused_both_ways(cfg) == ["RSQLProxy.max_wait_seconds must be >= 0, got -1.0"]


def test_every_problem_is_said_at_once_one_line_each(tmp_path: Path) -> None:
    """A misspelling, a wrong type, a value out of range and a parse error: four lines, not the
    first alone, and each names its setting."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(
        GOOD
        + "c.RSQLProxy.breaker_treshold = 3\n"
        + 'c.RSQLProxy.cache_hits_count = "yes"\n'
        + "c.RSQLProxy.lease_seconds = 0\n"
        + 'c.RSQLProxy.user_limits = ["ten a minute"]\n'
    )
    said = refused_both_ways(cfg)
    assert len(said) == 4, said
    assert (
        said[0]
        == f"{cfg}:3: c.RSQLProxy.breaker_treshold: no such setting; did you mean breaker_threshold?"
    )
    assert (
        said[1] == f"{cfg}:4: c.RSQLProxy.cache_hits_count: expected a boolean, got the str 'yes'"
    )
    assert "RSQLProxy.lease_seconds must be > 0, got 0.0" in said
    assert any(s.startswith("RSQLProxy.user_limits") and "ten a minute" in s for s in said), said


def test_workers_refuse_every_problem_before_forking(tmp_path: Path) -> None:
    """`--workers 2`: the same lines, the missing shared state among them; no worker starts."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(GOOD + "c.RSQLProxy.max_wait_seconds = -5\n")
    said = refused_both_ways(cfg, "--workers", "2")
    assert len(said) == 2, said
    assert said[0].startswith("--workers 2 needs shared state"), said
    assert said[1] == "RSQLProxy.max_wait_seconds must be >= 0, got -5.0"


def test_a_feature_without_its_packages_is_refused(tmp_path: Path) -> None:
    """Tracing, Redis state, a PostgreSQL usage log, the MCP endpoint and its DuckDB and
    PostgreSQL connections, each configured where its package fails to import (a module on
    PYTHONPATH in its place raising ImportError, as a missing install does): one line each,
    with what to install. Before, --check-config passed these and start-up failed later, or at
    the first request."""
    shadow = tmp_path / "not-installed"
    for package in ("opentelemetry", "redis", "asyncpg", "mcp", "duckdb", "psycopg", "psycopg2"):
        (shadow / package).mkdir(parents=True)
        (shadow / package / "__init__.py").write_text(
            f"raise ModuleNotFoundError({f'No module named {package!r}'!r}, name={package!r})\n"
        )
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(
        GOOD
        + "c.RSQLProxy.otel = True\n"
        + 'c.RSQLProxy.state_url = "redis://127.0.0.1:9/0"\n'
        + 'c.RSQLProxy.database_url = "postgresql://rsql@127.0.0.1:9/usage"\n'
        + "c.RSQLProxy.mcp_connections = {"
        + f'"demo": "sqlite:///{tmp_path}/demo.db", "lake": "duckdb:///{tmp_path}/lake.duckdb", '
        + '"dw": {"url": "postgresql://mcp@127.0.0.1:9/dw", "role": "reader"}}\n'
    )
    said = refused_both_ways(cfg, env={"PYTHONPATH": str(shadow)})
    from sqlalchemy.engine import make_url

    driver = make_url("postgresql://").get_dialect().driver
    assert said == [
        "RSQLProxy.otel is True, but what it needs is not installed (opentelemetry): "
        "pip install 'rsql-assistant[otel]'",
        "RSQLProxy.state_url is set, but what it needs is not installed (redis): "
        "pip install 'rsql-assistant[redis]'",
        "RSQLProxy.database_url is a PostgreSQL URL, but what it needs is not installed "
        "(asyncpg): pip install 'rsql-assistant[postgres]'",
        "RSQLProxy.mcp_connections is set, but what it needs is not installed (mcp): "
        "pip install 'rsql-assistant[mcp]'",
        "RSQLProxy.mcp_connections['lake']: a duckdb connection needs duckdb, which is not "
        "installed: pip install 'rsql-assistant[duckdb]'",
        # SQLAlchemy's driver for postgresql://: psycopg (2.1), psycopg2 (2.0)
        f"RSQLProxy.mcp_connections['dw']: a postgres connection needs {driver}, which is not "
        f"installed: pip install {'psycopg2-binary' if driver == 'psycopg2' else repr('psycopg[binary]')}",
    ]
    # with the packages there, nothing is missing: what is left is the check's look at the
    # servers, none of which listens on port 9 (issue 77)
    code, said = check(cfg)
    assert code == 2 and [line.split(" does not answer ")[0] for line in said] == [
        "RSQLProxy.state_url 'redis://127.0.0.1:9/0'",
        "RSQLProxy.database_url 'postgresql://rsql@127.0.0.1:9/usage'",
    ], said


def test_a_problem_line_never_repeats_a_secret(tmp_path: Path) -> None:
    """A key or token in a bad value, or on a line that does not parse, stays out of the
    message (service logs are read by more people than the config file)."""
    typed = tmp_path / "typed.py"
    typed.write_text(
        GOOD
        + "c.RSQLProxy.user_id_secret = 918273645546372819\n"
        + 'c.RSQLProxyService.static_users = "tok-very-secret-1"\n'
    )
    code, said = check(typed)
    assert code == 2 and said == [
        f"{typed}:3: c.RSQLProxy.user_id_secret: expected a unicode string, got an int",
        f"{typed}:4: c.RSQLProxyService.static_users: expected a dict, got a str",
    ]
    broken = tmp_path / "broken.py"
    broken.write_text('c.RSQLProxy.upstreams = [{"name": "g", "api_key": "sk-very-secret-2"}\n')
    code, said = check(broken)
    assert code == 2 and len(said) == 1 and "SyntaxError" in said[0]
    assert "very-secret" not in " ".join(said)


def test_the_debug_log_of_the_configuration_shows_no_secret(tmp_path: Path) -> None:
    """At DEBUG traitlets logs the whole configuration as it is read ("Config changed"), keys
    and passwords with it, and the log level it sets builds the service's log handler anew just
    before: the line is still scrubbed."""
    cfg = tmp_path / "debug.py"
    cfg.write_text(
        'c.RSQLProxy.upstreams = [{"name": "g", "base_url": "http://127.0.0.1:9/v1", '
        '"api_key": "inline-key-not-key-shaped-42", "models": ["m"]}]\n'
        'c.RSQLProxy.database_url = "postgresql://rsql:db-pass-not-shaped-77@127.0.0.1/rsql"\n'
        'c.RSQLProxyService.static_users = {"tok-plain-7f3e9a": {"name": "ann"}}\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_server_ext", "--check-config", "--config", str(cfg)]
        + ["--log-level=DEBUG"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=tmp_path,
    )
    logged = done.stdout + done.stderr
    assert "Config changed" in logged and "'upstreams'" in logged, logged  # the line was logged
    for secret in ("inline-key-not-key-shaped-42", "db-pass-not-shaped-77", "tok-plain-7f3e9a"):
        assert secret not in logged, logged


# the same provider, three keys in three variables none of which is set
GROQ = "https://api.groq.com/openai/v1"


def test_every_upstream_whose_key_variable_is_unset_is_named_with_its_variable(
    tmp_path: Path,
) -> None:
    """Issue 77: three upstreams whose variables are unset gave one line, then three lines each
    naming `$***` (the variable's name taken for a secret): three lines, each variable named."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(
        "c.RSQLProxy.upstreams = ["
        + ", ".join(
            f'{{"name": "groq-{n}", "base_url": "{GROQ}", "api_key_env": "RSQL_T77_KEY_{n}", '
            '"models": ["m-1"]}'
            for n in ("a", "b", "c")
        )
        + ']\nc.RSQLProxy.default_model = "m-1"\n'
    )
    assert refused_both_ways(cfg) == [
        f"upstream 'groq-{n}': field 'api_key_env' names $RSQL_T77_KEY_{n}, which is not set or "
        "empty"
        for n in ("a", "b", "c")
    ]


# keys written into the file (the tests' way; api_key_env in production): never printed
KEY_A, KEY_C = "sk-proj-" + "a1" * 12, "sk-ant-" + "c3" * 12
FIELD_MISTAKES = f"""
c.RSQLProxy.upstreams = [
    {{"name": "a", "base_url": "{GROQ}", "api_key": "{KEY_A}", "models": ["m-1"],
     "limits": ["30/fortnight", "ten/minute"], "token_limits": ["x"]}},
    {{"name": "b", "base_url": "{GROQ}", "api_key_evn": "GROQ_KEY_B", "models": ["m-1"],
     "n_ctx": 3, "prices": {{"m-1": {{"input": -1, "output": 1}}}}}},
    {{"name": "c", "provider": "anthropic", "api_key": "{KEY_C}", "models": ["m-1"],
     "stop_loops": "yes", "responses_api": True, "context_windows": {{"m-2": 200000}}}},
    {{"name": "a", "base_url": "{GROQ}", "api_key": "{KEY_A}", "models": ["m-1"]}},
]
c.RSQLProxy.default_model = "m-1"
"""
LIMIT_HINT = "use e.g. '30/minute', '14400/day' or '5 per 2 seconds'"


def test_every_field_mistake_of_every_upstream_is_a_line_of_its_own(tmp_path: Path) -> None:
    """Issue 77: a bad limit in two upstreams and a misspelt api_key_evn gave one line (each
    upstream's first mistake, later); now every field of every upstream is judged, the
    duplicate name too, and no key is printed."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(FIELD_MISTAKES)
    said = refused_both_ways(cfg)
    assert said == [
        f"upstream 'a': field 'limits': cannot parse limit '30/fortnight'; {LIMIT_HINT}",
        f"upstream 'a': field 'limits': cannot parse limit 'ten/minute'; {LIMIT_HINT}",
        f"upstream 'a': field 'token_limits': cannot parse limit 'x'; {LIMIT_HINT}",
        # the key meant is said once: as the field misspelt, not as a key missing too
        "upstream 'b': unknown field 'api_key_evn'; did you mean 'api_key_env'?",
        "upstream 'b': field 'n_ctx' must be an integer >= 256, got 3",
        "upstream 'b': field 'prices'['m-1']['input']: prices cannot be negative, got -1",
        "upstream 'c': field 'stop_loops' must be true or false, got 'yes'",
        "upstream 'c': field 'responses_api' is for OpenAI-compatible and Azure upstreams",
        "upstream 'c': field 'context_windows' names 'm-2', which this upstream does not serve "
        "(its models: m-1)",
        "upstream 'a': duplicate name; each upstream needs its own alias",
    ]
    assert not any(key in line for line in said for key in (KEY_A, KEY_C)), said


def test_every_entry_of_every_list_and_dict_setting_is_judged(tmp_path: Path) -> None:
    """Issue 77: the settings holding lists and dicts (limits, overrides, policy windows,
    redaction, the context policy, hosted tools, MCP connections, alert webhooks) each stopped
    at their first mistake; now every entry's every mistake is a line."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(
        GOOD
        + 'c.RSQLProxy.user_limits = ["ten a minute", "100/hour", "5 per fortnight"]\n'
        + "c.RSQLProxy.limit_overrides = {\n"
        + '    "user:ann": {"user_limits": ["often"], "user_concurrency": -1},\n'
        + '    "group:staff": {"agnet": False, "models": ["m-1"], "default_model": "m-2"},\n'
        + "}\n"
        + "c.RSQLProxy.policy_windows = [\n"
        + '    {"name": "exam", "groups": ["students"], "mode": "of",\n'
        + '     "start": "2026-12-01T09:00", "end": "2026-12-01T08:00"},\n'
        + '    {"name": "lab", "groups": ["students"], "mode": "off",\n'
        + '     "weekly": {"days": ["mon", "funday"], "start": "14:00", "end": "25:00"}},\n'
        + "]\n"
        + 'c.RSQLProxy.redact_patterns = ["passport", {"name": "sid", "regex": "S(\\\\d{7}"}]\n'
        + 'c.RSQLProxy.context_policy = {"sample_row": False, "value_stats": "no"}\n'
        + 'c.RSQLProxy.hosted_tools = {"web_serch": {"offered": True},\n'
        + '                            "web_search": {"offered": "yes", "max_calls": 0}}\n'
        + f'c.RSQLProxy.mcp_connections = {{"demo": {{"url": "sqlite:///{tmp_path}/d.db",\n'
        + '    "max_rows": 0, "role": "reader"}, "dw": {"url": "mysql://x/y"}}\n'
        + 'c.RSQLProxy.alert_webhooks = ["ftp://alerts", {"url": "https://h.invalid/x", '
        + '"format": "teams"}]\n'
    )
    said = refused_both_ways(cfg)
    expected = [
        f"RSQLProxy.user_limits: cannot parse limit 'ten a minute'; {LIMIT_HINT}",
        f"RSQLProxy.user_limits: cannot parse limit '5 per fortnight'; {LIMIT_HINT}",
        f"RSQLProxy.limit_overrides['user:ann']['user_limits']: cannot parse limit 'often'; "
        f"{LIMIT_HINT}",
        "RSQLProxy.limit_overrides['user:ann']['user_concurrency']: expected an integer >= 0, "
        "got -1",
        "RSQLProxy.limit_overrides['group:staff']: unknown field 'agnet'; did you mean 'agent'?",
        "RSQLProxy.limit_overrides['group:staff']['default_model']: 'm-2' is not among its own "
        "'models' ['m-1']",
        "RSQLProxy.policy_windows[0] ('exam')['mode']: one of off, local-only, custom, tutor, "
        "got 'of'",
        "RSQLProxy.policy_windows[0] ('exam'): 'end' (2026-12-01T08:00) must be after 'start' "
        "(2026-12-01T09:00)",
        "RSQLProxy.policy_windows[1] ('lab')['weekly']['days']: days of the week from mon, tue, "
        "wed, thu, fri, sat, sun, got ['mon', 'funday']",
        "RSQLProxy.policy_windows[1] ('lab')['weekly']['end']: a time of day like '09:00', got "
        "'25:00'",
        "RSQLProxy.redact_patterns[0]: unknown pattern 'passport'; built-in patterns: email, "
        'iban, card, ipv4, phone, or give {"name": "...", "regex": "..."}',
        "RSQLProxy.context_policy: unknown field 'sample_row'; known fields: sample_rows, "
        "value_stats, redact_columns",
        "RSQLProxy.context_policy['value_stats']: expected True or False, got 'no'",
        "RSQLProxy.mcp_connections['demo']['role']: SQLite connections take no role (only "
        "PostgreSQL ones do)",
        "RSQLProxy.mcp_connections['demo']['max_rows']: expected an integer from 1 to 1000, got 0",
        "RSQLProxy.mcp_connections['dw']['url']: expected sqlite:///PATH, duckdb:///PATH, "
        "postgresql://..., got 'mysql://x/y'",
        "RSQLProxy.alert_webhooks[0]: 'url' must be an http(s) URL",
        "RSQLProxy.alert_webhooks[1]: 'format' must be one of ('json', 'slack'), got 'teams'",
        "RSQLProxy.hosted_tools['web_serch']: unknown kind (did you mean 'web_search'?); kinds: "
        "web_search, web_fetch, file_search, code_interpreter, image_generation, mcp, "
        "computer_use, shell, apply_patch, text_editor, memory, tool_search",
        "RSQLProxy.hosted_tools['web_search']['offered']: true or false, got 'yes'",
        "RSQLProxy.hosted_tools['web_search']['max_calls']: an integer from 1 to 1000, got 0",
    ]
    # the regular expression's own error is Python's words, whichever version says them
    (bad_regex,) = [p for p in said if p.startswith("RSQLProxy.redact_patterns[1] ('sid'): bad ")]
    rest = [p for p in said if p != bad_regex]
    assert sorted(rest) == sorted(expected), "\n".join(sorted(set(rest) ^ set(expected)))
