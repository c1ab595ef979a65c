"""``c.RSQLProxy.limit_overrides`` read and checked: what a group or a user gets instead of the
defaults ({"user:alice": {...}, "group:staff": {...}}). Every entry's and every field's mistake
is named at once (``ConfigProblems``), not the first alone."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import partial
from typing import Any

from ..errors import ConfigError, Problems
from ..upstreams.specs import parse_budget_usd, parse_rates
from .window_specs import matches

OVERRIDABLE = (
    "user_limits",
    "user_concurrency",
    "user_daily_budget_usd",
    "models",
    "default_model",
    "sql_default_model",
    "agent",
    "completions",
    "completion_user_limits",
    "completion_user_concurrency",
)


def parse_overrides(raw: Any) -> dict[str, dict[str, Any]]:
    """Validate ``limit_overrides``: {"user:alice": {...}, "group:staff": {...}}."""
    if not isinstance(raw, Mapping):
        raise ConfigError("RSQLProxy.limit_overrides: expected a dict like {'user:alice': {...}}")
    problems = Problems()
    out: dict[str, dict[str, Any]] = {}
    for who, values in raw.items():
        item = problems.run(partial(_override, who, values), None)
        if item is not None:
            out[who] = item
    problems.refuse()
    return out


def _override(who: Any, values: Any) -> dict[str, Any]:
    """One entry's fields, as the limiter reads them; raises ConfigProblems naming each wrong one."""
    where = f"RSQLProxy.limit_overrides[{who!r}]"
    if not isinstance(who, str) or not who.startswith(("user:", "group:")) or who.endswith(":"):
        raise ConfigError(f"{where}: keys are 'user:NAME' or 'group:NAME'")
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a dict of {', '.join(OVERRIDABLE)}")
    problems = Problems()
    for unknown in sorted(set(values) - set(OVERRIDABLE), key=str):
        close = difflib.get_close_matches(str(unknown), OVERRIDABLE, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"can override: {', '.join(OVERRIDABLE)}"
        problems.append(f"{where}: unknown field {unknown!r}; {hint}")
    item: dict[str, Any] = {}
    for name, field_name in (
        ("user_limits", "limits"),
        ("completion_user_limits", "completion_limits"),
    ):
        if name in values:
            rates = problems.run(
                partial(parse_rates, values[name], where=f"{where}[{name!r}]"), None
            )
            if rates is not None:
                item[field_name] = rates
    for name, field_name in (
        ("user_concurrency", "concurrency"),
        ("completion_user_concurrency", "completion_concurrency"),
    ):
        if name in values:
            c = values[name]
            if not isinstance(c, int) or isinstance(c, bool) or c < 0:
                problems.append(f"{where}[{name!r}]: expected an integer >= 0, got {c!r}")
            else:
                item[field_name] = c
    if "user_daily_budget_usd" in values:
        budget = partial(
            parse_budget_usd,
            values["user_daily_budget_usd"],
            where=f"{where}['user_daily_budget_usd']",
        )
        item["daily_budget_usd"] = problems.run(budget, None)
    if "models" in values:
        m = values["models"]
        if isinstance(m, str):
            m = [m]
        if not isinstance(m, (list, tuple)) or not all(isinstance(x, str) and x for x in m):
            problems.append(
                f"{where}['models']: expected a list of model names or patterns like "
                f"'llama-3.1-8b*', got {m!r}"
            )
        else:
            item["models"] = tuple(m)
    for switch, what in (
        ("agent", "agent mode and MCP tools"),
        ("completions", "inline completions"),
    ):
        if switch in values:
            if isinstance(values[switch], bool):
                item[switch] = values[switch]
            else:
                problems.append(f"{where}[{switch!r}]: true ({what} on) or false (off)")
    for name in ("default_model", "sql_default_model"):
        if name in values:
            d = values[name]
            if not isinstance(d, str) or not d:
                problems.append(f"{where}[{name!r}]: expected a model name, got {d!r}")
            elif "models" in item and not matches(item["models"], d):
                problems.append(
                    f"{where}[{name!r}]: {d!r} is not among its own 'models' {list(item['models'])}"
                )
            else:
                item[name] = d
    problems.refuse()
    return item
