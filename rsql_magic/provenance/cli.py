"""``rsql-provenance NOTEBOOK.ipynb ...``: which cells the assistant wrote, and whether the
proxy served what their marks say (issue 75).

Lists each notebook's cells marked ``rsql.provenance`` (:mod:`.marks`) and the share of its
code lines that are still as the assistant wrote them, as text or ``--json``. With ``--check``
it asks the proxy what it served for each mark's request id (``POST {proxy}course/requests``,
:mod:`.checking`): an instructor of the students' course, or an admin, tells an honest mark
from a made-up, copied or edited one. The proxy is ``--url``, else ``RSQL_PROXY_URL``, else the
Jupyter server a kernel of this user runs under; the token comes from ``--token-file``,
``RSQL_PROXY_TOKEN`` or ``JUPYTERHUB_API_TOKEN`` (never the command line, where ``ps`` shows
it). Every value from a notebook or the proxy is printed through :func:`shown`: a terminal is
shown its control sequences, it does not obey them.

Exit codes: 0 done (and, with ``--check``, no problem found), 1 a problem found, 2 a bad
input, 3 the proxy is unreachable, 4 the token was refused, 5 not allowed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rsql_common.terminal import shown

from ..client import ProxyClient
from ..discovery import find_local_server
from ..errors import ProvenanceError, ProxyError
from .checking import CellCheck, Served, check_cell, expected_hash, expected_user, read_served
from .marks import MarkedCell, NotebookMarks, read_notebook

__all__ = ["main"]

OK, PROBLEMS, USAGE, UNREACHABLE, UNAUTHORIZED, FORBIDDEN = 0, 1, 2, 3, 4, 5
_BATCH = 500  # request ids per POST


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsql-provenance",
        description="List the cells the assistant wrote in notebooks and the share of their "
        "code it wrote; with --check, ask the proxy whether it served what each mark says.",
        epilog="exit codes: 0 ok, 1 a problem found, 2 bad input, 3 proxy unreachable, "
        "4 token refused (401), 5 not allowed (403). The token comes from $RSQL_PROXY_TOKEN, "
        "$JUPYTERHUB_API_TOKEN or --token-file.",
    )
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="a .ipynb file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--check", action="store_true", help="check each mark's request at the proxy")
    p.add_argument("--user", default=None, help="the student the notebook is from (--check)")
    p.add_argument(
        "--notebook-name",
        default=None,
        help="the notebook's name as the student's server had it (default: the file's name)",
    )
    p.add_argument("--url", default=None, help="the proxy's root (default: $RSQL_PROXY_URL)")
    p.add_argument("--token-file", default=None, help="a file holding the token (first line)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per proxy call")
    return p


def _client(args: argparse.Namespace, env: dict[str, str]) -> ProxyClient:
    token = env.get("RSQL_PROXY_TOKEN") or env.get("JUPYTERHUB_API_TOKEN") or None
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.readline().strip() or None
        except OSError as e:
            raise ProvenanceError(f"--token-file {args.token_file}: {e.strerror}", USAGE) from None
    url = args.url or env.get("RSQL_PROXY_URL", "").strip() or None
    if url is None:
        server = find_local_server()
        if server is None:
            raise ProvenanceError(
                "--check needs the proxy: give --url (the proxy's root, e.g. "
                "https://hub.example.org/services/rsql/) or set RSQL_PROXY_URL",
                USAGE,
            )
        url, token = server["url"].rstrip("/") + "/rsql/", token or server.get("token")
    return ProxyClient(url, token, timeout=args.timeout, description=url)


def _ask(client: ProxyClient, ids: list[str]) -> dict[str, Served | None]:
    served: dict[str, Served | None] = {}
    for at in range(0, len(ids), _BATCH):
        part = ids[at : at + _BATCH]
        try:
            served.update(read_served(client.course_requests(part), part))
        except ProxyError as e:
            raise _failure(e, client) from None
    return served


def _failure(e: ProxyError, client: ProxyClient) -> ProvenanceError:
    if e.status == 0:
        return ProvenanceError(f"cannot reach the proxy at {client.description}: {e}", UNREACHABLE)
    if e.status == 401:
        return ProvenanceError(
            f"401: the token was not accepted ({e.message}); set RSQL_PROXY_TOKEN or "
            "JUPYTERHUB_API_TOKEN, or pass --token-file",
            UNAUTHORIZED,
        )
    if e.status == 403:
        return ProvenanceError(
            f"403: {e.message}. Checking marks takes an rsql admin, or an instructor of the "
            "students' course (c.RSQLProxy.course_logs)",
            FORBIDDEN,
        )
    if e.status == 404:
        return ProvenanceError(
            "this proxy has no course/requests endpoint (an older proxy, or the in-process "
            "engine): marks cannot be checked here",
            PROBLEMS,
        )
    return ProvenanceError(f"the proxy failed: {e}", PROBLEMS)


def _cell_json(cell: MarkedCell, check: CellCheck | None) -> dict[str, Any]:
    first = cell.mark.contributions[0] if cell.mark.contributions else None
    out: dict[str, Any] = {
        "index": cell.index,
        "number": cell.number,
        "id": cell.cell_id,
        "kind": first.kind if first else None,
        "model": first.model if first else None,
        "request_id": first.request_id if first else None,
        "time": first.time if first else None,
        "lines": cell.lines,
        "assistant_lines": cell.assistant_lines,
        "recorded": {
            "lines": cell.mark.recorded_lines,
            "assistant_lines": cell.mark.recorded_assistant_lines,
        },
        "contributions": [
            {"kind": c.kind, "model": c.model, "request_id": c.request_id, "time": c.time}
            for c in cell.mark.contributions
        ],
    }
    if check is not None:
        out["check"] = {
            "ok": not check.all_problems,
            "problems": check.all_problems,
            "notes": [*check.notes, *(n for v in check.verdicts for n in v.notes)],
            "served": [v.served.to_json() if v.served else None for v in check.verdicts],
        }
    return out


def _notebook_json(marks: NotebookMarks, checks: list[CellCheck] | None) -> dict[str, Any]:
    by_index = {c.cell.index: c for c in checks or []}
    return {
        "notebook": marks.path,
        "code_cells": marks.code_cells,
        "assisted_cells": len(marks.cells),
        "code_lines": marks.code_lines,
        "assistant_lines": marks.assistant_lines,
        "share": round(marks.share, 4),
        "cells": [_cell_json(c, by_index.get(c.index)) for c in marks.cells],
    }


def _print_text(marks: NotebookMarks, checks: list[CellCheck] | None, out: TextIO) -> None:
    out.write(
        shown(
            f"{marks.path}: {len(marks.cells)} of {marks.code_cells} code cells assisted; "
            f"{marks.assistant_lines} of {marks.code_lines} code lines ({marks.share:.0%}) as "
            "the assistant wrote them\n"
        )
    )
    by_index = {c.cell.index: c for c in checks or []}
    for cell in marks.cells:
        first = cell.mark.contributions[0] if cell.mark.contributions else None
        more = len(cell.mark.contributions) - 1
        line = (
            f"  cell {cell.number:<3} {(first.kind if first else '?'):<8} "
            f"{(first.model if first and first.model else '-'):<20} "
            f"{cell.assistant_lines} of {cell.lines} lines  "
            f"{(first.time if first and first.time else '-'):<24} "
            f"request {(first.request_id if first and first.request_id else '-')}"
            + (f" (+{more} more)" if more > 0 else "")
        )
        out.write(shown(line) + "\n")
        check = by_index.get(cell.index)
        if check is None:
            continue
        served = [v.served for v in check.verdicts if v.served is not None]
        for problem in check.all_problems:
            out.write(shown(f"      PROBLEM: {problem}") + "\n")
        for note in [*check.notes, *(n for v in check.verdicts for n in v.notes)]:
            out.write(shown(f"      note: {note}") + "\n")
        if not check.all_problems and served:
            s = served[0]
            out.write(
                shown(f"      ok: served to {s.user} for {s.notebook or '?'} at {s.time or '?'}")
                + "\n"
            )


def _checks(
    marks: NotebookMarks, served: dict[str, Served | None], args: argparse.Namespace
) -> list[CellCheck]:
    ids = [c.request_id for m in marks.cells for c in m.mark.contributions if c.request_id]
    mine = {rid: served.get(rid) for rid in ids}
    user = expected_user(mine, args.user)
    notebook = args.notebook_name or os.path.basename(marks.path)
    hashed = expected_hash(mine)
    return [check_cell(c, mine, user=user, notebook=notebook, hashed=hashed) for c in marks.cells]


def run(args: argparse.Namespace, env: dict[str, str], out: TextIO) -> int:
    """The command for parsed `args`; its exit code. Raises ProvenanceError."""
    notebooks = [read_notebook(path) for path in args.notebooks]
    served: dict[str, Served | None] = {}
    if args.check:
        ids = sorted(
            {
                c.request_id
                for nb in notebooks
                for m in nb.cells
                for c in m.mark.contributions
                if c.request_id
            }
        )
        if ids:
            served = _ask(_client(args, env), ids)
    reports = [(nb, _checks(nb, served, args) if args.check else None) for nb in notebooks]
    if args.json:
        body: Any = [_notebook_json(nb, checks) for nb, checks in reports]
        text = json.dumps(body[0] if len(body) == 1 else body, indent=2, ensure_ascii=True)
        out.write(text.replace("\x7f", "\\u007f") + "\n")
    else:
        for nb, checks in reports:
            _print_text(nb, checks, out)
    found = any(c.all_problems for _, checks in reports for c in checks or [])
    return PROBLEMS if found else OK


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args, dict(os.environ) if env is None else env, sys.stdout)
    except ProvenanceError as e:
        print(shown(f"rsql-provenance: {e.message}"), file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
