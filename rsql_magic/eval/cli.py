"""``rsql-eval``: score models on your own questions, through the proxy, as %%sql_ai asks them.

    rsql-eval QUESTIONS.jsonl --db URL_OR_FILE --model M [--model M2] [--json OUT]
              [--report OUT.md|OUT.html] [--chain M1,M2] [--max-retries N] [--limit N]
              [--record FILE | --replay FILE] [--no-cache] [--postgres-role ROLE]
              [--agent [both]] [--agent-max-steps N]

Exit status: 0 when the run finished (whatever the scores), 2 for a bad input (the message
alone, no traceback), 130 when interrupted. Everything printed goes through
:func:`rsql_common.terminal.shown`: questions, SQL and errors may hold terminal controls.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from rsql_common.terminal import shown
from rsql_magic.errors import EvalInputError, UsageError

from .questions import load_questions
from .report import to_html, to_json, to_markdown, to_terminal
from .runner import evaluate

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rsql-eval",
        description="Score models on your own questions: each question goes through "
        "%%sql_ai's loop (checked, read-only SQL, errors fed back) via the proxy at "
        "RSQL_PROXY_URL (token: RSQL_PROXY_TOKEN), and its rows are compared with the gold "
        "query's.",
    )
    p.add_argument(
        "questions",
        help="questions file: JSON lines (.jsonl) or YAML (.yaml), each "
        '{"question": ..., "gold_sql": ...} or {"question": ..., "expected": [[...]]}',
    )
    p.add_argument("--db", required=True, help="a SQLAlchemy URL, or a SQLite or DuckDB file")
    p.add_argument(
        "--model", action="append", default=[], help="a model to score (repeat for more)"
    )
    p.add_argument(
        "--chain",
        action="append",
        default=[],
        metavar="M1,M2",
        help="an escalation chain, cheapest first: the next model is asked only when "
        "the SQL still fails after the retries; its models are also scored alone",
    )
    p.add_argument("--max-retries", type=int, default=3, help="retries with the error fed back (3)")
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="the first N questions only"
    )
    p.add_argument("--json", default=None, metavar="OUT", help="write every result as JSON")
    p.add_argument("--report", default=None, metavar="OUT", help="write a report: .md or .html")
    rec = p.add_mutually_exclusive_group()
    rec.add_argument(
        "--record",
        default=None,
        metavar="FILE",
        help="record every model answer in FILE, to --replay later",
    )
    rec.add_argument(
        "--replay",
        default=None,
        metavar="FILE",
        help="score the answers recorded in FILE again, calling no model",
    )
    p.add_argument("--no-cache", action="store_true", help="bypass the proxy's answer cache")
    p.add_argument(
        "--postgres-role",
        default=None,
        metavar="ROLE",
        help="PostgreSQL: run model and gold SQL as this role (SET LOCAL ROLE), one "
        "without superuser rights that can SELECT the tables",
    )
    p.add_argument(
        "--agent",
        nargs="?",
        const="only",
        default="off",
        metavar="both",
        help="agent mode: each question answered by one agent turn with search_schema, "
        "describe_table and run_sql over the database, its final SQL checked, run and "
        "scored as the others; --agent both: each question both ways, side by side",
    )
    p.add_argument(
        "--agent-max-steps",
        type=_whole,
        default=None,
        metavar="N",
        help="agent mode: requests to the model in one turn at most (8)",
    )
    return p


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _write_private(path: str, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (a report quotes database values),
    never through a symbolic link planted under that name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        raise EvalInputError(f"{path}: cannot be written: {e.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
        f.write(text)


def _progress(label: str, done: int, total: int) -> None:
    end = "\n" if done == total else ""
    sys.stderr.write(shown(f"\r{label}: {done}/{total}") + end)
    sys.stderr.flush()


def _chains(specs: list[str]) -> list[list[str]]:
    out = []
    for spec in specs:
        models = [m.strip() for m in spec.split(",") if m.strip()]
        if len(models) < 2:
            raise EvalInputError(f"--chain {spec}: name two models or more, cheapest first (M1,M2)")
        out.append(models)
    return out


def run(args: argparse.Namespace) -> int:
    """One run of the command, from parsed arguments."""
    if args.report and Path(args.report).suffix.lower() not in (".md", ".html", ".htm"):
        raise EvalInputError(f"--report {args.report}: the name must end in .md or .html")
    chains = _chains(args.chain)
    if args.agent_max_steps is not None and args.agent == "off":
        raise EvalInputError("--agent-max-steps goes with --agent (or --agent both)")
    questions = load_questions(args.questions)
    report = evaluate(
        questions,
        args.db,
        args.model,
        chains=chains,
        max_retries=args.max_retries,
        limit=args.limit,
        record=args.record,
        replay=args.replay,
        no_cache=args.no_cache,
        postgres_role=args.postgres_role,
        agent=args.agent,
        agent_max_steps=8 if args.agent_max_steps is None else args.agent_max_steps,
        progress=_progress if sys.stderr.isatty() else None,
    )
    for qid, why in report.gold_errors.items():
        print(shown(f"rsql-eval: question {qid}: {why}"), file=sys.stderr)
    for m in report.models:
        errors = [r for r in report.results if r.model == m.model and r.outcome == "error"]
        if errors:  # not scored: say why, once per model
            first = " ".join((errors[0].error or "?").strip().splitlines()[:2])
            print(
                shown(
                    f"rsql-eval: {m.model}: {len(errors)} question(s) not scored, no answer "
                    f"came; the first: {first}"
                ),
                file=sys.stderr,
            )
    print(shown(to_terminal(report)))
    if args.json:
        _write_private(args.json, to_json(report))
    if args.report:
        html = Path(args.report).suffix.lower() in (".html", ".htm")
        _write_private(args.report, to_html(report) if html else to_markdown(report))
    return 0


def _warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    # a warning (a superuser connection) is a line of ours, not a source location
    return shown(f"rsql-eval: warning: {message}") + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # for this run only: called from Python (a test, a notebook), the caller's later warnings
    # keep their own form
    previous, warnings.formatwarning = warnings.formatwarning, _warning
    try:
        return run(args)
    except (EvalInputError, UsageError) as e:  # UsageError: a replay file that is a link
        print(shown(f"rsql-eval: {e}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rsql-eval: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = previous


if __name__ == "__main__":
    sys.exit(main())
