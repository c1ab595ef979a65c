"""The engines by name: which module holds each, loaded when first asked for (as sqlglot
loads its dialects), so an engine's driver code costs nothing until a connection of it comes."""

from __future__ import annotations

import importlib

from .base import SqlEngine

__all__ = [
    "engine_for",
    "engine_for_file",
    "engine_for_url",
    "engines",
    "file_kinds",
    "url_examples",
]

# engine name -> its module (which defines ENGINE); one line per engine
_MODULES = {
    "sqlite": "sqlite",
    "duckdb": "duckdb",
    "postgres": "postgres",
}

_LOADED: dict[str, SqlEngine] = {}


def engine_for(name: str) -> SqlEngine:
    """The engine a sqlglot dialect name stands for; an engine without a module of its own is a
    plain :class:`SqlEngine` of that name (the guard alone)."""
    engine = _LOADED.get(name)
    if engine is None:
        module = _MODULES.get(name)
        if module is not None:
            engine = importlib.import_module(f"{__package__}.{module}").ENGINE
        else:
            from .others import ENGINES

            engine = ENGINES.get(name) or SqlEngine(name)
        _LOADED[name] = engine
    return engine


def engines() -> list[SqlEngine]:
    """Every engine with a module of its own, in registry order."""
    return [engine_for(name) for name in _MODULES]


def engine_for_url(url: str) -> SqlEngine | None:
    """The engine whose connections `url` opens (its scheme, ``scheme+driver`` too), or None."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    base = scheme.split("+", 1)[0]
    return next((e for e in engines() if base and base in e.url_schemes), None)


def engine_for_file(head: bytes) -> SqlEngine | None:
    """The engine whose database files begin as `head` (a file's first 16 bytes), or None."""
    for engine in engines():
        if engine.file_header is not None:
            at, magic = engine.file_header
            if head[at : at + len(magic)] == magic:
                return engine
    return None


def file_kinds() -> str:
    """The engines whose files :func:`engine_for_file` knows, for error texts ("SQLite or
    DuckDB")."""
    return " or ".join(e.title for e in engines() if e.file_header is not None)


def url_examples() -> str:
    """The URL forms :func:`engine_for_url` knows, for help and error texts."""
    return ", ".join(e.url_example for e in engines() if e.url_example)
