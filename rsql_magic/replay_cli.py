"""``rsql-replay`` (``python -m rsql_magic.replay_cli``): list, show and prune the answers a
replay file holds. Every recorded field is printed through ``shown``: the file may come from
anyone, and a terminal must not obey what it says."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from rsql_common.terminal import shown

from .errors import UsageError
from .replay import DEFAULT_FILE, ReplayStore, resolve_path, short_text


def main(argv: list[str] | None = None) -> int:
    """``rsql-replay list|show|prune``: look after a replay file."""
    p = argparse.ArgumentParser(
        prog="rsql-replay",
        description="List, show and prune the answers recorded for reproducible notebooks.",
    )
    p.add_argument(
        "--file",
        default=None,
        help=f"replay file (default: $RSQL_REPLAY_FILE, else ./{DEFAULT_FILE})",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="one line per answer (the last per fingerprint)")
    show = sub.add_parser("show", help="entries whose fingerprint starts with PREFIX, as JSON")
    show.add_argument("prefix")
    prune = sub.add_parser("prune", help="drop superseded, old or surplus entries")
    prune.add_argument("--older-than", type=float, default=None, metavar="DAYS")
    prune.add_argument("--keep-last", type=int, default=None, metavar="N")
    prune.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    store = ReplayStore(resolve_path(args.file))
    try:
        return _command(store, args)
    except UsageError as exc:
        print(f"rsql-replay: {shown(str(exc))}", file=sys.stderr)
        return 1


def _command(store: ReplayStore, args: argparse.Namespace) -> int:
    """One ``rsql-replay`` command; every recorded field is printed through ``shown``: the file
    may come from anyone."""
    if args.cmd == "list":
        latest = list(store.latest().values())
        for e in latest:
            print(
                shown(
                    f"{e.fp[:12]}  {e.recorded}  {e.kind or '?':5}  {e.model or '?':20}  "
                    f"{'FAILED' if e.failed else 'ok':6}  {short_text(e.cell, 40):40}  "
                    f"{short_text(e.question, 60)}"
                )
            )
        print(shown(f"{len(latest)} answer(s) in {store.path}"), file=sys.stderr)
        return 0
    if args.cmd == "show":
        hits = [e for e in store.latest().values() if e.fp.startswith(args.prefix.lower())]
        for e in hits:
            # ASCII JSON: every control and bidi mark escaped, but DEL, which JSON leaves as is
            print(json.dumps(asdict(e), indent=2, sort_keys=True).replace("\x7f", "\\u007f"))
        if not hits:
            print(shown(f"no entry starts with {args.prefix!r} in {store.path}"), file=sys.stderr)
            return 1
        return 0
    kept, removed = store.prune(
        older_than_days=args.older_than, keep_last=args.keep_last, dry_run=args.dry_run
    )
    verb = "would remove" if args.dry_run else "removed"
    print(shown(f"{verb} {removed} line(s); {kept} answer(s) kept in {store.path}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
