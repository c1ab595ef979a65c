"""``rsql-proxy admin ...``: the admin endpoints of a running proxy, as tables in a terminal.

A plain HTTP client (urllib) of the proxy's admin API, for an admin on ssh: the same answers
as the dashboard, with exit codes a script can test. The token is read from the environment
or a file, never from the command line, where every user of the machine would see it in ``ps``.
Every value it prints came from a hub user or a provider, so a terminal is shown its control
sequences rather than made to obey them (:mod:`rsql_common.terminal`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from rsql_common.terminal import ShownStream

from .admin_client import (
    DEFAULT_URL,
    OK,
    USAGE,
    Client,
    cell,
    pairs,
    table,
    when,
)
from .admin_client import FAILED as FAILED  # the exit codes, which scripts and tests read here
from .admin_client import FORBIDDEN as FORBIDDEN
from .admin_client import UNAUTHORIZED as UNAUTHORIZED
from .admin_client import UNREACHABLE as UNREACHABLE
from .admin_windows import add_window_command
from .engine.errors import CLIError

# -- commands ------------------------------------------------------------------------------


def cmd_status(c: Client, a: argparse.Namespace, out: TextIO) -> Any:
    data = c.call("GET", "status")
    if a.json:
        return data
    ups = data.get("upstreams", {})
    pairs(
        [
            ("status", data.get("status")),
            ("upstreams", ", ".join(f"{n} {k}" for k, n in ups.items() if n) or "none"),
            ("models", data.get("models")),
            (
                "state",
                f"{data['state']['backend']} ({'reachable' if data['state']['reachable'] else 'UNREACHABLE'})",
            ),
            ("database", data.get("database", {}).get("backend") or "-"),
            ("database reachable", data.get("database", {}).get("reachable")),
        ],
        out,
    )
    return None


def cmd_stats(c: Client, a: argparse.Namespace, out: TextIO) -> Any:
    data = c.call("GET", "admin/stats", query={"hours": a.hours})
    if a.json:
        return data
    lat = data.get("latency_ms") or {}
    pairs(
        [
            ("hours", data.get("hours")),
            ("requests", data.get("requests")),
            ("succeeded", data.get("succeeded")),
            ("success rate", data.get("success_rate")),
            (
                "latency p50/p95/p99 ms",
                f"{cell(lat.get('p50'))} / {cell(lat.get('p95'))} / {cell(lat.get('p99'))}",
            ),
            ("tokens", (data.get("tokens") or {}).get("total")),
            ("cost USD", data.get("cost_usd")),
            ("cache hit rate", data.get("cache_hit_rate")),
            *_cache_pairs(data.get("prompt_cache") or {}),
        ],
        out,
    )
    out.write("\n")
    table(_cached(data.get("by_model") or []), [("model", "model"), *_SPEND], out)
    return None


_SPEND = [
    ("requests", "requests"),
    ("errors", "errors"),
    ("tokens", "tokens"),
    ("cost_usd", "cost usd"),
    ("hit_ratio", "prompt cache"),
    ("saved_usd", "saved usd"),
]


def _cache_pairs(cache: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("prompt cache hit ratio", cache.get("hit_ratio")),
        ("prompt cache saved USD", cache.get("saved_usd")),
    ]


def _cached(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their prompt cache's share of prompts and dollars saved as columns."""
    return [{**r, **(r.get("prompt_cache") or {})} for r in rows]


def cmd_users(c: Client, a: argparse.Namespace, out: TextIO) -> Any:
    data = c.call("GET", "admin/stats", query={"hours": a.hours})
    users = data.get("by_user") or []
    if a.json:
        return {"hours": data.get("hours"), "users": users}
    table(_cached(users), [("user", "user"), *_SPEND], out)
    return None


_ROW_COLUMNS = [
    ("when", "time"),
    ("user", "user"),
    ("model", "model"),
    ("upstream", "upstream"),
    ("status", "status"),
    ("error", "error"),
    ("tokens", "tokens"),
    ("cost_usd", "cost usd"),
    ("latency_ms", "ms"),
]


def _rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **r,
            "when": when(r.get("ts")),
            "tokens": (r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0),
        }
        for r in rows
    ]


def cmd_errors(c: Client, a: argparse.Namespace, out: TextIO) -> Any:
    data = c.call("GET", "admin/errors", query={"limit": a.limit})
    if a.json:
        return data
    table(_rows(data.get("errors") or []), _ROW_COLUMNS, out)
    return None


def cmd_activity(c: Client, a: argparse.Namespace, out: TextIO) -> Any:
    user = urllib.parse.quote(a.user, safe="")
    data = c.call("GET", f"admin/users/{user}/activity", query={"limit": a.limit})
    if a.json:
        return data
    table(_rows(data.get("activity") or []), [col for col in _ROW_COLUMNS if col[0] != "user"], out)
    return None


def cmd_keys(c: Client, a: argparse.Namespace, out: TextIO) -> Any:
    data = c.call("GET", "admin/upstreams")
    if a.json:
        return data
    rows = [
        {
            **u,
            "breaker": (u.get("breaker") or {}).get("state"),
            "last_error": (u.get("recent_errors") or [{}])[-1].get("error"),
        }
        for u in data.get("upstreams") or []
    ]
    table(
        rows,
        [
            ("alias", "alias"),
            ("account", "account"),
            ("provider", "provider"),
            ("state", "state"),
            ("breaker", "breaker"),
            ("in_flight", "in flight"),
            ("cooldown_until", "cooling until"),
            ("disabled_reason", "disabled because"),
            ("last_error", "last error"),
        ],
        out,
    )
    return None


def cmd_reset(c: Client, a: argparse.Namespace, out: TextIO) -> Any:
    if bool(a.all) == bool(a.user):
        raise CLIError("name one USER, or --all for everyone", USAGE)
    data = c.call("POST", "admin/reset-limits", {"all": True} if a.all else {"user": a.user})
    if a.json:
        return data
    out.write(
        f"reset the limits of {'every user' if a.all else repr(a.user)} ({data.get('entries', 0)} entries)\n"
    )
    return None


def cmd_health(c: Client, a: argparse.Namespace, out: TextIO) -> Any:
    data = c.call("POST", "admin/upstreams/health-check", {})
    if a.json:
        return data
    table(
        [{"alias": k, "state": v} for k, v in (data.get("upstreams") or {}).items()],
        [("alias", "alias"), ("state", "state")],
        out,
    )
    return None


def cmd_alerts(c: Client, a: argparse.Namespace, out: TextIO) -> Any:
    data = c.call("GET", "admin/alerts", query={"limit": a.limit})
    if a.json:
        return data
    table(
        data.get("alerts") or [],
        [("time", "time"), ("event", "event"), ("message", "message")],
        out,
    )
    return None


def cmd_notebooks(c: Client, a: argparse.Namespace, out: TextIO) -> Any:
    data = c.call(
        "GET", "admin/notebooks", query={"hours": a.hours, "user": a.user, "limit": a.limit}
    )
    if a.json:
        return data
    rows = [
        {
            **r,
            "tokens": (r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0),
            "last": when(r.get("last_ts")),
        }
        for r in _cached(data.get("notebooks") or [])
    ]
    table(
        rows,
        [
            ("notebook", "notebook"),
            ("user", "user"),
            ("requests", "requests"),
            ("tokens", "tokens"),
            ("cost_usd", "cost usd"),
            ("hit_ratio", "prompt cache"),
            ("saved_usd", "saved usd"),
            ("cells", "cells"),
            ("last", "last request"),
        ],
        out,
    )
    return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsql-proxy admin",
        description="Ask a running rsql proxy's admin API. The token comes from $RSQL_PROXY_TOKEN, "
        "else $JUPYTERHUB_API_TOKEN, or --token-file (never the command line: it shows in ps).",
        epilog="exit codes: 0 ok, 1 other error, 2 usage, 3 proxy unreachable, 4 bad token (401), "
        "5 not an admin (403)",
    )
    p.add_argument(
        "--url",
        default=None,
        help=f"the proxy's root, e.g. https://hub.example.org/services/rsql/ "
        f"(default: $RSQL_PROXY_URL, else {DEFAULT_URL})",
    )
    p.add_argument("--token-file", default=None, help="a file holding the token (its first line)")
    p.add_argument("--json", action="store_true", help="print the API's JSON instead of tables")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the proxy (30)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[..., Any], help: str, *also: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, aliases=also)
        sp.set_defaults(fn=fn)
        # the global options after the command too: `rsql-proxy admin keys --json`
        sp.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        sp.add_argument("--url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--token-file", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return sp

    add("status", cmd_status, "health of the proxy: upstreams, state backend, database")
    for name, fn, what, *also in (  # `admin usage`: what the prompt caches saw, per model too
        ("stats", cmd_stats, "requests, latency, tokens, cost, prompt cache per model", "usage"),
        ("users", cmd_users, "requests, errors, tokens, cost and prompt cache per user"),
    ):
        sp = add(name, fn, what, *also)
        sp.add_argument("--hours", type=float, default=24.0, help="how far back (24)")
    sp = add("errors", cmd_errors, "the most recent failed or refused requests")
    sp.add_argument("--limit", type=int, default=20)
    add("keys", cmd_keys, "every upstream key by alias: state, breaker, cooldown, why disabled")
    sp = add("activity", cmd_activity, "one user's most recent requests")
    sp.add_argument("user", metavar="USER")
    sp.add_argument("--limit", type=int, default=20)
    sp = add("reset-limits", cmd_reset, "reset one user's (or everyone's) windows and budget")
    sp.add_argument("user", metavar="USER", nargs="?")
    sp.add_argument("--all", action="store_true", help="every user")
    add(
        "health-check",
        cmd_health,
        "probe disabled keys now; a key the provider accepts is re-enabled",
    )
    sp = add("alerts", cmd_alerts, "the most recent alerts")
    sp.add_argument("--limit", type=int, default=20)
    sp = add("notebooks", cmd_notebooks, "requests, tokens and cost per notebook and user")
    sp.add_argument("--hours", type=float, default=24.0 * 7, help="how far back (168: a week)")
    sp.add_argument("--user", default=None, help="one user's notebooks only")
    sp.add_argument("--limit", type=int, default=200)
    add_window_command(add)
    return p


def _token(a: argparse.Namespace, env: dict[str, str]) -> str:
    if a.token_file:
        try:
            with open(a.token_file, encoding="utf-8") as f:
                return f.readline().strip()
        except OSError as exc:
            raise CLIError(f"--token-file {a.token_file}: {exc.strerror}", USAGE) from None
    return env.get("RSQL_PROXY_TOKEN") or env.get("JUPYTERHUB_API_TOKEN") or ""


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    env: dict[str, str] | None = None,
) -> int:
    shown_out = ShownStream(out or sys.stdout)
    shown_err = ShownStream(err or sys.stderr)
    env = dict(os.environ) if env is None else env
    args = parser().parse_args(argv)
    url = args.url or env.get("RSQL_PROXY_URL") or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        shown_err.write(f"rsql-proxy admin: --url must be an http(s) URL, got {url!r}\n")
        return USAGE
    try:
        client = Client(url, _token(args, env), timeout=args.timeout)
        result = args.fn(client, args, shown_out)
    except CLIError as exc:
        shown_err.write(f"rsql-proxy admin: {exc}\n")
        return exc.code
    if result is not None:
        # JSON escapes every control character but DEL, which a terminal also obeys
        shown_out.write(
            json.dumps(result, indent=2, sort_keys=True).replace("\x7f", "\\u007f") + "\n"
        )
    return OK


if __name__ == "__main__":
    raise SystemExit(main())
