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
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from rsql_common.terminal import ShownStream, shown

from .engine.errors import CLIError

# exit codes: 2 is argparse's own for a wrong command line
OK, FAILED, USAGE, UNREACHABLE, UNAUTHORIZED, FORBIDDEN = 0, 1, 2, 3, 4, 5
DEFAULT_URL = "http://127.0.0.1:10101/"


class Client:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.token = token
        self.timeout = timeout

    def call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", "User-Agent": "rsql-proxy-admin"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raise self._http_error(err) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CLIError(
                f"cannot reach the proxy at {self.url} ({reason}); is it running? "
                "Set --url or $RSQL_PROXY_URL",
                UNREACHABLE,
            ) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise CLIError(
                f"the proxy at {self.url} answered {path} with something that is not JSON; "
                "is --url the proxy's root (e.g. http://127.0.0.1:10101/ or .../rsql/)?",
                FAILED,
            ) from None

    def _http_error(self, err: urllib.error.HTTPError) -> CLIError:
        try:
            message = json.loads(err.read())["error"]["message"]
        except (ValueError, KeyError, TypeError, OSError):
            message = err.reason
        if err.code == 401:
            hint = (
                "no token given: set $RSQL_PROXY_TOKEN (or $JUPYTERHUB_API_TOKEN) or pass --token-file"
                if not self.token
                else "the token was not accepted"
            )
            return CLIError(f"401 Unauthorized: {hint} ({message})", UNAUTHORIZED)
        if err.code == 403:
            return CLIError(
                f"403 Forbidden: {message}. The token's user must be an rsql admin "
                "(c.RSQLProxy.admin_users / admin_groups, or a hub admin)",
                FORBIDDEN,
            )
        return CLIError(f"HTTP {err.code}: {message}", FAILED)


# -- tables ------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    # escaped here, before the widths are measured, so a hostile name keeps the columns aligned
    return shown(str(value).replace("\n", " ").replace("\t", " "))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], out: TextIO) -> None:
    """Aligned columns: (key, heading) pairs; numbers right-aligned."""
    if not rows:
        out.write("(none)\n")
        return
    cells = [[_cell(r.get(key)) for key, _ in columns] for r in rows]

    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    # a column of numbers (and blanks) is right-aligned; a column of blanks alone is not
    numeric = [
        all(is_number(r.get(key)) or r.get(key) is None for r in rows)
        and any(is_number(r.get(key)) for r in rows)
        for key, _ in columns
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip() + "\n"

    out.write(line([h.upper() for _, h in columns]))
    for c in cells:
        out.write(line(c))


def pairs(items: Sequence[tuple[str, Any]], out: TextIO) -> None:
    width = max(len(k) for k, _ in items)
    for k, v in items:
        out.write(f"{k.ljust(width)}  {_cell(v)}\n")


def _when(ts: Any) -> str:
    if isinstance(ts, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return _cell(ts)


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
                f"{_cell(lat.get('p50'))} / {_cell(lat.get('p95'))} / {_cell(lat.get('p99'))}",
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
            "when": _when(r.get("ts")),
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


def _window_rows(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


_WINDOW_COLUMNS = [
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
        out.write(f"times in UTC; local: {_cell(data.get('timezone'))}\n")
        table(_window_rows(data.get("windows") or []), _WINDOW_COLUMNS, out)
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
    data = c.call("POST", "admin/windows", body)
    if a.json:
        return data
    w = data.get("window") or {}
    out.write(
        f"started window {a.name!r} ({a.mode}) until {_cell(w.get('ends_at'))} "
        f"({_cell(w.get('ends_at_local'))})\n"
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
            "last": _when(r.get("last_ts")),
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
    start.add_argument("--mode", required=True, choices=("off", "local-only", "custom"))
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
    acts.add_parser("list", help="every window and whether it is in force")
    end = acts.add_parser("end", help="end a window now")
    end.add_argument("name", metavar="NAME")
    for action in (start, *(acts.choices[n] for n in ("list", "end"))):
        action.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
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
