"""A catalog's rows, as every engine's catalog reader fetches them, made into a :class:`Schema`."""

from __future__ import annotations

from typing import Any

from .model import Column, ForeignKey, Schema, Table

__all__ = ["assemble"]


def assemble(
    dialect: str,
    default_db: str,
    col_rows: list[tuple[Any, ...]],
    pk_rows: list[tuple[Any, ...]],
    fk_rows: list[tuple[Any, ...]],
) -> Schema:
    """col_rows: (db, table, kind, column, type, nullable) in column order;
    pk_rows: (db, table, [columns]); fk_rows: (db, table, [cols], ref_db, ref_table, [ref_cols])."""
    tables: dict[tuple[str, str], Table] = {}
    for db, tname, kind, cname, ctype, nullable in col_rows:
        t = tables.get((db, tname))
        if t is None:
            t = tables[(db, tname)] = Table(tname, db, kind=kind)
        t.columns.append(Column(cname, str(ctype or ""), bool(nullable)))
    for db, tname, cols in pk_rows:
        t = tables.get((db, tname))
        if t is not None and cols:
            t.primary_key = tuple(cols)
    for db, tname, cols, rdb, rtable, rcols in fk_rows:
        t = tables.get((db, tname))
        if t is None:
            continue
        if not rcols:  # SQLite: a FK without columns points at the target's primary key
            target = tables.get((rdb or db, rtable))
            rcols = list(target.primary_key) if target else []
        t.foreign_keys.append(ForeignKey(tuple(cols), rdb, rtable, tuple(rcols)))
    return Schema(dialect, default_db, list(tables.values()))
