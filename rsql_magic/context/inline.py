"""What the kernel tells the editor's inline completions: names, columns and types, fast.

The JupyterLab / Notebook 7 extension asks a Python kernel, on every completion, with one silent
execute request whose ``user_expressions`` hold::

    __import__('rsql_magic.context.inline', fromlist=['frontend_context']).frontend_context(get_ipython())

:func:`frontend_context` returns an :class:`InlineContext`, whose ``_repr_json_`` puts the
object below under ``data["application/json"]`` of the expression's result::

    {"frames":    [{"name", "kind", "columns", "dtypes", "rows"}],   # pandas / polars DataFrames
     "r":         [{"name", "kind", "columns"}],                     # data.frames in R's globalenv
     "tables":    [{"connection", "name", "columns"}],               # local databases, captures
     "variables": [{"name", "type"} (+ "shape" for arrays and Series)],
     "truncated": bool,                                              # a bound was hit
     "ms":        float}                                             # time spent collecting

It runs on the kernel's main thread between the user's cells, so it is cheap and bounded:

- **Import**: this module imports the standard library only (and the package's two small
  collectors, :mod:`.frames` and :mod:`.rsession`, and its own two parts, :mod:`.inline_budget`
  and :mod:`.inline_tables`, which import nothing more). pandas, polars, numpy and rpy2 are
  read from ``sys.modules`` when the user has imported them, never imported.
- **Time**: a budget (``budget_ms``, default 15 ms) checked between items (a frame, a column
  label that is not a plain ``str``, every 32 plain ones, an R object, a table, a variable);
  when it is spent the collection stops and says ``truncated: true``.
- **Size**: at most 50 frames, 50 R data.frames, 100 tables, 50 variables, 200 columns per
  frame or table, names cut to 100 characters, and about 32 KB of JSON in all (variables,
  tables and R first, each within a share of it, then the frames with all that is left).
- **R**: only an R that is already running (rpy2 imported, R initialized); R is never started.
  One R call lists the data.frames' names and column names, under its own time limit.
- **Tables** (:mod:`.inline_tables`, which says how): the names of schemas ``%%sql_ai``
  captured (:func:`remember_schema`), and of the local databases the namespace holds (SQLite,
  DuckDB, file or memory), read by ``capture_schema`` (bounded, read-only) at most one new
  database per request, within half the time left, and remembered for ``CAPTURE_TTL_S``. A
  network database is never read from the editor, and sqlglot is never imported on its thread.
- **Hostile input**: column labels and names are user data; they are only turned into strings
  and put into JSON, never evaluated. A label whose ``__str__`` raises is skipped, and a slow
  one is caught by the time budget at the next check.

**The context policy.** Only names, types, row counts and shapes leave the kernel here, never a
value: no sample rows, no statistics, no category levels (a pandas ``category`` column is
``"category"``; a polars ``Enum``, whose type text would list its categories, is ``"Enum"``).
So the admin's policy (``sample_rows``, ``value_stats``, ``redact_columns``: a redacted column
keeps its name and type) and the user's own ``RSQLMagic.context_policy``, which can only
withhold more of the same, hold without being read: both let names, types and row counts go.
The proxy applies its pattern redaction to the prompt it builds from this, as to every request.
"""

from __future__ import annotations

import json
import sys
import time
import types
from collections.abc import Callable
from typing import Any

from .frames import frame_kind
from .inline_budget import MAX_COLUMNS, MAX_NAME, CollectionBudget, json_length
from .inline_tables import collect_tables, remember_schema
from .rsession import r_session_exists

__all__ = ["InlineContext", "frontend_context", "remember_schema"]

DEFAULT_BUDGET_MS = 15.0
MAX_BYTES = 32_000  # JSON characters, about
MAX_FRAMES = 50
MAX_R = 50
MAX_VARIABLES = 50
MAX_TYPE = 60  # characters of one dtype / type name
# (MAX_NAME and MAX_COLUMNS: .inline_budget; MAX_TABLES, CAPTURE_TTL_S: .inline_tables)
_CHECK_EVERY = 32  # plain str column labels between two looks at the clock

# IPython's own names (also skipped through ``shell.user_ns_hidden``)
_IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
_SKIP_TYPES = (
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    type,  # classes
)
# Variables, tables and R are collected first, each within its share of the size bound (what
# one does not use stays for the next); then the frames, which matter most, with all that is
# left (the answer lists them first). R's one call may use this share of the time left.
_VARIABLES_SHARE = 0.10
_TABLES_SHARE = 0.25
_R_SHARE = 0.20
_R_TIME_SHARE = 0.3


class InlineContext:
    """The kernel's answer to the editor: :meth:`_repr_json_` is what IPython sends."""

    __slots__ = ("data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def _repr_json_(self) -> dict[str, Any]:
        return self.data

    def __repr__(self) -> str:  # text/plain of the same answer: counts only, cheap
        d = self.data
        return (
            f"<rsql inline context: {len(d['frames'])} frames, {len(d['r'])} R, "
            f"{len(d['tables'])} tables, {len(d['variables'])} variables, {d['ms']} ms>"
        )


# -- the collection --------------------------------------------------------------------------


def _label(x: Any) -> str:
    """A column label as text: tuples (pandas MultiIndex) joined with dots; cut to MAX_NAME."""
    if type(x) is str:
        return x[:MAX_NAME]
    if isinstance(x, tuple):
        return ".".join(str(p)[:MAX_NAME] for p in x)[:MAX_NAME]
    s = str(x)
    if not isinstance(s, str):  # a __str__ returning another type would break the JSON
        raise TypeError("label text is not str")
    return s[:MAX_NAME]


def _dtype_text(dt: Any) -> str:
    """A dtype's name with no value in it: a polars ``Enum``'s text lists its categories (then
    its class name: ``Enum``, or ``List`` for a list of them), pandas' ``Sparse`` its fill value."""
    kind = type(dt).__name__
    if kind == "SparseDtype":
        return f"Sparse[{getattr(dt, 'subtype', '?')}]"[:MAX_TYPE]
    s = str(dt)
    if "Enum(" in s or "categories=" in s:
        return kind[:MAX_TYPE]
    return s[:MAX_TYPE]


def _dtype_cached(dt: Any, texts: dict[Any, str]) -> str:
    try:
        hit = texts.get(dt)
    except TypeError:  # an unhashable dtype
        return _dtype_text(dt)
    if hit is None:
        hit = texts[dt] = _dtype_text(dt)
    return hit


def _type_name(obj: Any) -> str:
    t = type(obj)
    mod = getattr(t, "__module__", "") or ""
    name = getattr(t, "__qualname__", "") or t.__name__
    if mod != "builtins":
        name = f"{mod.split('.', 1)[0]}.{name}"
    return str(name)[:MAX_TYPE]


def _frame_entry(name: str, obj: Any, kind: str, b: CollectionBudget) -> dict[str, Any] | None:
    """One frame's entry, its columns bounded by MAX_COLUMNS, the time and the section's size."""
    if kind == "pandas":
        labels = obj.columns
        total = len(labels)
        if total > MAX_COLUMNS:
            labels = labels[:MAX_COLUMNS]
            dtypes = list(obj.iloc[:0, :MAX_COLUMNS].dtypes)
            b.truncated = True
        else:
            dtypes = list(obj.dtypes)
        rows = len(obj.index)
        kind_text = "pandas.DataFrame"
    else:  # polars
        labels = obj.columns
        dtypes = obj.dtypes
        total = len(labels)
        if total > MAX_COLUMNS:
            labels, dtypes = labels[:MAX_COLUMNS], dtypes[:MAX_COLUMNS]
            b.truncated = True
        rows = obj.height
        kind_text = "polars.DataFrame"
    head = json_length(name) + json_length(kind_text) + len(str(rows)) + 60
    if not b.take(head):
        return None
    columns: list[str] = []
    types_out: list[str] = []
    texts: dict[Any, str] = {}
    for i, (label, dt) in enumerate(zip(labels, dtypes, strict=False)):
        # a label that is not a plain str runs user code (its __str__): look at the clock
        # before each of those, and every _CHECK_EVERY plain ones
        if (type(label) is not str or i % _CHECK_EVERY == _CHECK_EVERY - 1) and b.out_of_time():
            break
        try:
            col = _label(label)
            dtext = _dtype_cached(dt, texts)
        except Exception:  # a label (or dtype) that cannot be read as text: left out
            b.truncated = True
            continue
        if not b.take(json_length(col) + json_length(dtext)):
            break
        columns.append(col)
        types_out.append(dtext)
    return {"name": name, "kind": kind_text, "columns": columns, "dtypes": types_out, "rows": rows}


def _namespace(
    shell: Any, b: CollectionBudget
) -> tuple[list[tuple[str, Any, str]], list[tuple[str, Any]]]:
    """The user's frames (name, object, kind) and other variables, most recently defined first."""
    ns = getattr(shell, "user_ns", None)
    if not isinstance(ns, dict):
        return [], []
    hidden = getattr(shell, "user_ns_hidden", None)
    hidden = hidden if isinstance(hidden, dict) else {}
    frames: list[tuple[str, Any, str]] = []
    others: list[tuple[str, Any]] = []
    for i, (name, obj) in enumerate(reversed(list(ns.items()))):
        if i % 256 == 255 and b.out_of_time():
            break
        if type(name) is not str or name.startswith("_") or name in _IPYTHON_NAMES:
            continue
        try:
            if name in hidden and hidden[name] is obj:
                continue
            if isinstance(obj, _SKIP_TYPES):
                continue
            kind = frame_kind(obj)
        except Exception:
            continue
        if kind in ("pandas", "polars"):
            frames.append((name, obj, kind))
        else:
            others.append((name, obj))
    return frames, others


def _frames(found: list[tuple[str, Any, str]], b: CollectionBudget) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, obj, kind in found:
        if len(out) >= MAX_FRAMES:
            b.truncated = True
            break
        if b.out_of_time():
            break
        try:
            entry = _frame_entry(name[:MAX_NAME], obj, kind, b)
        except Exception:  # a frame that cannot be read (a broken subclass): left out
            b.truncated = True
            continue
        if entry is None:
            break
        out.append(entry)
    return out


def _variable(name: str, obj: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name[:MAX_NAME], "type": _type_name(obj)}
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.ndarray):
        entry["shape"] = [int(n) for n in obj.shape[:8]]
    elif entry["type"] in ("pandas.Series", "polars.Series"):
        entry["shape"] = [len(obj)]
    return entry


def _variables(found: list[tuple[str, Any]], b: CollectionBudget) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, obj in found:
        if len(out) >= MAX_VARIABLES:
            b.truncated = True
            break
        if b.out_of_time():
            break
        try:
            entry = _variable(name, obj)
        except Exception:
            b.truncated = True
            continue
        size = (
            json_length(entry["name"])
            + json_length(entry["type"])
            + 24
            + 8 * len(entry.get("shape", ()))
        )
        if not b.take(size):
            break
        out.append(entry)
    return out


# One R call: the data.frames of globalenv with their column names, as one character vector
# (a "1" first when it stopped early, then per frame: name, class, column count, columns).
R_LIST = r"""
function(max_frames, max_cols, max_name, max_chars, time_limit) {
  t0 <- proc.time()[["elapsed"]]
  out <- character()
  used <- 0
  shown <- 0L
  stopped <- FALSE
  for (n in ls(globalenv())) {
    if (proc.time()[["elapsed"]] - t0 > time_limit || used > max_chars) {
      stopped <- TRUE
      break
    }
    x <- tryCatch(get(n, envir = globalenv()), error = function(e) NULL)
    if (!is.data.frame(x)) next
    if (shown >= max_frames) {
      stopped <- TRUE
      break
    }
    cols <- names(x)
    if (is.null(cols)) cols <- character()
    if (length(cols) > max_cols) {
      cols <- cols[seq_len(max_cols)]
      stopped <- TRUE
    }
    cols <- substr(ifelse(is.na(cols), "NA", cols), 1, max_name)
    out <- c(out, substr(n, 1, max_name), class(x)[1], as.character(length(cols)), cols)
    used <- used + sum(nchar(cols, type = "bytes")) + nchar(n, type = "bytes") + 40
    shown <- shown + 1L
  }
  c(if (stopped) "1" else "0", out)
}
"""
_R_FN: dict[str, Any] = {}


def _r_frames(b: CollectionBudget) -> list[dict[str, Any]]:
    if not r_session_exists():
        return []
    left = (b.deadline - time.perf_counter()) * _R_TIME_SHARE
    if left <= 0:
        b.truncated = True
        return []
    ro = sys.modules.get("rpy2.robjects")
    if ro is None:
        return []
    fn, jit = _R_FN.get("list"), _R_FN.get("jit")
    if fn is None or jit is None:
        fn = _R_FN["list"] = ro.r(R_LIST)
        jit = _R_FN["jit"] = ro.r("compiler::enableJIT")
    # R's JIT would compile the function on its first call (about 30 ms, past the budget):
    # it runs interpreted (about 1 ms for 50 data.frames), the user's JIT level put back
    level = jit(0)
    try:
        res = [str(s) for s in fn(MAX_R, MAX_COLUMNS, MAX_NAME, b.section_left, left)]
    finally:
        jit(int(level[0]))
    if not res:
        return []
    if res[0] == "1":
        b.truncated = True
    out: list[dict[str, Any]] = []
    i = 1
    while i + 2 < len(res):
        name, kind, n = res[i], res[i + 1], int(res[i + 2])
        cols = res[i + 3 : i + 3 + n]
        i += 3 + n
        size = json_length(name) + json_length(kind) + 40 + sum(json_length(c) for c in cols)
        if not b.take(size):
            break
        out.append({"name": name, "kind": kind, "columns": cols})
    return out


def _section(b: CollectionBudget, run: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    try:
        return run()
    except Exception:  # one section's failure leaves the others
        b.truncated = True
        return []


def _collect(shell: Any, b: CollectionBudget, max_bytes: int) -> dict[str, Any]:
    data: dict[str, Any] = {"frames": [], "r": [], "tables": [], "variables": []}
    frames, others = _namespace(shell, b)
    for section, share, run in (
        ("variables", _VARIABLES_SHARE, lambda: _variables(others, b)),
        ("tables", _TABLES_SHARE, lambda: collect_tables(shell, others, b)),
        ("r", _R_SHARE, lambda: _r_frames(b)),
        ("frames", 1.0, lambda: _frames(frames, b)),
    ):
        b.start(int(max_bytes * share))
        data[section] = _section(b, run)
    return data


def frontend_context(
    shell: Any, *, budget_ms: float = DEFAULT_BUDGET_MS, max_bytes: int = MAX_BYTES
) -> InlineContext:
    """The names the editor's inline completions may use: frames with their columns, dtypes
    and row counts, R data.frames, the tables of local databases and captured schemas, other
    variables' types (see the module docstring for the bounds). Never raises, never imports
    pandas, polars or rpy2 on this thread, never starts R, never reads a network database;
    `budget_ms` of collecting at most (checked between items), about `max_bytes` of JSON."""
    t0 = time.perf_counter()
    b = CollectionBudget(budget_ms, max_bytes)
    try:
        data = _collect(shell, b, max_bytes)
    except Exception:
        data = {"frames": [], "r": [], "tables": [], "variables": []}
        b.truncated = True
    # the sections' sizes are estimates: the answer itself is held to the bound (one dump,
    # about 0.1 ms for 32 KB), the last items going first, each taking its own size off
    size = len(json.dumps(data))
    while size > max_bytes - 40:  # 40: room for the two fields below
        section = next((k for k in ("frames", "r", "variables", "tables") if data[k]), None)
        if section is None:
            break
        items = data[section]
        size -= len(json.dumps(items.pop())) + (2 if items else 0)  # and its ", "
        b.truncated = True
    data["truncated"] = b.truncated
    data["ms"] = round((time.perf_counter() - t0) * 1000, 2)
    return InlineContext(data)
