"""Issue 53, finding 5: redacted frame columns that DuckDB renames must stay withheld.

DuckDB names some pandas columns its own way: a MultiIndex column ``('salary', 'max')`` becomes
``"('salary', 'max')"``, a second ``salary`` from ``pd.concat(axis=1)`` becomes ``salary_1``;
a name that differs from a pattern only by case or surrounding spaces is still the column the
pattern means. With ``redact_columns: ["salary"]`` none of these may carry a salary value to
the model, whatever the SQL calls them (an alias, ``*``, an expression, a cast, ``list()``, a
window). Attacked through the agent's tool box as the agent loop calls it, and through
``%%ask --agent`` in front of the loopback provider, whose recorded requests are checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.utils.capture import capture_output

from rsql_common.context_policy import ContextPolicy
from rsql_magic.agent.tools import KernelTools
from rsql_magic.context.frames import describe_frame
from rsql_magic.session import Session
from tests.helpers import FAKE_KEY, require
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.tool_calls import tool_call

require("duckdb", reason="DataFrames are queried through DuckDB")

DEPTS = ["ops", "ops", "lab", "lab"]
SALARIES = [91234.5, 87654.25, 79999.75, 123456.0]
BONUS_SALARIES = [55501.5, 66602.5, 77703.5, 88804.5]
AGES = [31, 45, 28, 52]
# every salary, and what a group's max or mean of them is, by its integer digits (however a
# tool formats the number, these digits are in it)
SALARY_DIGITS = {
    *(str(int(v)) for v in SALARIES + BONUS_SALARIES),
    str(int((SALARIES[0] + SALARIES[1]) / 2)),
    str(int((SALARIES[2] + SALARIES[3]) / 2)),
}
POLICY = {"redact_columns": ["salary"]}


def salary_values_in(text: str) -> list[str]:
    squeezed = text.replace(",", "").replace("_", "").replace(" ", "")
    return sorted(d for d in SALARY_DIGITS if d in squeezed)


def frames() -> dict[str, pd.DataFrame]:
    staff = pd.DataFrame({"dept": DEPTS, "salary": SALARIES, "age": AGES})
    agg = staff.groupby("dept").agg({"salary": ["max", "mean"], "age": ["max"]})
    bonus = pd.DataFrame({"salary": BONUS_SALARIES})
    dup = pd.concat([staff[["dept", "salary"]], bonus], axis=1)  # salary, then salary again
    spaced = pd.DataFrame({"dept": DEPTS, " Salary ": SALARIES})
    nested = pd.DataFrame(
        {("pay", "salary"): SALARIES, ("pay", "age"): AGES, ("who", "dept"): DEPTS}
    )
    return {"agg": agg, "dup": dup, "spaced": spaced, "nested": nested}


class _Engine:
    def __init__(self, policy: dict[str, Any]) -> None:
        self.policy = policy

    def me(self) -> dict[str, Any]:
        return {"context_policy": self.policy}


class _Client:
    """A proxy client whose admin withholds `policy` (read as ``GET me`` would be)."""

    unavailable = None
    base_url = None
    token = None

    def __init__(self, policy: dict[str, Any]) -> None:
        self.engine = _Engine(policy)


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("RSQL_BATCH", "0")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rsql_magic")
    made = frames()
    ip.user_ns.update(made)
    try:
        yield ip
    finally:
        Session.of(ip).config.ask.context_policy = {}
        for k in made:
            ip.user_ns.pop(k, None)


def _tools(ip: Any, policy: dict[str, Any] = POLICY) -> KernelTools:
    return KernelTools(Session.of(ip), client=_Client(policy))  # type: ignore[arg-type]


# what a model would write to read a renamed salary column: (the frame, the SQL) by DuckDB's
# name, under an alias, through *, in an expression, a cast, a list, a window, a CTE, COLUMNS()
ATTACKS = [
    ("agg", """SELECT "('salary', 'max')" FROM agg"""),
    ("agg", """SELECT "('salary', 'max')" AS s FROM agg"""),
    ("agg", "SELECT * FROM agg"),
    ("agg", """SELECT "('salary', 'mean')" * 1 AS x FROM agg"""),
    ("agg", """SELECT CAST("('salary', 'max')" AS VARCHAR) AS x FROM agg"""),
    ("agg", """SELECT list("('salary', 'mean')") AS x FROM agg"""),
    ("dup", "SELECT salary_1 FROM dup"),
    ("dup", "SELECT salary_1 AS s FROM dup"),
    ("dup", "SELECT * FROM dup"),
    ("dup", "SELECT * EXCLUDE (dept) FROM dup"),
    ("dup", "SELECT COLUMNS('sal.*') FROM dup"),
    ("dup", "SELECT max(salary_1) OVER () AS m FROM dup"),
    ("dup", "SELECT dept, CAST(salary_1 AS VARCHAR) AS v FROM dup"),
    ("dup", "SELECT string_agg(CAST(salary_1 AS VARCHAR), ',') AS v FROM dup"),
    ("dup", "WITH t AS (SELECT salary_1 AS x FROM dup) SELECT x FROM t"),
    ("dup", "SELECT to_json(d) AS j FROM dup AS d"),
    ("spaced", """SELECT " Salary " AS s FROM spaced"""),
    ("spaced", """SELECT " SALARY " AS s FROM spaced"""),
    ("spaced", "SELECT * FROM spaced"),
    ("nested", """SELECT "('pay', 'salary')" + 0 AS s FROM nested"""),
    ("nested", "SELECT * FROM nested"),
]


@pytest.mark.parametrize(("frame", "sql"), ATTACKS)
@pytest.mark.parametrize("connection", ["frames", "the frame"])
def test_run_sql_over_frames_never_returns_a_renamed_salary_column(
    shell: Any, frame: str, sql: str, connection: str
) -> None:
    args = {"connection": frame if connection == "the frame" else "frames", "sql": sql}
    # the control: with nothing withheld, this SQL reads salaries (so the attack is one)
    assert salary_values_in(_tools(shell, {}).call("run_sql", args).text)
    res = _tools(shell).call("run_sql", args)
    assert not salary_values_in(res.text), res.text


def test_the_other_columns_of_a_frame_still_answer(shell: Any) -> None:
    res = _tools(shell).call(
        "run_sql", {"connection": "frames", "sql": """SELECT "('age', 'max')" AS a FROM agg"""}
    )
    assert not res.error, res.text
    assert str(max(AGES[:2])) in res.text and str(max(AGES[2:])) in res.text
    res = _tools(shell).call(
        "run_sql", {"connection": "frames", "sql": "SELECT dept, count(*) AS n FROM dup GROUP BY 1"}
    )
    assert not res.error and "ops" in res.text, res.text


@pytest.mark.parametrize("name", ["agg", "dup", "spaced", "nested"])
def test_describe_frame_and_search_schema_withhold_every_salary_column(
    shell: Any, name: str
) -> None:
    tools = _tools(shell)
    described = tools.call("describe_frame", {"name": name})
    assert not described.error and not salary_values_in(described.text), described.text
    assert "(values withheld by policy)" in described.text
    schema = tools.call("search_schema", {"connection": "frames", "question": "max salary"})
    assert not salary_values_in(schema.text), schema.text


@pytest.mark.parametrize(
    "label",
    [
        "salary",
        "SALARY",
        " Salary ",
        "salary\t",
        ("salary", "max"),
        ("pay", "Salary"),
        ("a", ("b", "salary")),
    ],
)
def test_the_one_identity_rule_matches_every_spelling_and_level_of_a_column(label: Any) -> None:
    assert ContextPolicy.from_dict(POLICY).redacts(label)


@pytest.mark.parametrize(
    ("patterns", "label"),
    [(["2024"], 2024), (["2024-01-01*"], pd.Timestamp("2024-01-01")), (["7"], 7)],
)
def test_non_string_labels_are_matched_as_their_text(patterns: list[str], label: Any) -> None:
    assert ContextPolicy.from_dict({"redact_columns": patterns}).redacts(label)


def test_a_pattern_matches_the_whole_name_so_a_new_name_needs_a_wider_pattern() -> None:
    # pandas' merge suffixes (salary_x) are new names in the user's frame, not DuckDB's
    assert not ContextPolicy.from_dict(POLICY).redacts("salary_x")
    assert ContextPolicy.from_dict({"redact_columns": ["salary*"]}).redacts("salary_x")


def test_a_pandas_column_labelled_by_a_number_or_a_date_is_withheld_in_every_tool(
    shell: Any,
) -> None:
    wide = pd.DataFrame({"dept": DEPTS, 2024: SALARIES, pd.Timestamp("2025-01-01"): SALARIES})
    shell.user_ns["wide"] = wide
    Session.of(shell).config.ask.context_policy = {"redact_columns": ["2024", "2025-*"]}
    try:
        tools = KernelTools(Session.of(shell))
        for sql in ('SELECT "2024" AS s FROM wide', "SELECT * FROM wide"):
            res = tools.call("run_sql", {"connection": "wide", "sql": sql})
            assert not salary_values_in(res.text), res.text
        res = tools.call("describe_frame", {"name": "wide"})
        assert not salary_values_in(res.text), res.text
    finally:
        shell.user_ns.pop("wide", None)


def test_a_polars_column_named_like_a_redacted_one_is_withheld(shell: Any) -> None:
    require("polars", reason="polars frames are described and queried when it is installed")
    import polars as pl

    from rsql_sql.databases.frames import withheld_frame

    staff = pl.DataFrame({"dept": DEPTS, " SALARY": SALARIES})
    shell.user_ns["pstaff"] = staff
    try:
        res = _tools(shell).call("describe_frame", {"name": "pstaff"})
        assert not res.error and not salary_values_in(res.text), res.text
        # DuckDB reads a polars frame through Arrow: without pyarrow the query fails, with it
        # the column holds [redacted]; a salary comes back in neither case
        res = _tools(shell).call(
            "run_sql", {"connection": "pstaff", "sql": 'SELECT " SALARY" AS s FROM pstaff'}
        )
        assert not salary_values_in(res.text), res.text
        # what DuckDB would be given: the column replaced, the user's frame unchanged
        hidden = ContextPolicy.from_dict(POLICY).withheld_positions(staff)
        shown = withheld_frame(staff, hidden)
        assert hidden == [1] and set(shown[" SALARY"].to_list()) == {"[redacted]"}
        assert staff[" SALARY"].to_list() == SALARIES
    finally:
        shell.user_ns.pop("pstaff", None)


def test_describe_frame_withholds_a_spaced_or_cased_salary_column() -> None:
    text = describe_frame("spaced", frames()["spaced"], policy=ContextPolicy.from_dict(POLICY))
    assert "(values withheld by policy)" in text and not salary_values_in(text), text


# -- the whole turn: %%ask --agent, the provider's recorded requests -----------------------


@pytest.fixture
def agent_ip(
    shell: Any, fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    monkeypatch.setenv("RSQL_PROXY_URL", f"http://127.0.0.1:{fresh_provider.port}/")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", FAKE_KEY)
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    monkeypatch.delenv("RSQL_REPLAY", raising=False)
    # the user's own policy (the loopback provider has no admin's)
    shell.run_line_magic("config", f"RSQLMagic.context_policy = {POLICY!r}")
    yield shell


def test_an_agent_turn_sends_the_provider_no_salary_through_renamed_columns(
    agent_ip: Any, fresh_provider: FakeProvider
) -> None:
    calls = [
        (
            "run_sql",
            {"connection": "frames", "sql": """SELECT "('salary', 'max')" AS s FROM agg"""},
        ),
        ("run_sql", {"connection": "dup", "sql": "SELECT salary_1 AS s FROM dup"}),
        ("run_sql", {"connection": "frames", "sql": "SELECT * FROM spaced"}),
        ("describe_frame", {"name": "dup"}),
    ]
    fresh_provider.script(
        *[tool_call(name, args, f"call_{i}") for i, (name, args) in enumerate(calls)],
        "Salaries are withheld.",
    )
    with capture_output():
        result = agent_ip.run_cell("%%ask --agent\nWhat is the highest salary per dept?")
    assert result.error_in_exec is None, result.error_in_exec
    assert len(fresh_provider.received) == len(calls) + 1
    sent = [json.dumps(r.body, ensure_ascii=False) for r in fresh_provider.received]
    tool_results = [
        m["content"]
        for m in fresh_provider.received[-1].body["messages"]
        if m.get("role") == "tool"
    ]
    assert len(tool_results) == len(calls)
    assert not salary_values_in("\n".join(sent)), tool_results


def test_the_agent_masks_a_copy_and_the_users_frames_keep_their_values(shell: Any) -> None:
    before = {name: shell.user_ns[name].copy(deep=True) for name in ("agg", "dup")}
    res = _tools(shell).call(
        "run_sql", {"connection": "frames", "sql": "SELECT dept, count(*) AS n FROM dup GROUP BY 1"}
    )
    assert not res.error, res.text
    for name, frame in before.items():
        pd.testing.assert_frame_equal(shell.user_ns[name], frame)


def test_a_polars_struct_with_a_salary_field_is_withheld_whole() -> None:
    require("polars", reason="polars frames are described when it is installed")
    import polars as pl

    people = pl.DataFrame(
        {
            "dept": DEPTS,
            "pay": [{"salary": s, "grade": g} for s, g in zip(SALARIES, AGES, strict=True)],
        }
    )
    policy = ContextPolicy.from_dict(POLICY)
    assert policy.withheld_positions(people) == [1]
    text = describe_frame("people", people, policy=policy)
    assert "- pay: " in text and "(values withheld by policy)" in text
    assert not salary_values_in(text), text


def test_show_context_names_whose_policy_withheld_a_multiindex_column() -> None:
    from rsql_magic.context import build_context
    from rsql_magic.privacy import withheld_summary

    admin = ContextPolicy.from_dict(POLICY, "admin")
    policy = ContextPolicy.from_dict({}, "user").merge(admin)
    policy = ContextPolicy(
        policy.sample_rows, policy.value_stats, policy.redact_columns, "admin", admin=admin
    )
    ctx = build_context(
        question="salaries", ns={"agg": frames()["agg"]}, frames=["agg"], policy=policy
    )
    line = withheld_summary(ctx, policy, None)
    assert "withheld by the admin's policy: values of agg.('salary', 'max')" in line, line
    assert "your policy" not in line, line


def test_sql_ai_over_frames_sends_the_provider_names_and_types_only(
    agent_ip: Any, fresh_provider: FakeProvider
) -> None:
    fresh_provider.script("```sql\nSELECT dept FROM dup\n```")
    with capture_output():
        result = agent_ip.run_cell(
            "%%sql_ai dup --no-cache\nWho earns 91234.5 or more, in salary_1 or salary?"
        )
    assert result.error_in_exec is None, result.error_in_exec
    (request,) = fresh_provider.received
    schema = request.body["messages"][0]["content"]
    assert "salary_1" in schema  # the names, as DuckDB has them: the SQL needs them
    assert not salary_values_in(schema), schema


def test_a_reference_to_a_multiindex_salary_series_is_not_filled_in(
    agent_ip: Any, fresh_provider: FakeProvider
) -> None:
    agent_ip.user_ns["top"] = agent_ip.user_ns["agg"][("salary", "max")]
    fresh_provider.script("ok")
    try:
        with capture_output():
            result = agent_ip.run_cell("%%ask --no-cache\nWhat does {top} say?")
        assert result.error_in_exec is None, result.error_in_exec
        sent = json.dumps(fresh_provider.received[-1].body)
        assert not salary_values_in(sent), sent
    finally:
        agent_ip.user_ns.pop("top", None)
