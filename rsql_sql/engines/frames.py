"""pandas (or polars) DataFrames, queried in the kernel through DuckDB under their variable
names: a thin wrapper over the DuckDB engine, on a connection with no files, no network, no
extensions and its configuration locked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .duckdb import DuckDB

__all__ = ["FramesDB", "is_frame"]

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


class FramesDB(DuckDB):
    """pandas (or polars) frames registered as DuckDB views under their variable names."""

    kind = "frames"
    table_kind = "dataframe"

    def __init__(self, frames: Mapping[str, Any]) -> None:
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
            conn.register(name, frame)  # zero-copy: DuckDB scans the frame in place
        super().__init__(conn, label=f"DataFrames ({', '.join(frames) or 'none'}) via DuckDB")
        self.frames = dict(frames)
