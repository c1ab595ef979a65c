"""The context a user names, checked before anything is sent (issue 77).

``%%ask --df salez`` used to print one line on stderr, then send (and bill) the question without
the frame, and a batch run passed. Whatever the user names (a DataFrame or an R data frame with
``--df``, a connection, a URL or JupySQL's with ``--sql``, %%sql_ai's CONN and ``--tables``, the
chat panel's pickers and ``%ask_chat``'s options) is looked up first: a name that does not
resolve stops the cell before any request, with the names that do exist and a "did you mean"
where one is close. A source that resolves and then cannot be read (a closed connection, R that
does not start) is the collectors' to report (:class:`~rsql_magic.context.Context`'s
``unreadable``); the question stops there too, still before anything is sent.

Names come from the user's namespace, R's globalenv and the database: each is shown through
:func:`rsql_common.hidden_characters.escaped` and cut short, so a name carries no control
character into a message, and a long list is counted, not printed.
"""

from __future__ import annotations

import difflib
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsql_common.hidden_characters import escaped
from rsql_sql.connections import jupysql_current, resolve

from ..errors import UsageError
from .frames import find_frames

__all__ = [
    "JUPYSQL_NAMES",
    "LISTED",
    "NOTHING_SENT",
    "NamedFrames",
    "a_type",
    "close_match",
    "connection_variables",
    "connections_text",
    "database_file_problem",
    "frame_names",
    "listing",
    "named_connection",
    "named_frames",
    "shown_name",
    "unknown_tables",
]

NOTHING_SENT = "Nothing was sent."
LISTED = 12  # names a message lists; the rest are counted
CLOSE = 0.7  # difflib's ratio from which a name is offered as "did you mean" ('salez' ~ 'sales')
JUPYSQL_NAMES = ("jupysql", "%sql", "%%sql", "sql")

# connection objects recognised in the namespace, by the module their type comes from
_CONN_MODULES = (
    "sqlite3",
    "duckdb",
    "_duckdb",
    "sqlalchemy",
    "psycopg",
    "psycopg2",
    "sql.connection",
)
# a URL naming a database file the driver would create, empty, when it is missing
_FILE_URL = re.compile(r"^(?:sqlite|duckdb)(?:\+\w+)?:///(?P<path>[^?#]*)", re.I)
_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".duckdb", ".ddb")


def shown_name(name: str) -> str:
    """A name as a message shows it: controls escaped, at most 80 characters."""
    text = escaped(str(name))
    return text if len(text) <= 80 else text[:79] + "…"


def close_match(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate `name` most likely meant ('salez' -> 'sales', 'Sales' -> 'sales'), or None
    when none is close."""
    folded: dict[str, str] = {}
    for c in candidates:
        folded.setdefault(c.lower(), c)
    if name.lower() in folded:
        return folded[name.lower()]
    hits = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=CLOSE)
    return folded[hits[0]] if hits else None


def listing(names: Sequence[str]) -> str:
    """``sales, orders`` (the first :data:`LISTED`, then ``and 40 more``)."""
    head = ", ".join(shown_name(n) for n in names[:LISTED])
    more = len(names) - LISTED
    return head + (f" and {more} more" if more > 0 else "")


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    guess = close_match(name, candidates)
    return f" (did you mean {shown_name(guess)}?)" if guess is not None else ""


def a_type(value: Any) -> str:
    """``an int``, ``a list``: what a value is, for "... is an int, not a DataFrame"."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


# -- frames ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamedFrames:
    """What ``--df`` named: pandas / polars frames of the namespace (``python``), and data
    frames of R's globalenv (``r``: described with the R session, first)."""

    python: tuple[str, ...] = ()
    r: tuple[str, ...] = ()


def frame_names(ns: Mapping[str, Any], r_frames: Sequence[str] = ()) -> str:
    """``DataFrames in this notebook: sales, orders; R data frames: penguins`` (or none)."""
    frames = list(find_frames(dict(ns)))
    parts = [f"DataFrames in this notebook: {listing(frames) if frames else 'none'}"]
    if r_frames:
        parts.append(f"R data frames: {listing(list(r_frames))}")
    return "; ".join(parts)


def named_frames(
    option: str, names: Sequence[str], ns: Mapping[str, Any], r_frames: Sequence[str] = ()
) -> NamedFrames:
    """The frames `names` name (`option`: how the user named them, ``--df``), each a frame
    of the namespace or an R data frame; UsageError naming each one that is neither."""
    frames = find_frames(dict(ns))
    python: list[str] = []
    r: list[str] = []
    problems: list[str] = []
    for name in names:
        if name in frames:
            python.append(name)
        elif name in r_frames:
            r.append(name)
        elif name in ns:
            problems.append(f"{shown_name(name)} is {a_type(ns[name])}, not a DataFrame")
        else:
            problems.append(
                f"no DataFrame named {shown_name(name)}" + _did_you_mean(name, [*frames, *r_frames])
            )
    if problems:
        raise UsageError(
            f"{option} {','.join(shown_name(n) for n in names)}: {'; '.join(problems)}. "
            f"{frame_names(ns, r_frames)}. {NOTHING_SENT}"
        )
    return NamedFrames(tuple(python), tuple(r))


# -- connections and database files ---------------------------------------------------------


def connection_variables(ns: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(variable, dialect)`` for each connection object in the namespace (sqlite3, DuckDB,
    SQLAlchemy, psycopg, JupySQL's), in namespace order; nothing is opened or read."""
    out: list[tuple[str, str]] = []
    for name, obj in list(ns.items()):
        if name.startswith("_") or isinstance(obj, type):
            continue
        if not (type(obj).__module__ or "").startswith(_CONN_MODULES):
            continue
        try:
            db = resolve(obj)
        except Exception:  # not a connection after all: not offered
            continue
        out.append((name, db.dialect))
    return out


def connections_text(ns: Mapping[str, Any]) -> str:
    """``Connections in this notebook: conn (sqlite)`` (or none)."""
    conns = connection_variables(ns)
    names = [f"{name} ({dialect})" for name, dialect in conns]
    return f"Connections in this notebook: {listing(names) if names else 'none'}"


def database_file_problem(url: str) -> str | None:
    """What is wrong with the database file a ``sqlite:///`` or ``duckdb:///`` URL names: it
    does not exist (the driver would create it empty, and the model would be asked about
    nothing), with the database files beside it; None when it exists or the URL names none."""
    m = _FILE_URL.match(url.strip())
    if m is None:
        return None
    raw = urllib.parse.unquote(m.group("path"))
    if raw in ("", ":memory:") or raw.startswith("file:"):
        return None
    path = Path(raw).expanduser()
    if path.exists():
        return None
    folder = path.parent
    near: list[str] = []
    if folder.is_dir():
        try:
            near = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in _DB_SUFFIXES)
        except OSError:  # a folder we may not list: no suggestions
            near = []
    text = f"no such database file {shown_name(str(path))}" + _did_you_mean(path.name, near)
    where = shown_name(str(folder.resolve() if folder.is_dir() else folder))
    return text + (f"; database files in {where}: {listing(near) if near else 'none'}")


def named_connection(option: str, name: str, ns: Mapping[str, Any]) -> tuple[str, Any]:
    """``(label, connection)`` for what ``--sql`` names: a connection variable, JupySQL's
    active connection (``jupysql``: None, the schema collector's word for it), or a database
    URL. UsageError when it names nothing that can be read, with the connections there are."""
    name = name.strip()
    if name in ns:
        obj = ns[name]
        try:
            resolve(obj)
        except Exception:
            raise UsageError(
                f"{option} {shown_name(name)}: {shown_name(name)} is {a_type(obj)}, not a "
                f"connection (a sqlite3 / DuckDB connection, a SQLAlchemy engine or URL, a "
                f"DataFrame). {connections_text(ns)}. {NOTHING_SENT}"
            ) from None
        if isinstance(obj, str):
            problem = database_file_problem(obj)
            if problem is not None:
                raise UsageError(f"{option} {shown_name(name)}: {problem}. {NOTHING_SENT}")
        return (name, obj)
    if name.lower() in JUPYSQL_NAMES:
        if jupysql_current() is None:
            raise UsageError(
                f"{option} {shown_name(name)}: JupySQL has no active connection (open one with "
                f"%sql URL, or name a connection). {connections_text(ns)}. "
                f"{NOTHING_SENT}"
            )
        return ("JupySQL current connection", None)
    if "://" in name:
        problem = database_file_problem(name)
        if problem is not None:
            raise UsageError(f"{option} {shown_name(name)}: {problem}. {NOTHING_SENT}")
        return (name, name)
    known = [n for n, _ in connection_variables(ns)]
    raise UsageError(
        f"{option} {shown_name(name)}: no such variable{_did_you_mean(name, known)}; expected a "
        f"connection variable, a database URL, or 'jupysql'. "
        f"{connections_text(ns)}. {NOTHING_SENT}"
    )


# -- tables -----------------------------------------------------------------------------------


def unknown_tables(names: Sequence[str], missing: Sequence[str], tables: Sequence[str]) -> str:
    """The message for ``--tables`` naming tables the schema lacks: each with a "did you
    mean", and the tables there are."""
    parts = [f"{shown_name(m)}{_did_you_mean(m, tables)}" for m in missing]
    return (
        f"--tables names unknown table(s): {', '.join(parts)}. The connection's tables: "
        f"{listing(list(tables)) if tables else 'none'}. {NOTHING_SENT}"
    )
