"""pandas (or polars) DataFrames, queried in the kernel through DuckDB under their variable
names: a thin wrapper over the DuckDB database, on a connection with no files, no network, no
extensions and its configuration locked.

The context policy's redacted columns are decided on each frame's own labels before DuckDB
sees the frame (issue 53): DuckDB names some columns its own way (a MultiIndex column
``('salary', 'max')`` becomes ``"('salary', 'max')"``, a second ``salary`` becomes
``salary_1``), and a pattern written for the label does not match those names. So a caller
whose results go to a model (the agent's tools) registers the frames with the withheld
columns' values replaced (``FramesDB(frames, policy=...)``): no name, alias or expression in
the SQL can reach them. A caller whose results go to the user alone (%%sql_ai) registers them
as they are: it sends the model names and types only (the schema code reads no value of a
frame). :meth:`FramesDB.context_policy` is the policy with DuckDB's names of the withheld
columns added, for the checks that see only those names (a query naming ``salary_1`` is
refused with the reason).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from rsql_common.context_policy import REDACTED, ContextPolicy

from .duckdb import DuckDB

__all__ = ["FramesDB", "is_frame", "withheld_frame"]

_FRAMES_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}


def is_frame(obj: Any) -> bool:
    """A pandas or polars DataFrame (told by its type's module: neither library is imported)."""
    mod = type(obj).__module__
    return type(obj).__name__ == "DataFrame" and (
        mod.startswith("pandas") or mod.startswith("polars")
    )


def withheld_frame(frame: Any, positions: list[int]) -> Any:
    """`frame` with the columns at `positions` holding ``[redacted]`` in every row; the others
    are shared with `frame`, which is not changed.

    By position, so duplicate labels are each taken as they are. A pandas column becomes a
    one-category categorical (a byte a row; DuckDB reads it as an ENUM of ``[redacted]``, so
    arithmetic on it fails rather than computing on a stand-in value)."""
    if not positions:
        return frame
    if type(frame).__module__.startswith("polars"):
        import polars as pl

        names = [frame.columns[i] for i in positions]
        return frame.with_columns([pl.lit(REDACTED).alias(n) for n in names])
    import numpy as np
    import pandas as pd

    out = frame.copy(deep=False)
    for i in positions:
        codes = np.zeros(len(out), dtype=np.int8)
        out.isetitem(i, pd.Categorical.from_codes(codes, categories=[REDACTED]))
    return out


def _exact(name: str) -> str:
    """A glob pattern matching `name` only (its ``*``, ``?`` and ``[`` taken literally)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


class FramesDB(DuckDB):
    """pandas (or polars) frames registered as DuckDB views under their variable names.

    `policy`: the context policy of a caller that sends results to a model (the agent's
    tools); the columns it withholds are registered with their values replaced (see the
    module docstring). None: the frames as they are."""

    kind = "frames"
    table_kind = "dataframe"

    def __init__(self, frames: Mapping[str, Any], *, policy: ContextPolicy | None = None) -> None:
        try:
            import duckdb
        except ImportError:
            raise ImportError(
                "querying DataFrames needs DuckDB: pip install 'rsql-assistant[duckdb]'"
            ) from None

        # No files, no network, no extensions, and no way to change that from SQL; frames are
        # registered by name, so DuckDB need not look up Python variables either.
        conn = duckdb.connect(config=_FRAMES_CONFIG)
        for name, frame in frames.items():
            hidden = policy.withheld_positions(frame) if policy is not None else []
            # zero-copy: DuckDB scans the frame in place (a withheld one: its other columns)
            conn.register(name, withheld_frame(frame, hidden))
        super().__init__(conn, label=f"DataFrames ({', '.join(frames) or 'none'}) via DuckDB")
        self.frames = dict(frames)

    def withheld_names(self, policy: ContextPolicy) -> dict[str, list[str]]:
        """Per frame, DuckDB's names of the columns `policy` withholds (decided on the frame's
        own labels; DuckDB's columns are the frame's, in order)."""
        out: dict[str, list[str]] = {}
        for name, frame in self.frames.items():
            hidden = policy.withheld_positions(frame)
            if hidden:
                columns = self.raw.view(name).columns
                out[name] = [str(columns[i]) for i in hidden if i < len(columns)]
        return out

    def context_policy(self, policy: ContextPolicy) -> ContextPolicy:
        """`policy` with DuckDB's names of the columns it withholds in these frames added as
        exact patterns: what the SQL package's schema, value and query checks, which see
        DuckDB's names only, must apply here (``salary_1`` for a second ``salary``)."""
        names = {n for cols in self.withheld_names(policy).values() for n in cols}
        added = tuple(_exact(n) for n in sorted(names) if not policy.redacts(n))
        if not added:
            return policy
        return replace(policy, redact_columns=(*policy.redact_columns, *added))
