"""A tool call, whatever the tool box: the tools' definitions as the model sees them, the
model's arguments checked before anything runs, and the bounded result that goes back.

Both tool boxes stand on this: the kernel's (:mod:`.tools`) and the one over a single database
for rsql-eval (:mod:`.eval_tools`). A tool box names its tools in a table
``{name: (description, {argument: its description})}`` (every argument a required string) and
gives :func:`dispatch` the function of each (its handlers); the warehouse tools' names,
descriptions and functions come from one catalogue, :data:`rsql_sql.warehouse.CATALOGUE`
(:func:`warehouse_table`, :func:`warehouse_result`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rsql_magic.errors import BadCall, SqlAIError
from rsql_magic.sanitize import plain_text

if TYPE_CHECKING:
    from rsql_sql.connections import DB
    from rsql_sql.warehouse import SqlToolResult

__all__ = [
    "BadCall",
    "ToolResult",
    "check_arguments",
    "dispatch",
    "fit",
    "function_specs",
    "warehouse_result",
    "warehouse_table",
]

Table = Mapping[str, tuple[str, Mapping[str, str]]]

SUMMARY_CHARS = 120
# the longest value each argument may have: a name is short, SQL and code are not
ARG_LIMITS = {
    "name": 200,
    "connection": 200,
    "table": 200,
    "question": 2000,
    "sql": 20_000,
    "code": 20_000,
    "language": 20,
}
MAX_ARGUMENTS_CHARS = 50_000  # the arguments' JSON, before it is parsed


@dataclass(frozen=True)
class ToolResult:
    """What one tool call gives back."""

    text: str  # what goes back to the model: bounded, after the context policy and redaction
    summary: str  # one line for the step display, e.g. "12 rows × 4 columns" or "refused: writes"
    error: bool = False


def function_specs(
    tools: Table, enums: Mapping[str, Sequence[str]] | None = None
) -> list[dict[str, Any]]:
    """The tools as OpenAI function definitions; `enums`: the values an argument may take."""
    out = []
    for name, (description, params) in tools.items():
        props: dict[str, dict[str, Any]] = {
            p: {"type": "string", "description": d} for p, d in params.items()
        }
        for arg, values in (enums or {}).items():
            if arg in props:
                props[arg]["enum"] = list(values)
        schema: dict[str, Any] = dict(type="object", properties=props, required=list(params))
        schema["additionalProperties"] = False
        function = dict(name=name, description=description, parameters=schema)
        out.append({"type": "function", "function": function})
    return out


def check_arguments(params: Mapping[str, str], raw: str | dict[str, Any]) -> dict[str, str]:
    """The model's arguments (JSON text or a dict) for a tool taking `params`, each a string
    within its bound; BadCall naming what is wrong otherwise."""
    if isinstance(raw, str):
        if len(raw) > MAX_ARGUMENTS_CHARS:
            raise BadCall(f"the arguments are longer than {MAX_ARGUMENTS_CHARS:,} characters")
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            raise BadCall(f"the arguments are not valid JSON: {e}", "refused: bad JSON") from None
    if not isinstance(raw, dict):
        raise BadCall("the arguments must be a JSON object", "refused: bad arguments")
    unknown = [str(k)[:40] for k in raw if k not in params]
    if unknown:
        known = ", ".join(params) or "none"
        raise BadCall(f"unknown argument(s) {', '.join(unknown)}; this tool takes: {known}")
    missing = [p for p in params if p not in raw]
    if missing:
        raise BadCall(f"missing argument(s): {', '.join(missing)}")
    args: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise BadCall(f"argument {key} must be a string, not {type(value).__name__}")
        if len(value) > ARG_LIMITS[key]:
            raise BadCall(f"argument {key} is longer than {ARG_LIMITS[key]:,} characters")
        args[key] = value
    return args


def dispatch(
    handlers: Mapping[str, Callable[..., ToolResult]],
    tools: Table,
    name: str,
    arguments: str | dict[str, Any],
    max_chars: int,
) -> ToolResult:
    """Run tool `name` (its function in `handlers`) with the model's `arguments`. Never
    raises for what the model sent: a bad call, a refusal or the tool's own failure is an
    error result saying so, and every result is plain text within `max_chars` with a one-line
    summary."""
    try:
        if not isinstance(name, str) or name not in tools:
            shown = one_line(repr(name))[:60]
            raise BadCall(
                f"unknown tool {shown}: the tools are {', '.join(tools)}", "refused: unknown tool"
            )
        args = check_arguments(tools[name][1], arguments)
        result = handlers[name](**args)
    except BadCall as e:
        result = ToolResult(e.message, e.summary, True)
    except SqlAIError as e:
        result = ToolResult(e.message, "refused: " + e.message, True)
    except Exception as e:  # a tool's own failure goes back as text, like the others
        result = ToolResult(f"{name} failed: {type(e).__name__}: {e}", f"failed: {e}", True)
    return ToolResult(fit(result.text, max_chars), one_line(result.summary), result.error)


def fit(text: str, max_chars: int) -> str:
    """`text` as plain text within `max_chars`, cut at a line end (else a space): a value cut
    in two could slip past the proxy's pattern redaction."""
    text = plain_text(text)
    if len(text) <= max_chars:
        return text
    keep = text[: max(0, max_chars - 40)]
    cut = keep.rfind("\n")
    if cut < len(keep) // 2:
        cut = max(keep.rfind(" "), cut)
    keep = keep[:cut] if cut > 0 else ""
    return f"{keep}\n... (cut: {len(text) - len(keep):,} more characters)"


def one_line(text: str) -> str:
    line = " ".join(plain_text(text).split())
    return line if len(line) <= SUMMARY_CHARS else line[: SUMMARY_CHARS - 1] + "…"


def sql_result(res: SqlToolResult) -> ToolResult:
    """A warehouse ``run_sql`` result as a tool's result: the text for the model, and for the
    step's line the rows and columns, or why nothing ran (an error for the model to read)."""
    if res.refused:
        return ToolResult(res.text, "refused: " + str(res.refused), True)
    if res.error:
        return ToolResult(res.text, "failed: " + str(res.error), True)
    rows = f"{res.row_count:,}" if res.row_count is not None else f"{len(res.rows)}+"
    return ToolResult(res.text, f"{rows} rows × {len(res.columns)} columns")


def warehouse_table(*, connection: str | None = None) -> dict[str, tuple[str, dict[str, str]]]:
    """The warehouse tools of the catalogue as a tool box's table; `connection`: the
    description of a ``connection`` argument, put first, for a box holding many."""
    from rsql_sql.warehouse import CATALOGUE

    first = {"connection": connection} if connection is not None else {}
    return {n: (t.description, {**first, **dict(t.parameters)}) for n, t in CATALOGUE.items()}


def warehouse_result(
    name: str, db: DB, args: Mapping[str, str], out: str | SqlToolResult
) -> ToolResult:
    """What warehouse tool `name` gave for `args` (:data:`rsql_sql.warehouse.CATALOGUE`) as a
    tool's result, with the line the step display shows."""
    if not isinstance(out, str):
        return sql_result(out)
    if name == "describe_table":
        missing = out.startswith("Table '")
        return ToolResult(out, "no such table" if missing else f"table {args['table']}", missing)
    tables = sum(1 for ln in out.splitlines() if ln.lstrip().upper().startswith("CREATE "))
    return ToolResult(out, f"{tables} tables ({db.dialect or 'SQL'})")
