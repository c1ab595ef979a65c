"""DataFrame context: shape, dtypes, nulls, ranges and a few rows, bounded in time and size.

Big frames are never scanned in full: column statistics come from a random sample of at most
``stats_sample`` rows (positions drawn with replacement, then de-duplicated: O(k), not O(n)),
and are labelled as estimates. Only ``shape``/``dtypes``/``head`` touch the whole frame, and
those are O(1) or O(rows shown).

A :class:`rsql_magic.privacy.ContextPolicy` decides what of the values may be shown: redacted
columns keep name and dtype only (and ``[redacted]`` in sample rows), ``value_stats=False``
keeps names and dtypes only, ``sample_rows=False`` shows no rows. Which columns are redacted
is decided by position on each column's own label (``ContextPolicy.withheld_positions``: every
MultiIndex level, every duplicate, a struct's fields), the rule the agent's SQL over frames
applies too.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

from rsql_common.context_policy import REDACTED
from rsql_magic import defaults

if TYPE_CHECKING:
    from rsql_magic.privacy import ContextPolicy

__all__ = [
    "describe_frame",
    "find_frames",
    "frame_kind",
    "identifiers_in",
    "pick_frames",
    "redacted_columns",
]

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def identifiers_in(text: str | None) -> set[str]:
    """The words of `text` that could name a variable: how a question names a frame."""
    return set(_NAME_RE.findall(text or ""))


def frame_kind(obj: Any) -> str | None:
    """ "pandas" / "polars" / "polars-lazy" for frame objects, else None; never imports them."""
    mod = type(obj).__module__ or ""
    if mod.startswith("pandas"):
        pd = sys.modules.get("pandas")
        if pd is not None and isinstance(obj, pd.DataFrame):
            return "pandas"
    elif mod.startswith("polars"):
        pl = sys.modules.get("polars")
        if pl is not None:
            if isinstance(obj, pl.DataFrame):
                return "polars"
            if isinstance(obj, pl.LazyFrame):
                return "polars-lazy"
    return None


def find_frames(ns: dict[str, Any]) -> dict[str, Any]:
    """Public (non-underscore) names in ``ns`` bound to a DataFrame, in namespace order."""
    out: dict[str, Any] = {}
    for name, obj in list(ns.items()):
        if name.startswith("_"):
            continue  # IPython's _, __, _1 ... and private names
        if frame_kind(obj) is not None:
            out[name] = obj
    return out


def pick_frames(
    ns: dict[str, Any],
    question: str,
    requested: list[str] | None = None,
    recent: list[str] | None = None,
    max_frames: int = defaults.MAX_FRAMES,
) -> tuple[list[str], list[str]]:
    """Which frames to describe: ``requested`` (an empty list: none, as when ``--df`` named R
    data frames only), else those named in the question, else the ``max_frames`` most
    recently defined (``recent`` is most-recent-first). Returns ``(names, missing)`` where
    missing are requested names that are not frames."""
    frames = find_frames(ns)
    if requested is not None:
        names = [n for n in requested if n in frames]
        return names, [n for n in requested if n not in frames]
    words = identifiers_in(question)
    named = [n for n in frames if n in words]
    if named:
        return named, []
    order = [n for n in (recent or []) if n in frames]
    order += [n for n in reversed(list(frames)) if n not in order]  # newest bindings last in ns
    return order[:max_frames], []


def _fmt_num(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if f != f:  # NaN
        return "nan"
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return f"{f:.6g}"


_TRAILING_NUMBER = re.compile(r"(?:\s*[+(]?[\d().\-/]+)+\s*$")


def cut_value(s: str, width: int = 30) -> str:
    """``s`` cut to ``width`` characters, never in the middle of a token.

    A fragment such as ``alice.smith@uni.`` or ``+44 20 7946`` is still personal data, but no
    longer the shape the proxy's redaction recognises: so a cut drops the partial token, and
    trailing number groups (a phone or card number cut between its groups) with it.
    """
    if len(s) <= width:
        return s
    keep = s[: width - 1]
    if not s[width - 1].isspace():
        ws = max(keep.rfind(" "), keep.rfind("\t"), keep.rfind("\n"))
        keep = keep[: ws + 1] if ws >= 0 else ""
    keep = _TRAILING_NUMBER.sub("", keep).rstrip()
    return keep + "…"


def _short(v: Any, width: int = 30) -> str:
    s = repr(v) if isinstance(v, str) else str(v)
    return cut_value(s, width)


def _sample_positions(n: int, k: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(0)  # fixed seed: the same frame gives the same prompt (cache)
    return np.unique(rng.integers(0, n, size=k))


_WITHHELD = "(values withheld by policy)"


def _pandas_columns(
    df: Any, no_data: bool, stats_sample: int, policy: ContextPolicy | None = None
) -> tuple[list[str], str]:
    import pandas as pd

    hidden = set(_withheld(df, policy))
    if policy is not None and not policy.value_stats:
        # nothing computed from the values: the sample is not even drawn
        names: list[str] = []
        for i, col in enumerate(df.columns):
            dtype = str(df.dtypes.iloc[i])
            names.append(f"- {col}: {dtype}" + (f" {_WITHHELD}" if i in hidden else ""))
        return names, "names and dtypes only: value statistics withheld by policy"

    n = len(df)
    if n > stats_sample:
        sample = df.iloc[_sample_positions(n, stats_sample)]
        note = f"stats from a {len(sample):,}-row random sample; nulls are estimates"
    else:
        sample = df
        note = "stats over all rows"
    lines: list[str] = []
    m = len(sample) or 1
    for i, col in enumerate(df.columns):
        dtype = str(df.dtypes.iloc[i])
        if i in hidden:
            lines.append(f"- {col}: {dtype} {_WITHHELD}")
            continue
        s = sample.iloc[:, i]
        mask = s.isna().to_numpy()  # once per column: isna on string arrays is the slow part
        nn = int(mask.sum())
        if n > stats_sample:
            null_txt = f"nulls ~{100 * nn / m:.1f}%" if nn else "nulls ~0"
        else:
            null_txt = f"nulls {nn}"
        parts = [dtype, null_txt]
        if not no_data:
            try:
                parts.append(_pandas_stats(pd, s[~mask] if nn else s, s.dtype))
            except Exception:  # odd object columns (dicts, lists): dtype is enough
                pass
        lines.append(f"- {col}: " + ", ".join(p for p in parts if p))
    return lines, note


def _pandas_stats(pd: Any, nonnull: Any, dtype: Any) -> str:
    import numpy as np
    from pandas.api import types as t

    if nonnull.empty:
        return "all null"
    if isinstance(dtype, pd.CategoricalDtype):
        cats = list(dtype.categories[:8])
        more = len(dtype.categories) - len(cats)
        return (
            f"{len(dtype.categories)} levels: "
            + ", ".join(map(_short, cats))
            + (f", … (+{more})" if more > 0 else "")
        )
    if t.is_bool_dtype(dtype):
        return f"true {100 * float(nonnull.astype(bool).mean()):.0f}%"
    if t.is_numeric_dtype(dtype):
        arr = nonnull.to_numpy()
        return f"range {_fmt_num(np.min(arr))}..{_fmt_num(np.max(arr))}"
    if t.is_datetime64_any_dtype(dtype) or t.is_timedelta64_dtype(dtype):
        return f"range {nonnull.min()}..{nonnull.max()}"
    if not (t.is_string_dtype(dtype) or t.is_object_dtype(dtype)):
        return ""
    vc = nonnull.value_counts(dropna=False)
    top = ", ".join(_short(v) for v in vc.index[:4])
    return f"{len(vc)} distinct in sample, e.g. {top}"


def _polars_columns(
    df: Any, no_data: bool, stats_sample: int, policy: ContextPolicy | None = None
) -> tuple[list[str], str]:
    hidden = {df.columns[i] for i in _withheld(df, policy)}  # polars names are unique
    if policy is not None and not policy.value_stats:
        names = [
            f"- {c}: {t}" + (f" {_WITHHELD}" if c in hidden else "") for c, t in df.schema.items()
        ]
        return names, "names and dtypes only: value statistics withheld by policy"
    n = df.height
    if n > stats_sample:
        sample = df[_sample_positions(n, stats_sample)]
        note = f"stats from a {sample.height:,}-row random sample; nulls are estimates"
    else:
        sample = df
        note = "stats over all rows"
    lines: list[str] = []
    m = sample.height or 1
    for col in df.columns:
        if col in hidden:
            lines.append(f"- {col}: {df.schema[col]} {_WITHHELD}")
            continue
        s = sample.get_column(col)
        nn = int(s.null_count())
        null_txt = (
            (f"nulls ~{100 * nn / m:.1f}%" if nn else "nulls ~0")
            if n > stats_sample
            else f"nulls {nn}"
        )
        parts = [str(s.dtype), null_txt]
        if not no_data:
            try:
                parts.append(_polars_stats(s))
            except Exception:
                pass
        lines.append(f"- {col}: " + ", ".join(p for p in parts if p))
    return lines, note


def _polars_stats(s: Any) -> str:
    nonnull = s.drop_nulls()
    if nonnull.len() == 0:
        return "all null"
    dt = s.dtype
    if dt.is_numeric() or dt.is_temporal():
        lo, hi = nonnull.min(), nonnull.max()
        if dt.is_numeric():
            return f"range {_fmt_num(lo)}..{_fmt_num(hi)}"
        return f"range {lo}..{hi}"
    vc = nonnull.cast(str).value_counts(sort=True)
    vals = vc.get_column(vc.columns[0]).head(4).to_list()
    return f"{vc.height} distinct in sample, e.g. " + ", ".join(_short(v) for v in vals)


def describe_frame(
    name: str,
    df: Any,
    *,
    no_data: bool = False,
    head_rows: int = defaults.HEAD_ROWS,
    stats_sample: int = defaults.STATS_SAMPLE,
    max_columns: int = 60,
    budget_chars: int = 4000,
    policy: ContextPolicy | None = None,
) -> str:
    """A compact text description of one DataFrame, at most ``budget_chars`` long.

    ``policy``: what of the values may be shown (None: everything ``no_data`` allows).
    """
    kind = frame_kind(df)
    rows_ok = not no_data and head_rows > 0 and (policy is None or policy.sample_rows)
    if kind == "polars-lazy":
        schema = df.collect_schema() if hasattr(df, "collect_schema") else df.schema
        lines = [f"### LazyFrame `{name}` (polars, not collected): {len(schema)} columns"]
        lines += [f"- {c}: {t}" for c, t in list(schema.items())[:max_columns]]
        return _fit(lines, [], budget_chars)
    if kind == "polars":
        nrows, ncols = df.height, df.width
        col_lines, note = _polars_columns(df, no_data, stats_sample, policy)
        head = _polars_head(df, head_rows, policy) if rows_ok else ""
    elif kind == "pandas":
        nrows, ncols = df.shape
        col_lines, note = _pandas_columns(df, no_data, stats_sample, policy)
        head = _pandas_head(df, head_rows, policy) if rows_ok else ""
    else:
        raise TypeError(f"{name} is not a DataFrame")
    header = f"### DataFrame `{name}` ({kind}): {nrows:,} rows x {ncols} columns"
    idx = ""
    if kind == "pandas" and not _is_default_index(df):
        idx = f"index: {type(df.index).__name__} named {list(df.index.names)}"
    lines = [header] + ([idx] if idx else []) + [f"columns ({note}):"]
    if len(col_lines) > max_columns:
        extra = len(col_lines) - max_columns
        col_lines = col_lines[:max_columns] + [f"- … {extra} more columns"]
    tail = [f"first {min(head_rows, nrows)} rows:", head] if head else []
    out = _fit(lines + col_lines, tail, budget_chars)
    return out


def redacted_columns(df: Any, policy: ContextPolicy | None) -> list[str]:
    """The names of ``df``'s columns (and pandas index levels) the policy redacts."""
    if policy is None or not policy.redact_columns:
        return []
    kind = frame_kind(df)
    if kind == "polars-lazy":
        schema = df.collect_schema() if hasattr(df, "collect_schema") else df.schema
        return [str(c) for c in schema if policy.redacts(c)]
    if kind is None:
        return []
    cols = list(df.columns)
    out = [str(cols[i]) for i in policy.withheld_positions(df)]
    if kind == "pandas":
        out += [f"{n} (index)" for n in df.index.names if n is not None and policy.redacts(n)]
    return out


def _withheld(df: Any, policy: ContextPolicy | None) -> list[int]:
    return policy.withheld_positions(df) if policy is not None else []


def _pandas_head(df: Any, head_rows: int, policy: ContextPolicy | None) -> str:
    from pandas.api import types as t

    h = df.head(head_rows)
    show_index = True
    text_cols = [
        i for i, dt in enumerate(h.dtypes) if t.is_object_dtype(dt) or t.is_string_dtype(dt)
    ]
    if text_cols:
        # cut long text ourselves, at token boundaries (pandas' own cut splits an email in two)
        h = h.copy()
        for i in text_cols:
            h.isetitem(
                i,
                [v if not isinstance(v, str) else cut_value(v, 30) for v in h.iloc[:, i].tolist()],
            )
    if policy is not None and policy.redact_columns:
        hit = policy.withheld_positions(h)
        if hit:
            h = h.copy()
            for i in hit:  # by position: duplicate column names are possible
                h.isetitem(i, [REDACTED] * len(h))
        # an index named like a redacted column holds its values: not shown
        show_index = not any(n is not None and policy.redacts(n) for n in h.index.names)
    return h.to_string(max_cols=20, max_colwidth=40, index=show_index)


def _polars_head(df: Any, head_rows: int, policy: ContextPolicy | None) -> str:
    import polars as pl

    h = df.head(head_rows)
    hit = [h.columns[i] for i in _withheld(h, policy)]
    if hit:
        h = h.with_columns([pl.lit(REDACTED).alias(c) for c in hit])
    strs = [c for c, dt in h.schema.items() if dt == pl.String and c not in hit]
    if strs:  # cut at token boundaries ourselves, as for pandas; polars then cuts nothing
        h = h.with_columns(
            [
                pl.Series(
                    c,
                    [None if v is None else cut_value(v, 30) for v in h.get_column(c).to_list()],
                    dtype=pl.String,
                )
                for c in strs
            ]
        )
    with pl.Config(fmt_str_lengths=40):
        return str(h)


def _is_default_index(df: Any) -> bool:
    import pandas as pd

    idx = df.index
    return isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1 and idx.name is None


def _fit(lines: list[str], tail: list[str], budget_chars: int) -> str:
    """Join lines; drop the sample rows first, then column lines, to fit the budget."""
    text = "\n".join(lines + tail)
    if len(text) <= budget_chars:
        return text
    text = "\n".join(lines)
    if len(text) <= budget_chars:
        return text
    kept: list[str] = []
    used = 0
    for ln in lines:
        if used + len(ln) + 1 > budget_chars - 40:
            kept.append(f"- … ({len(lines) - len(kept)} more lines cut to fit the budget)")
            break
        kept.append(ln)
        used += len(ln) + 1
    return "\n".join(kept)
