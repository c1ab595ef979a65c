"""The HTTP client of ``rsql-proxy admin`` and its tables: a plain urllib client of the proxy's
admin API, with the exit codes a script can test, and the aligned columns every command prints.
Every value printed came from a hub user or a provider, so a terminal is shown its control
sequences rather than made to obey them (:mod:`rsql_common.terminal`).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, TextIO

from rsql_common.terminal import shown

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


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value else "0"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items()) or "-"
    # escaped here, before the widths are measured, so a hostile name keeps the columns aligned
    return shown(str(value).replace("\n", " ").replace("\t", " "))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], out: TextIO) -> None:
    """Aligned columns: (key, heading) pairs; numbers right-aligned."""
    if not rows:
        out.write("(none)\n")
        return
    cells = [[cell(r.get(key)) for key, _ in columns] for r in rows]

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
        out.write(f"{k.ljust(width)}  {cell(v)}\n")


def when(ts: Any) -> str:
    if isinstance(ts, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return cell(ts)
