"""When two model names are the same model: equal, or one a dated snapshot of the other
(``gpt-4o-mini-2024-07-18`` of ``gpt-4o-mini``, ``claude-haiku-4-5-20251001`` of
``claude-haiku-4-5``). Only a date counts: ``gpt-4o-mini`` is not ``gpt-4o``, nor
``claude-sonnet-5-5`` ``claude-sonnet-5``. A replay's rerun and a provenance mark's check both
ask this of what was recorded and what is served."""

from __future__ import annotations

import re

__all__ = ["same_model"]

# a snapshot's date suffix: -2024-07-18, -20251001
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


def same_model(a: str, b: str) -> bool:
    """Whether `a` and `b` name the same model (case aside)."""
    return _SNAPSHOT.sub("", a.lower()) == _SNAPSHOT.sub("", b.lower())
