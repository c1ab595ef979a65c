"""``{var}`` references in a question: what each stands for, within the context policy."""

from __future__ import annotations

import inspect
from typing import Any

from ..privacy import ContextPolicy
from .frames import describe_frame, frame_kind
from .history import ErrorRecord, index_list

__all__ = ["resolve_reference"]


def resolve_reference(
    name: str,
    idx: int | None,
    *,
    ns: dict[str, Any],
    errors: list[ErrorRecord],
    policy: ContextPolicy,
) -> str | None:
    """The text a ``{name}`` / ``{name[idx]}`` reference in a question stands for, or None
    to leave it as typed: a value's repr (cut at 4000 characters), a function's source, a
    frame's description, a failed cell (``{Err[-1]}``, from ``errors``); what the context
    ``policy`` withholds is named, not shown."""
    if name == "Err" and "Err" not in ns:
        rec = index_list(errors, idx)
        return rec.as_text() if rec is not None else None
    if name not in ns:
        return None
    val = ns[name]
    if idx is not None:
        if name == "Out" and isinstance(val, dict):
            if idx < 0:
                keys = sorted(val)
                val = val.get(keys[idx]) if -len(keys) <= idx else None
            else:
                val = val.get(idx)
            if val is None:
                return None
        else:
            if not isinstance(val, (list, tuple)):
                return None  # only plain sequences: never call user __getitem__
            val = index_list(val, idx)
            if val is None:
                return None
    if inspect.ismodule(val) or inspect.isclass(val):
        return None
    if callable(val) and not frame_kind(val):
        try:
            return inspect.getsource(val).rstrip()
        except (OSError, TypeError):
            return None
    if frame_kind(val):
        return "\n" + describe_frame(name, val, budget_chars=2000, policy=policy) + "\n"
    if not policy.is_open and _withhold_ref(name, val, policy):
        return f"<{type(val).__name__} `{name}`: values withheld by the context policy>"
    text = val if isinstance(val, str) else repr(val)
    return text if len(text) <= 4000 else text[:3990] + " …(cut)"


def _withhold_ref(name: str, val: Any, policy: ContextPolicy) -> bool:
    """Should a ``{name}`` reference to ``val`` be withheld? A variable named like a redacted
    column, or data (a Series, an array: values, not code) when rows or stats are withheld
    or its own name is redacted."""
    if policy.redacts(name):
        return True
    mod = type(val).__module__ or ""
    if mod.startswith(("pandas", "polars", "numpy", "pyarrow")):
        own = getattr(val, "name", None)
        return (
            not policy.sample_rows
            or not policy.value_stats
            or (own is not None and policy.redacts(own))
        )
    return False
