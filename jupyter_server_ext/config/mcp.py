"""What an admin configures for the proxy's MCP endpoint, checked at start-up.

``c.RSQLProxy.mcp_connections`` names the databases; ``mcp_user_limits``,
``mcp_user_concurrency`` and ``mcp_workers`` bound the tool calls. Nothing here connects: a
database that is down is found at its first call, and said then, so one unreachable warehouse
does not keep the proxy from starting. A driver that is not installed is found at start-up
(``connection_problems``): no call could ever succeed.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from rsql_sql.databases import Database, database_for_url, databases, url_examples

from ..engine import ConfigError, Rate, parse_rates
from ..engine.errors import Problems
from .secrets import mask_url

WHERE = "RSQLProxy.mcp_connections"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
FIELDS = (
    "url",
    "role",
    "groups",
    "max_rows",
    "timeout_seconds",
    "redact_columns",
    "allow_functions",
    "description",
)


@dataclass(frozen=True)
class ConnectionSpec:
    """One database an admin serves over MCP."""

    name: str
    url: str
    kind: str  # its database's name (rsql_sql.databases): "sqlite", "duckdb", "postgres"
    role: str | None = None  # PostgreSQL: the role every statement runs as (SET LOCAL ROLE)
    groups: tuple[str, ...] = ()  # who may use it (empty: every user)
    max_rows: int = 20
    timeout_seconds: float = 10.0
    redact_columns: tuple[str, ...] = ()
    allow_functions: tuple[str, ...] = ()
    description: str = ""

    def open_to(self, groups: tuple[str, ...]) -> bool:
        return not self.groups or any(g in self.groups for g in groups)


@dataclass(frozen=True)
class MCPSettings:
    connections: tuple[ConnectionSpec, ...] = ()
    user_limits: tuple[Rate, ...] = ()
    user_concurrency: int = 2
    workers: int = 4

    @property
    def on(self) -> bool:
        return bool(self.connections)


def _database(url: str, where: str) -> Database:
    # the SQL package's databases say which URLs they open, as rsql-mcp asks them: one list
    database = database_for_url(url)
    if database is None:
        # shown with its password masked, found even where a slash is missing (issue 73)
        raise ConfigError(f"{where}['url']: expected {url_examples()}, got {mask_url(url)!r}")
    return database


def _strings(value: Any, where: str, what: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of {what}, got {value!r}")
    return tuple(value)


def parse_connection(name: Any, raw: Any) -> ConnectionSpec:
    """One connection of ``mcp_connections``; ConfigProblems names each of its wrong fields."""
    where = f"{WHERE}[{name!r}]"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{where}: a connection's name is 1 to 64 letters, digits, '_' or '-', starting with a "
            "letter or digit"
        )
    if isinstance(raw, str):
        raw = {"url": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: expected a dict like {{'url': 'postgresql://...', 'role': ...}}"
        )
    problems = Problems()
    for unknown in sorted(set(raw) - set(FIELDS), key=str):
        problems.append(f"{where}: unknown field {unknown!r}; fields: {', '.join(FIELDS)}")
    url = raw.get("url")
    database = None
    if not isinstance(url, str) or not url.strip():
        problems.append(f"{where}['url']: the database's URL is required")
    else:
        url = url.strip()
        database = problems.run(partial(_database, url, where), None)
    role = raw.get("role")
    if role is not None and (not isinstance(role, str) or not _ROLE.match(role)):
        problems.append(f"{where}['role']: expected a PostgreSQL role name, got {role!r}")
    elif database is not None and database.runs_as_role and not role:
        # the proxy's own login may hold more rights than a user should: every statement runs
        # as a role the admin chose for reading, behind the read-only transaction
        problems.append(
            f"{where}['role']: a {database.title} connection needs a read-only role (a role without "
            "superuser rights that can SELECT the tables to serve); statements run as it"
        )
    elif database is not None and not database.runs_as_role and role:
        takers = " and ".join(e.title for e in databases() if e.runs_as_role)
        problems.append(
            f"{where}['role']: {database.title} connections take no role (only {takers} ones do)"
        )
    max_rows = raw.get("max_rows", 20)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or not 1 <= max_rows <= 1000:
        problems.append(
            f"{where}['max_rows']: expected an integer from 1 to 1000, got {max_rows!r}"
        )
    timeout = raw.get("timeout_seconds", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        problems.append(
            f"{where}['timeout_seconds']: expected a number of seconds from 0 to 300, got {timeout!r}"
        )
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > 300:
        problems.append(f"{where}['description']: expected text of at most 300 characters")
    lists = {
        field: problems.run(partial(_strings, raw.get(field, []), f"{where}[{field!r}]", what), ())
        for field, what in (
            ("groups", "group names"),
            ("redact_columns", "column names or globs"),
            ("allow_functions", "function names"),
        )
    }
    problems.refuse()
    assert database is not None and isinstance(url, str)  # else a problem above
    return ConnectionSpec(
        name=name,
        url=url,
        kind=database.name,
        role=role or None,
        groups=lists["groups"],
        max_rows=max_rows,
        timeout_seconds=float(timeout),
        redact_columns=lists["redact_columns"],
        allow_functions=lists["allow_functions"],
        description=description,
    )


def parse_mcp_settings(
    connections: Any, user_limits: Any, user_concurrency: Any, workers: Any
) -> MCPSettings:
    """The MCP endpoint's settings from the RSQLProxy traits; ConfigProblems names every
    connection and setting that is wrong."""
    if not isinstance(connections, Mapping):
        raise ConfigError(f"{WHERE}: expected a dict of name -> {{'url': ..., ...}}")
    problems = Problems()
    parsed = [
        problems.run(partial(parse_connection, n, raw), None) for n, raw in connections.items()
    ]
    if isinstance(user_concurrency, bool) or not isinstance(user_concurrency, int):
        problems.append("RSQLProxy.mcp_user_concurrency: expected an integer >= 1")
    elif not 1 <= user_concurrency <= 64:
        problems.append(f"RSQLProxy.mcp_user_concurrency: expected 1 to 64, got {user_concurrency}")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        problems.append(f"RSQLProxy.mcp_workers: expected an integer from 1 to 64, got {workers!r}")
    limits = problems.run(partial(parse_rates, user_limits, where="RSQLProxy.mcp_user_limits"), ())
    problems.refuse()
    return MCPSettings(
        connections=tuple(c for c in parsed if c is not None),
        user_limits=limits,
        user_concurrency=user_concurrency,
        workers=workers,
    )


# how to install what a connection's database needs (SQLAlchemy 2.1 opens postgresql:// with
# psycopg, 2.0 with psycopg2)
_INSTALL = {
    "duckdb": "pip install 'rsql-assistant[duckdb]'",
    "sqlalchemy": "pip install sqlalchemy",
    "psycopg": "pip install 'psycopg[binary]'",
    "psycopg2": "pip install psycopg2-binary",
}


def connection_problems(spec: ConnectionSpec) -> list[str]:
    """What the connection's database needs to open it and is not installed, one line each
    (imported as its first call would: DuckDB itself; PostgreSQL through SQLAlchemy and the
    driver its URL names, SQLAlchemy's default for postgresql://)."""
    where = f"{WHERE}[{spec.name!r}]"
    try:
        if spec.kind == "duckdb":
            importlib.import_module("duckdb")
        elif spec.kind == "postgres":
            # optional packages, looked for by name (the proxy's image ships neither)
            make_url = importlib.import_module("sqlalchemy.engine").make_url
            url = spec.url.replace("postgres://", "postgresql://", 1)
            make_url(url).get_dialect().import_dbapi()  # the driver, as create_engine loads it
    except ImportError as exc:
        name = exc.name or str(exc)
        install = _INSTALL.get(name, f"pip install {name}")
        return [
            f"{where}: a {spec.kind} connection needs {name}, which is not installed: {install}"
        ]
    except Exception as exc:  # SQLAlchemy cannot read the URL, or knows no such driver
        # only the driver's name is repeated: the URL may hold a password
        said = f": {exc}" if type(exc).__name__ == "NoSuchModuleError" else ""
        return [f"{where}['url']: SQLAlchemy cannot open it ({type(exc).__name__}{said})"]
    return []
