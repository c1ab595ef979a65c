"""Allowlists of what a generated read-only statement may contain, per database.

Everything not listed here is refused: a model's answer can be steered by text hidden in the
data, so its SQL is treated as hostile. Three lists:

- node kinds (sqlglot expression classes) that only read: query structure, operators, literals;
- functions: sqlglot's typed function classes that are pure scalar, aggregate or window
  functions, plus each database's names of pure functions sqlglot leaves untyped (``Anonymous``,
  declared by the database's module in :mod:`rsql_sql.databases`);
- table functions (``FROM f(...)``) that generate rows without touching files or the network
  (the database's too).

Functions that read or write files, reach the network, run SQL from a string
(``query_to_xml``, DuckDB ``query``), change sequences, take locks, signal other sessions or
reset statistics are on no list. Users extend the function list with
``%config SqlAIMagics.allowed_functions`` (``name`` for every database, ``dialect:name`` for one).

The same names serve the database-side checks: SQLite's authorizer sees each function's name,
DuckDB's own parser (``json_serialize_sql``) lists the functions a statement calls.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from sqlglot import exp

if TYPE_CHECKING:
    from .base import Database

__all__ = [
    "MAX_GENERATED_WIDTH",
    "READ_ONLY_NODES",
    "UNSAFE_REASONS",
    "allowed_names",
    "call_width",
    "database_function_names",
    "function_allowed",
    "function_names",
    "table_function_allowed",
    "width_problem",
]


def _classes(names: str) -> frozenset[type[exp.Expr]]:
    # By name, so a sqlglot without one of them still imports.
    return frozenset(c for n in names.split() if isinstance(c := getattr(exp, n, None), type))


# Non-function nodes a read-only query is built from. Func subclasses are decided separately.
READ_ONLY_NODES = _classes(
    """
    Select Union Intersect Except Subquery With CTE RecursiveWithSearch From Join Where Group
    GroupingSets Cube Rollup Having Qualify Order Ordered Limit Offset Fetch Distinct Window
    WindowSpec Filter WithinGroup IgnoreNulls RespectNulls HavingMax Lateral Values Tuple Table
    TableAlias Alias Aliases Column Identifier Star Bracket Slice Paren Literal Boolean Null
    Var Interval IntervalSpan DataType DataTypeParam PseudoType ObjectIdentifier Lambda
    PropertyEQ Kwarg Escape TableSample Pivot PivotAlias PivotAny UnpivotColumns National
    HexString BitString ByteString RawString Heredoc PositionalColumn Comprehension
    Add Sub Mul Div IntDiv Mod DPipe EQ NEQ GT GTE LT LTE Is Like ILike SimilarTo Glob
    NullSafeEQ NullSafeNEQ BitwiseAnd BitwiseOr BitwiseXor BitwiseLeftShift
    BitwiseRightShift BitwiseNot Distance Overlaps Adjacent ExtendsLeft ExtendsRight
    ArrayContainsAll ArrayContainedBy ArrayOverlaps In Between Any All Not Neg AtTimeZone
    FromTimeZone JSONPath JSONPathKey JSONPathRoot JSONPathSubscript JSONPathWildcard
    JSONPathSlice JSONPathSelector JSONPathUnion JSONPathRecursive JSONKeyValue FormatJson
    JSONExtractQuote OnCondition Dot ReplaceColumns ColumnDef
    """
)

# sqlglot's typed functions that are pure: scalar, aggregate, window. Typed classes carry the
# same meaning in every dialect, so one list serves all.
PURE_FUNCTIONS = _classes(
    """
    And Or Xor Case If Cast TryCast Coalesce Nullif Nvl2 Exists Collate EqualNull Greatest Least
    AnyValue ApproxDistinct ApproxQuantile ArgMax ArgMin ArrayAgg ArrayConcatAgg ArrayUniqueAgg
    ArrayUnionAgg Avg BitwiseAndAgg BitwiseOrAgg BitwiseXorAgg Corr Count CountIf CovarPop
    CovarSamp First GroupConcat JSONArrayAgg JSONObjectAgg JSONBObjectAgg Kurtosis Last
    LogicalAnd LogicalOr Max Median Min Mode PercentileCont PercentileDisc Quantile RegrAvgx
    RegrAvgy RegrCount RegrIntercept RegrR2 RegrSlope RegrSxx RegrSxy RegrSyy Skewness Stddev
    StddevPop StddevSamp Sum Variance VariancePop Grouping GroupingId
    CumeDist DenseRank FirstValue Lag LastValue Lead NthValue Ntile PercentRank Rank RowNumber
    Abs Acos Acosh Asin Asinh Atan Atan2 Atanh Cbrt Ceil Cos Cosh Cot Degrees Exp Factorial
    Floor Ln Log Pi Pow Radians Round Sign Sin Sinh Sqrt Tan Tanh Trunc IsNan IsInf WidthBucket
    SafeDivide Rand
    Ascii BitLength ByteLength Chr Concat ConcatWs Contains EndsWith StartsWith Initcap Left
    Length Levenshtein Lower Upper Pad Repeat Replace Reverse Right Split SplitPart StrPosition
    Substring SubstringIndex Translate Trim Unicode RegexpCount RegexpExtract RegexpExtractAll
    RegexpILike RegexpLike RegexpReplace RegexpSplit RegexpSubstr RegexpInstr RegexpFullMatch
    Soundex MD5 SHA SHA2 Hex Unhex LowerHex Space Format Overlay Normalize ToBase64 FromBase64
    StringToArray ArrayToString Encode Decode JarowinklerSimilarity
    AddMonths CurrentDate CurrentTime CurrentTimestamp CurrentDatetime Localtime Localtimestamp
    Date DateAdd DateBin DateDiff DateFromParts DateStrToDate DateSub DateToDateStr DateTrunc
    Datetime DatetimeAdd DatetimeDiff DatetimeSub DatetimeTrunc Day DayOfMonth DayOfWeek
    DayOfWeekIso DayOfYear Dayname Extract Hour LastDay MakeInterval Minute Month Monthname
    MonthsBetween NextDay Quarter Second StrToDate StrToTime StrToUnix Time TimeAdd TimeDiff
    TimeFromParts TimeStrToDate TimeStrToTime TimeStrToUnix TimeSub TimeToStr TimeToTimeStr
    TimeToUnix TimeTrunc Timestamp TimestampAdd TimestampDiff TimestampFromParts TimestampSub
    TimestampTrunc ToChar ToDays ToNumber ToDouble TsOrDiToDi TsOrDsAdd TsOrDsDiff TsOrDsToDate
    TsOrDsToDateStr TsOrDsToDatetime TsOrDsToTime TsOrDsToTimestamp UnixDate UnixToStr
    UnixToTime UnixToTimeStr UnixSeconds UnixMillis UnixMicros Week WeekOfYear Year YearOfWeek
    YearOfWeekIso JustifyDays JustifyHours JustifyInterval ConvertTimezone DateToDi DiToDate
    UtcDate UtcTimestamp UtcTime
    Array ArrayAll ArrayAny ArrayAppend ArrayCompact ArrayConcat ArrayContains ArrayDistinct
    ArrayExcept ArrayFilter ArrayFirst ArrayIntersect ArrayLast ArrayMax ArrayMin ArrayPosition
    ArrayPrepend ArrayRemove ArrayReverse ArraySize ArraySlice ArraySort ArraySum ArraysZip
    Transform Reduce List Struct StructExtract Map MapKeys MapSize VarMap ToMap JSONArray
    JSONArrayContains JSONBContains JSONBExists JSONBExtract JSONBExtractScalar JSONExtract
    JSONExtractArray JSONExtractScalar JSONFormat JSONKeys JSONObject JSONType ParseJSON
    JSONBContainsAnyTopKeys JSONBContainsAllTopKeys JSONBContainsTopKey JSONStripNulls JSONCast
    JSONExists JSONBPathExists IsArray Unnest Explode Typeof Uuid GenerateSeries
    ExplodingGenerateSeries GenerateDateArray CurrentSchema CurrentUser SessionUser
    CurrentDatabase CurrentCatalog Columns
    """
)

# Pure functions sqlglot parses as Anonymous (or that the database names internally) in every
# database, lower-case; each database's module adds its own (``Database.functions``). Typed ones
# above need not be repeated, but common names are, because the database-side checks see names,
# not classes.
_COMMON = """
abs avg ceil ceiling coalesce concat count cume_dist dense_rank exp first_value floor
greatest lag last_value lead least length lower ltrim max min nth_value ntile nullif
percent_rank power rank replace round row_number rtrim sign sqrt substr substring sum trim
upper mod stddev stddev_pop stddev_samp variance var_pop var_samp corr covar_pop covar_samp
string_agg lpad rpad left right reverse repeat initcap md5 ln log log10 pi radians degrees
"""

# Why a well-known function is refused, for messages; the allowlist decides, not this table.
UNSAFE_REASONS = {
    **dict.fromkeys(
        "pg_read_file pg_read_binary_file pg_ls_dir pg_stat_file pg_ls_logdir pg_ls_waldir "
        "lo_import lo_export lo_get lo_put lo_unlink read_text read_blob read_csv read_csv_auto "
        "read_json read_json_auto read_ndjson read_parquet parquet_scan glob sniff_csv "
        "readfile writefile edit load_extension fts3_tokenizer sqlite_scan postgres_scan "
        "iceberg_scan delta_scan readcsv readparquet getenv".split(),
        "reads or writes files or the network",
    ),
    **dict.fromkeys(
        "query_to_xml query_to_xmlschema query_to_xml_and_xmlschema table_to_xml "
        "cursor_to_xml database_to_xml schema_to_xml dblink dblink_exec query query_table "
        "json_execute_serialized_sql".split(),
        "runs SQL from a string",
    ),
    **dict.fromkeys(
        "pg_terminate_backend pg_cancel_backend pg_reload_conf pg_rotate_logfile set_config "
        "setval nextval nextvaluefor pg_advisory_lock pg_advisory_xact_lock pg_try_advisory_lock "
        "pg_try_advisory_xact_lock pg_advisory_unlock pg_advisory_unlock_all pg_stat_reset "
        "pg_stat_reset_shared pg_stat_reset_single_table_counters pg_switch_wal "
        "pg_create_restore_point pg_promote txid_current pg_notify checkpoint "
        "force_checkpoint install load".split(),
        "has side effects",
    ),
    **dict.fromkeys(
        "pg_sleep pg_sleep_for pg_sleep_until sleep sleep_ms".split(),
        "only waits, holding the connection and the kernel",
    ),
    **dict.fromkeys(
        "zeroblob randomblob array_fill".split(),
        "builds a value of any size in one step, past the timeout and into the kernel's memory",
    ),
}

# Longest value (characters, list elements) one call may be asked to build in one step: a
# width beyond it makes gigabytes before a timeout or a result bound can act (DuckDB's
# repeat('x', 2e9) took 3.9 GB and 13 s past a 5 s interrupt).
MAX_GENERATED_WIDTH = 10_000

# Functions whose result is as long as one argument says: that argument's index.
_WIDTH_ARGUMENTS = {"repeat": 1, "lpad": 1, "rpad": 1, "space": 0}
# printf-style functions: the format string (argument 0) sets the widths.
_FORMAT_FUNCTIONS = frozenset({"printf", "format"})
# As a scalar (not in FROM), DuckDB's range / generate_series build the whole list at once,
# which neither interrupt() nor memory_limit stops (range(3e8): 14 GB, 68 s past a 5 s timeout).
_LIST_SERIES = frozenset({"range", "generate_series"})

# A call's argument as the checks see it: its value when it is a literal (or an upper bound,
# such as least(x, 100)), else None.
ArgBound = int | float | str | None

_PERCENT_SPEC = re.compile(r"%%|%([-+ #0-9.*$',!lh]*)")
_NUMBER = re.compile(r"\d+")


def _format_problem(fmt: str) -> str | None:
    specs = [m.group(1) or "" for m in _PERCENT_SPEC.finditer(fmt) if m.group(0) != "%%"]
    text = fmt.replace("{{", "").replace("}}", "")
    for m in re.finditer(r"\{([^{}]*)(\{)?", text):
        if m.group(2):
            return "takes a width from an argument ({:{}})"
        specs.append(m.group(1))
    for spec in specs:
        if "*" in spec:
            return "takes a width from an argument (*)"
        if any(int(n) > MAX_GENERATED_WIDTH for n in _NUMBER.findall(spec)):
            return f"asks for a width over {MAX_GENERATED_WIDTH:,}"
    return None


def width_problem(
    name: str, args: list[ArgBound], database: Database, *, scalar: bool = True
) -> str | None:
    """Why a call could build a huge value in one step (a message fragment), or None.

    `args`: each argument's literal value or upper bound, None when unknown. `scalar`: False
    for a table function in FROM (which streams rows, under the timeout and the result bound).
    """
    name = name.lower()
    cap = f"use a literal width up to {MAX_GENERATED_WIDTH:,} or cap it with least(width, {MAX_GENERATED_WIDTH})"
    if name in _WIDTH_ARGUMENTS:
        i = _WIDTH_ARGUMENTS[name]
        if i < len(args):
            width = args[i]
            if not isinstance(width, int | float) or width > MAX_GENERATED_WIDTH:
                return f"{name}() builds a value as long as its width argument; {cap}"
        return None
    if name in _FORMAT_FUNCTIONS and database.format_widths and args:
        fmt = args[0]
        if not isinstance(fmt, str):
            return f"{name}() needs a literal format string here (its widths set the size)"
        why = _format_problem(fmt)
        return f"{name}()'s format {why}; {cap}" if why else None
    if name in _LIST_SERIES and scalar and database.series_as_lists:
        count = _series_count(args)
        if count is None:
            return (
                f"{name}() as a value builds the whole list in memory; use it as a table "
                f"in FROM, which streams rows, or give literal bounds up to {MAX_GENERATED_WIDTH:,} "
                "elements"
            )
        if count > MAX_GENERATED_WIDTH:
            return (
                f"{name}() as a value builds a list of {count:,} elements in memory; use it as "
                "a table in FROM, which streams rows"
            )
    return None


def call_width(name: str, args: list[ArgBound], database: Database) -> int | None:
    """How wide a value one call builds (characters, list elements), from its literal
    arguments; None for a call that builds none this way. Nested builders multiply: the guard
    refuses a chain whose product passes ``MAX_GENERATED_WIDTH``
    (``repeat(repeat('x', 10000), 10000)`` is 10^8 characters)."""
    name = name.lower()
    if name in _WIDTH_ARGUMENTS:
        i = _WIDTH_ARGUMENTS[name]
        width = args[i] if i < len(args) else None
        return max(1, int(width)) if isinstance(width, int | float) else None
    if name in _FORMAT_FUNCTIONS and database.format_widths and args and isinstance(args[0], str):
        widths = [int(n) for n in _NUMBER.findall(args[0])]
        return max([len(args[0]), *widths])
    if name in _LIST_SERIES and database.series_as_lists:
        return _series_count(args)
    return None


def _series_count(args: list[ArgBound]) -> int | None:
    """Elements of DuckDB's range / generate_series(stop | start, stop[, step]) built as a list,
    from literal integer bounds; None when a bound is not one (a step of 0 never ends)."""
    nums = [a for a in args if isinstance(a, int)]
    if not nums or len(nums) != len(args):
        return None
    start, stop = (0, nums[0]) if len(nums) == 1 else (nums[0], nums[1])
    step = nums[2] if len(nums) > 2 else 1
    return abs(stop - start) // abs(step) if step else MAX_GENERATED_WIDTH + 1


def _split(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _extra_for(extra: frozenset[str], dialect: str) -> set[str]:
    out = set()
    for n in extra:
        d, sep, name = n.partition(":")
        if not sep:
            out.add(n)
        elif d == dialect:
            out.add(name)
    return out


@functools.cache
def _typed_names(dialect: str) -> frozenset[str]:
    """Names sqlglot's parser for `dialect` maps onto a pure typed function."""
    from sqlglot.dialects.dialect import Dialect

    try:
        funcs = Dialect.get_or_raise(dialect).parser_class.FUNCTIONS
    except Exception:
        return frozenset()
    out = set()
    for name, builder in funcs.items():
        cls = getattr(builder, "__self__", None)
        if isinstance(cls, type) and cls in PURE_FUNCTIONS:
            out.add(name.lower())
    return frozenset(out)


@functools.cache
def _names(database: Database, extra: frozenset[str]) -> frozenset[str]:
    return (
        _split(_COMMON) | _split(database.functions) | frozenset(_extra_for(extra, database.name))
    )


@functools.cache
def _table_names(database: Database, extra: frozenset[str]) -> frozenset[str]:
    return _split(database.table_functions) | frozenset(_extra_for(extra, database.name))


def allowed_names(database: Database, extra: frozenset[str] = frozenset()) -> frozenset[str]:
    """Names an untyped (Anonymous) call may have in `database`."""
    return _names(database, extra)


def database_function_names(
    database: Database, extra: frozenset[str] = frozenset()
) -> frozenset[str]:
    """Every function name the database-side checks let through for `database`."""
    return _names(database, extra) | _typed_names(database.name) | _split(database.table_functions)


def table_function_allowed(
    name: str, database: Database, extra: frozenset[str] = frozenset()
) -> bool:
    return name.lower() in _table_names(database, extra)


def function_names(node: exp.Func) -> set[str]:
    """Lower-case names a call node goes by: as written (Anonymous), or its typed class's names."""
    if isinstance(node, exp.Anonymous):
        return {node.name.lower()}
    names = {node.sql_name().lower(), node.key.lower()}
    names.update(n.lower() for n in getattr(type(node), "_sql_names", ()) or ())
    return names


def function_allowed(
    node: exp.Func, database: Database, extra: frozenset[str] = frozenset()
) -> bool:
    if not isinstance(node, exp.Anonymous) and type(node) in PURE_FUNCTIONS:
        return True
    allowed = (
        _names(database, extra)
        if isinstance(node, exp.Anonymous)
        else frozenset(_extra_for(extra, database.name))
    )
    return bool(function_names(node) & allowed)


def unsafe_reason(name: str) -> str | None:
    return UNSAFE_REASONS.get(name.lower())
