"""The databases by name: which module holds each, loaded when first asked for (as sqlglot
loads its dialects), so a database's driver code costs nothing until a connection of it comes."""

from __future__ import annotations

import importlib

from .base import Database

__all__ = [
    "database_for",
    "database_for_file",
    "database_for_url",
    "databases",
    "file_kinds",
    "url_examples",
]

# database name -> its module (which defines DATABASE); one line per database
_MODULES = {
    "sqlite": "sqlite",
    "duckdb": "duckdb",
    "postgres": "postgres",
}

_LOADED: dict[str, Database] = {}


def database_for(name: str) -> Database:
    """The database a sqlglot dialect name stands for; a database without a module of its own is a
    plain :class:`Database` of that name (the guard alone)."""
    database = _LOADED.get(name)
    if database is None:
        module = _MODULES.get(name)
        if module is not None:
            database = importlib.import_module(f"{__package__}.{module}").DATABASE
        else:
            from .others import DATABASES

            database = DATABASES.get(name) or Database(name)
        _LOADED[name] = database
    return database


def databases() -> list[Database]:
    """Every database with a module of its own, in registry order."""
    return [database_for(name) for name in _MODULES]


def database_for_url(url: str) -> Database | None:
    """The database whose connections `url` opens (its scheme, ``scheme+driver`` too), or None."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    base = scheme.split("+", 1)[0]
    return next((e for e in databases() if base and base in e.url_schemes), None)


def database_for_file(head: bytes) -> Database | None:
    """The database whose files begin as `head` (a file's first 16 bytes), or None."""
    for database in databases():
        if database.file_header is not None:
            at, magic = database.file_header
            if head[at : at + len(magic)] == magic:
                return database
    return None


def file_kinds() -> str:
    """The databases whose files :func:`database_for_file` knows, for error texts ("SQLite or
    DuckDB")."""
    return " or ".join(e.title for e in databases() if e.file_header is not None)


def url_examples() -> str:
    """The URL forms :func:`database_for_url` knows, for help and error texts."""
    return ", ".join(e.url_example for e in databases() if e.url_example)
