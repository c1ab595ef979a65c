"""Where %%sql_ai's SQL can fail: the stage names, one vocabulary for the kernel and the proxy.

A leaf with no imports of ours: the proxy reads ``CHECK_STAGES`` too (the only words it keeps
from an ``X-RSQL-Escalation`` header), and must not pull in the kernel side to do so.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["CHECK_STAGES", "STAGES", "CheckStage", "Stage", "check_stage"]

# Where a statement failed: "extract" (no SQL in the answer), "parse", "schema" (unknown table
# or column), "refused" (read-only guard), "database" (the database raised), "timeout"; and,
# before any SQL, "usage", "connection" and "proxy" (the magic's own failures).
CheckStage = Literal["extract", "parse", "schema", "refused", "database", "timeout"]
Stage = Literal[CheckStage, "usage", "connection", "proxy"]
STAGES: frozenset[str] = frozenset(get_args(Stage))
CHECK_STAGES: frozenset[str] = frozenset(get_args(CheckStage))


def check_stage(stage: str, allowed: frozenset[str] = STAGES) -> None:
    """Raise ValueError unless `stage` is one of `allowed`: a typo must not become a new stage."""
    if stage not in allowed:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(sorted(allowed))}")
