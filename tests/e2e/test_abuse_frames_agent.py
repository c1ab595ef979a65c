"""Issue 53, finding 5, end to end: frame columns DuckDB renames leak nothing to the provider.

A real proxy (a Jupyter server with the rsql extension) whose admin's context policy withholds
``salary``, in front of the loopback fake provider; the kernel side is an IPython shell with
rsql_magic loaded. A scripted model asks the agent's tools (``%%ask --agent`` and the chat
panel's Agent) for the salary columns pandas and DuckDB rename: a MultiIndex column after
``groupby().agg({"salary": [...]})`` (DuckDB: ``"('salary', 'max')"``) and a second ``salary``
from ``pd.concat(axis=1)`` (DuckDB: ``salary_1``), by DuckDB's names, aliases, ``*``, a cast
and a window. Every request the provider received is checked for salary values. The tool
box's own attack cases: tests/unit/test_abuse_frame_columns.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from rsql_magic.client import ProxyClient
from rsql_magic.privacy import clear_cache
from tests.helpers import require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import JupyterServer
from tests.helpers.tool_calls import tool_call

require("duckdb", reason="DataFrames are queried through DuckDB")

SALARIES = [91234.5, 87654.25, 79999.75, 123456.0]
BONUSES = [55501.5, 66602.5, 77703.5, 88804.5]
# a salary's (or a group max's or mean's) integer digits, however a tool formats the number
SALARY_DIGITS = {
    *(str(int(v)) for v in SALARIES + BONUSES),
    str(int((SALARIES[0] + SALARIES[1]) / 2)),
    str(int((SALARIES[2] + SALARIES[3]) / 2)),
}


def salary_values_in(texts: list[str]) -> list[str]:
    squeezed = "\n".join(texts).replace(",", "").replace("_", "").replace(" ", "")
    return sorted(d for d in SALARY_DIGITS if d in squeezed)


def staff_frames() -> dict[str, pd.DataFrame]:
    staff = pd.DataFrame(
        {"dept": ["ops", "ops", "lab", "lab"], "salary": SALARIES, "age": [31, 45, 28, 52]}
    )
    return {
        "agg": staff.groupby("dept").agg({"salary": ["max", "mean"]}),
        "bonus": pd.concat([staff[["dept", "salary"]], pd.DataFrame({"salary": BONUSES})], axis=1),
    }


def upstream_texts(fp: FakeProvider) -> list[str]:
    return [json.dumps(r.body, ensure_ascii=False) for r in fp.received]


def run(ip: InteractiveShell, cell: str) -> None:
    with capture_output():  # the steps and the answer: not what is checked here
        result = ip.run_cell(cell)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    if result.error_before_exec is not None:
        raise result.error_before_exec


# what a model would write to read the renamed columns: DuckDB's names, aliases, *, a cast,
# a window (seven calls and the answer: the turn's default step limit)
SALARY_CALLS = [
    ("run_sql", {"connection": "frames", "sql": """SELECT "('salary', 'max')" AS s FROM agg"""}),
    ("run_sql", {"connection": "agg", "sql": "SELECT * FROM agg"}),
    ("run_sql", {"connection": "bonus", "sql": "SELECT salary_1 AS s FROM bonus"}),
    ("run_sql", {"connection": "frames", "sql": "SELECT CAST(salary_1 AS VARCHAR) FROM bonus"}),
    ("run_sql", {"connection": "frames", "sql": "SELECT max(salary_1) OVER () AS m FROM bonus"}),
    ("describe_frame", {"name": "bonus"}),
    ("search_schema", {"connection": "frames", "question": "highest salary"}),
]


@pytest.fixture
def salary_proxy(jupyter_server_factory: Any, fresh_provider: FakeProvider) -> JupyterServer:
    """A proxy whose admin withholds salaries: ``redact_columns: ["salary"]``."""
    return jupyter_server_factory(
        {
            "upstreams": upstreams_for(fresh_provider, a1={"models": ["fake-small"]}),
            "default_model": "fake-small",
            "max_wait_seconds": 5.0,
            "context_policy": {
                "sample_rows": True,
                "value_stats": True,
                "redact_columns": ["salary"],
            },
        }
    )


@pytest.fixture
def salary_ip(
    salary_proxy: JupyterServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("RSQL_PROXY_URL", salary_proxy.proxy_url)
    monkeypatch.setenv("RSQL_PROXY_TOKEN", salary_proxy.token)
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    monkeypatch.setenv("RSQL_BATCH", "0")
    monkeypatch.delenv("RSQL_REPLAY", raising=False)
    clear_cache()
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "rsql_magic")
    made = staff_frames()
    shell.user_ns.update(made)
    yield shell
    for k in made:
        shell.user_ns.pop(k, None)
    clear_cache()


def test_an_agent_turn_over_renamed_frame_columns_sends_the_provider_no_salary(
    salary_ip: InteractiveShell, fresh_provider: FakeProvider
) -> None:
    fresh_provider.script(
        *[tool_call(n, a, f"call_{i}") for i, (n, a) in enumerate(SALARY_CALLS)],
        "The salaries are withheld.",
    )
    run(salary_ip, "%%ask --agent --no-cache\nWhat is the highest salary per dept?")
    assert len(fresh_provider.received) == len(SALARY_CALLS) + 1
    results = [
        m["content"]
        for m in fresh_provider.received[-1].body["messages"]
        if m.get("role") == "tool"
    ]
    assert len(results) == len(SALARY_CALLS)
    assert not salary_values_in(upstream_texts(fresh_provider)), results
    # the model was told why, and the user's frames are untouched
    assert any("withholds" in r for r in results)
    assert salary_ip.user_ns["agg"][("salary", "max")].max() == max(SALARIES)


def test_the_chat_panels_agent_over_renamed_frame_columns_sends_no_salary(
    salary_ip: InteractiveShell, salary_proxy: JupyterServer, fresh_provider: FakeProvider
) -> None:
    require("anywidget", reason="the chat panel's agent is an anywidget panel")
    from rsql_magic.chat.panel import ChatPanel

    panel = ChatPanel(
        salary_ip,
        client=ProxyClient(salary_proxy.proxy_url, salary_proxy.token),
        model="fake-small",
        refresh_usage=False,
    )
    panel.agent_btn.value = True
    calls = SALARY_CALLS[:4]
    fresh_provider.script(
        *[tool_call(n, a, f"call_{i}") for i, (n, a) in enumerate(calls)], "Withheld."
    )
    assert panel.send("What is the highest salary?") and panel.wait(60)
    assert panel.turns[-1].state == "done", panel.turns[-1].error
    assert len(fresh_provider.received) == len(calls) + 1
    assert not salary_values_in(upstream_texts(fresh_provider))
