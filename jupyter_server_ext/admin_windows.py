"""``rsql-proxy admin window``: policy windows started, listed and ended from a terminal
(``POST admin/windows``, ``GET admin/windows``, ``POST admin/windows/NAME/end``)."""

from __future__ import annotations

import argparse
import urllib.parse
from collections.abc import Callable
from typing import Any, TextIO

from .admin_client import USAGE, Client, cell, table
from .engine.errors import CLIError


def window_rows(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for w in windows:
        who = [*(w.get("groups") or []), *(f"user:{u}" for u in w.get("users") or [])]
        weekly = w.get("weekly") or {}
        when = (
            f"weekly {','.join(weekly.get('days') or [])} {weekly.get('start')}-{weekly.get('end')} "
            f"{weekly.get('timezone')}"
            if weekly
            else None
        )
        out.append(
            {
                **w,
                "who": ["everyone" if g == "*" else g for g in who],
                "when": when or f"{w.get('starts_at')} - {w.get('ends_at')}",
                "in_force": w.get("active"),
            }
        )
    return out


WINDOW_COLUMNS = [
    ("name", "name"),
    ("mode", "mode"),
    ("who", "groups / users"),
    ("in_force", "in force"),
    ("when", "when (UTC)"),
    ("ends_at_local", "ends (local)"),
    ("source", "source"),
    ("message", "message"),
]


def cmd_window(c: Client, a: argparse.Namespace, out: TextIO) -> Any:
    if a.action == "list":
        data = c.call("GET", "admin/windows")
        if a.json:
            return data
        out.write(f"times in UTC; local: {cell(data.get('timezone'))}\n")
        table(window_rows(data.get("windows") or []), WINDOW_COLUMNS, out)
        return None
    if a.action == "end":
        data = c.call("POST", f"admin/windows/{urllib.parse.quote(a.name, safe='')}/end", {})
        if a.json:
            return data
        until = (
            f" (until {data['until']}, when its current occurrence ends)"
            if data.get("until")
            else ""
        )
        out.write(f"ended window {a.name!r}{until}\n")
        return None
    if not (a.group or a.user):
        raise CLIError(
            "name who it applies to: --group G (--group '*' for everyone) and/or --user U", USAGE
        )
    if (a.minutes is None) == (a.end is None):
        raise CLIError("give --minutes M or --end TIME", USAGE)
    body: dict[str, Any] = {
        "name": a.name,
        "mode": a.mode,
        "message": a.message or "",
        "groups": a.group or [],
        "users": a.user or [],
    }
    for key, value in (("minutes", a.minutes), ("start", a.start), ("end", a.end)):
        if value is not None:
            body[key] = value
    if a.mode == "custom":
        if a.models:
            body["models"] = a.models
        if a.default_model:
            body["default_model"] = a.default_model
        if a.budget is not None:
            body["user_daily_budget_usd"] = a.budget
    elif a.models or a.default_model or a.budget is not None:
        raise CLIError("--model, --default-model and --budget are for --mode custom", USAGE)
    if a.instruction is not None:
        if a.mode != "tutor":
            raise CLIError("--instruction is for --mode tutor", USAGE)
        body["instruction"] = a.instruction
    for feature in ("agent", "completions"):
        if getattr(a, feature) is not None:
            body[feature] = getattr(a, feature) == "on"
    data = c.call("POST", "admin/windows", body)
    if a.json:
        return data
    w = data.get("window") or {}
    out.write(
        f"started window {a.name!r} ({a.mode}) until {cell(w.get('ends_at'))} "
        f"({cell(w.get('ends_at_local'))})\n"
    )
    return None


def add_window_command(
    add: Callable[[str, Callable[..., Any], str], argparse.ArgumentParser],
) -> None:
    """The ``window`` command and its actions, on `add` (``admin_cli.parser``'s)."""
    sp = add("window", cmd_window, "policy windows: start one now, list them, end one")
    acts = sp.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = acts.add_parser(
        "start",
        help="start a window (shared by every replica)",
        description="Start a policy window now (or at --start) for --minutes or until --end. "
        "Times are ISO 8601; without an offset they are read in the proxy's admin_timezone.",
    )
    start.add_argument("--name", required=True)
    start.add_argument(
        "--group", action="append", help="a group it applies to ('*': everyone); repeatable"
    )
    start.add_argument("--user", action="append", help="a user it applies to; repeatable")
    start.add_argument("--mode", required=True, choices=("off", "local-only", "custom", "tutor"))
    start.add_argument("--message", default="", help="what users are told while it is in force")
    start.add_argument("--minutes", type=float, default=None, help="how long from its start")
    start.add_argument("--start", default=None, help="when it starts (default: now)")
    start.add_argument("--end", default=None, help="when it ends, in place of --minutes")
    start.add_argument(
        "--model", dest="models", action="append", help="custom: a model (or pattern) allowed"
    )
    start.add_argument(
        "--default-model", default=None, help="custom: the default model in the window"
    )
    start.add_argument(
        "--budget", type=float, default=None, help="custom: each user's daily budget in USD"
    )
    start.add_argument(
        "--instruction",
        default=None,
        help="tutor: the tutoring instruction every request begins with (default: the proxy's)",
    )
    for feature, default in (("agent", "off in tutor mode, else on"), ("completions", "on")):
        start.add_argument(
            f"--{feature}",
            choices=("on", "off"),
            default=None,
            help=f"{feature} while it is in force ({default})",
        )
    acts.add_parser("list", help="every window and whether it is in force")
    end = acts.add_parser("end", help="end a window now")
    end.add_argument("name", metavar="NAME")
    for action in (start, *(acts.choices[n] for n in ("list", "end"))):
        action.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
