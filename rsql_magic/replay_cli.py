"""``rsql-replay`` (``python -m rsql_magic.replay_cli``): list, show and prune the answers a
replay file holds. Every recorded field is printed through ``shown``: the file may come from
anyone, and a terminal must not obey what it says."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from rsql_common.terminal import shown

from .errors import UsageError
from .replay import DEFAULT_FILE, ReplayStore, resolve_path, short_text

# argparse's own code for a usage error; a replay file that is missing or unreadable is one too
EXIT_USAGE = 2
_FILE_HELP = f"replay file (default: $RSQL_REPLAY_FILE, else ./{DEFAULT_FILE})"


def _file_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--file", default=default, metavar="FILE", help=_FILE_HELP)


def main(argv: list[str] | None = None) -> int:
    """``rsql-replay list|show|prune``: look after a replay file. Exits 0 when done, 1 when
    ``show`` finds nothing, 2 on a usage error or a replay file that is missing, cannot be read
    or is refused (a link, not a regular file)."""
    p = argparse.ArgumentParser(
        prog="rsql-replay",
        description="List, show and prune the answers recorded for reproducible notebooks.",
    )
    _file_option(p, None)
    sub = p.add_subparsers(dest="cmd", required=True)
    # --file goes before or after the command (SUPPRESS: one given after does not reset one
    # given before)
    ls = sub.add_parser("list", help="one line per answer (the last per fingerprint)")
    show = sub.add_parser("show", help="entries whose fingerprint starts with PREFIX, as JSON")
    show.add_argument("prefix")
    prune = sub.add_parser("prune", help="drop superseded, old or surplus entries")
    prune.add_argument("--older-than", type=float, default=None, metavar="DAYS")
    prune.add_argument("--keep-last", type=int, default=None, metavar="N")
    prune.add_argument("--dry-run", action="store_true")
    for command in (ls, show, prune):
        _file_option(command, argparse.SUPPRESS)
    args = p.parse_args(argv)
    store = ReplayStore(resolve_path(args.file))
    # lexists: a link is the store's to refuse (it says why), not "missing"
    if not os.path.lexists(store.path):
        print(
            shown(
                f"rsql-replay: no replay file at {store.path} ({_named_by(args.file)}); name "
                "an existing one with --file FILE"
            ),
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        return _command(store, args)
    except UsageError as exc:  # the file is a link, a folder, a device: refused, named
        print(f"rsql-replay: {shown(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # no permission to read it, a folder opened to write, an I/O error
        print(
            shown(f"rsql-replay: cannot read the replay file {store.path}: {exc.strerror or exc}"),
            file=sys.stderr,
        )
        return EXIT_USAGE


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
        print(shown(f"{_count(len(latest), 'answer')} in {store.path}"), file=sys.stderr)
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


def _named_by(file: str | None) -> str:
    """Where the path came from, so a user knows what to change."""
    if file:
        return "--file"
    return "RSQL_REPLAY_FILE" if os.environ.get("RSQL_REPLAY_FILE") else "the default"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{'no' if n == 0 else n} {noun}s"


if __name__ == "__main__":
    sys.exit(main())
