"""The kernel side of "the admin decides": a notebook's requests carry its path and cell to the
real proxy (a Jupyter server in this process) and %ask_cost shows that notebook's spend; the
magics ask the user's default models and stop a model not allowed before sending; a policy
window shows its message and end in the cell (and still fails a batch run); %ask_status and the
chat panel's header say what the user may use. Proxy text is hostile: shown only as safe
Markdown."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from rsql_magic.errors import ProxyError, UsageError
from rsql_magic.magics.ask import render_me
from rsql_magic.privacy import clear_cache
from rsql_magic.render import cost_markdown, markdown_bundle, refusal_markdown
from rsql_magic.sanitize import IMAGE_MARK
from tests.helpers import require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernel_policy import rendered, shown_markdown
from tests.helpers.servers import InProcessJupyter

SAFE_TAGS = {
    "p",
    "strong",
    "em",
    "blockquote",
    "a",
    "ul",
    "li",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "code",
    "br",
}

# $0.001 a token
PRICED = {
    "prices": {
        "fake-small": {"input": 1000.0, "output": 1000.0},
        "fake-large": {"input": 1000.0, "output": 1000.0},
    }
}
ENTITLED = {
    "group:students": {"models": ["fake-small"], "default_model": "fake-small"},
    "group:staff": {"default_model": "fake-large", "sql_default_model": "fake-small"},
}


def iso(seconds_from_now: float) -> str:
    t = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds_from_now)
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


EXAM = {
    "name": "exam",
    "groups": ["students"],
    "start": iso(-3600),
    "end": iso(3600),
    "mode": "off",
    "message": "No assistant during the exam.",
}


def proxy(factory: Any, fp: FakeProvider, **config: Any) -> InProcessJupyter:
    return factory(
        {
            "upstreams": upstreams_for(fp, a1=PRICED, a2=PRICED, b1=PRICED),
            "default_model": "fake-small",
            "user_daily_budget_usd": 5.0,
            "user_limits": ["50/minute"],
            "admin_timezone": "Europe/Berlin",
            **config,
        },
        named_users=True,
    )


@pytest.fixture
def ip(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """This process's IPython shell with rsql_magic loaded; its settings restored afterwards."""
    for k in (
        "RSQL_PROXY_URL",
        "RSQL_PROXY_TOKEN",
        "RSQL_MODEL",
        "RSQL_BATCH",
        "RSQL_REPLAY",
        "RSQL_NOTEBOOK",
        "JPY_SESSION_NAME",
        "JPY_PARENT_PID",
    ):
        monkeypatch.delenv(k, raising=False)
    clear_cache()  # GET me of an earlier test's proxy on the same port must not count
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "rsql_magic")
    shell.run_line_magic("config", "RSQLMagic.stream = False")
    yield shell
    for trait in ("proxy_url", "proxy_token", "notebook"):
        shell.run_line_magic("config", f"RSQLMagic.{trait} = None")
    shell.run_line_magic("config", "RSQLMagic.stream = True")
    shell.run_line_magic("config", "RSQLMagic.batch = 'auto'")
    clear_cache()


def as_user(shell: Any, server: InProcessJupyter, token: str) -> None:
    clear_cache()
    shell.run_line_magic("config", f"RSQLMagic.proxy_url = {server.proxy_url!r}")
    shell.run_line_magic("config", f"RSQLMagic.proxy_token = {token!r}")


def run(shell: Any, code: str, cell_id: str | None = None) -> tuple[Any, str]:
    """Run a cell as a frontend does (with its cell id); what it raised, and what it showed."""
    with capture_output() as cap:
        result = shell.run_cell(code, store_history=True, cell_id=cell_id)
    return result.error_in_exec, shown_markdown(cap.outputs)


def test_each_request_is_billed_to_its_notebook_and_cell_and_ask_cost_shows_only_this_notebook(
    ip: Any, jupyter_app_factory: Any, fresh_provider: FakeProvider
) -> None:
    server = proxy(jupyter_app_factory, fresh_provider, notebook_names=True)
    as_user(ip, server, "tok-carol")
    here = "Kurs/Woche 1 – Übung.ipynb"  # not ASCII: percent-encoded on the way
    ip.run_line_magic("config", f"RSQLMagic.notebook = {here!r}")
    for code, cell in (
        ("%%ask --no-data\nWhat is a join?", "cell-one"),
        ("%%ask --no-data\nWhat is a left join, in more words?", "cell-two"),
        ("%ask --no-data --no-cache What is a left join, in more words?", "cell-two"),
    ):
        err, _ = run(ip, code, cell)
        assert err is None, err
    ip.run_line_magic("config", "RSQLMagic.notebook = 'elsewhere.ipynb'")
    assert run(ip, "%%ask --no-data\nAnd a cross join?", "cell-else")[0] is None
    assert len(fresh_provider.received) == 4

    ip.run_line_magic("config", f"RSQLMagic.notebook = {here!r}")
    err, md = run(ip, "%ask_cost")
    assert err is None
    assert f"**Spend in this notebook**: {here}" in md
    assert (
        "| today (since 00:00 UTC) | 3 |" in md
        and "| this week (since Monday 00:00 UTC) | 3 |" in md
    )
    cells = re.findall(r"^\| (cell-[a-z]+) \|", md, re.M)
    assert cells == ["cell-two", "cell-one"]  # the dearest first; the other notebook's is not here
    ip.run_line_magic("config", "RSQLMagic.notebook = 'elsewhere.ipynb'")
    assert "| today (since 00:00 UTC) | 1 |" in run(ip, "%ask_cost")[1]


def test_ask_cost_says_how_to_name_an_unknown_notebook(
    ip: Any, jupyter_app_factory: Any, fresh_provider: FakeProvider
) -> None:
    as_user(ip, proxy(jupyter_app_factory, fresh_provider), "tok-carol")
    err, md = run(ip, "%ask_cost")  # a terminal IPython in a folder with no notebook
    assert err is None and "this notebook is not known here" in md
    assert "%config RSQLMagic.notebook = 'path/to/notebook.ipynb'" in md and "RSQL_NOTEBOOK" in md


def test_the_users_default_models_are_asked_and_a_model_not_allowed_is_stopped_before_sending(
    ip: Any, jupyter_app_factory: Any, fresh_provider: FakeProvider
) -> None:
    server = proxy(jupyter_app_factory, fresh_provider, limit_overrides=ENTITLED)
    as_user(ip, server, "tok-carol")  # staff: fake-large for %%ask, fake-small for %%sql_ai
    assert run(ip, "%%ask --no-data\nWhat is a window function?")[0] is None
    assert fresh_provider.received[-1].body["model"] == "fake-large"
    ip.user_ns["conn"] = sqlite3.connect(":memory:")
    ip.user_ns["conn"].execute("CREATE TABLE t (x INTEGER)")
    fresh_provider.script("```sql\nSELECT COUNT(*) AS n FROM t\n```")
    try:
        err, _ = run(ip, "%%sql_ai conn\nHow many rows are in t?")
    finally:
        ip.user_ns.pop("conn", None)
    assert err is None and fresh_provider.received[-1].body["model"] == "fake-small"

    as_user(ip, server, "tok-alice")  # students: fake-small only
    before = len(fresh_provider.received)
    err, _ = run(ip, "%%ask --model fake-large --no-data\nWhat is a join?")
    assert isinstance(err, UsageError)
    assert "--model 'fake-large'" in str(err) and "Models you may use: fake-small" in str(err)
    assert len(fresh_provider.received) == before  # nothing was sent
    err, md = run(ip, "%ask_status")
    assert "- **you may use**: fake-small" in md and "- **default** (%%ask, chat): fake-small" in md
    assert "- **you**: alice (groups: students)" in md
    assert "| 50/minute | 0 | 50 | - | moving 60 s |" in md  # carol's requests are not hers
    assert "- **budget**: $0.00 spent of $5.00 today, $5.00 left; resets " in md


def test_inside_an_off_window_the_cell_shows_the_admins_message_and_its_end(
    ip: Any, jupyter_app_factory: Any, fresh_provider: FakeProvider
) -> None:
    server = proxy(jupyter_app_factory, fresh_provider, policy_windows=[EXAM])
    as_user(ip, server, "tok-alice")
    end = dt.datetime.fromisoformat(EXAM["end"].replace("Z", "+00:00"))
    end_utc, end_local = (
        end.strftime("%Y-%m-%d %H:%M UTC"),
        end.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin")).strftime(
            "%Y-%m-%d %H:%M %Z"
        ),
    )
    err, md = run(ip, "%%ask --no-data\nWhat is a join?")
    assert err is None  # a person reads the note: no traceback
    assert "**The assistant is not available now**: policy window exam (off: no assistant)" in md
    assert "> No assistant during the exam." in md
    assert f"It ends {end_utc} ({end_local})." in md
    assert "proxy error 403" not in md and fresh_provider.received == []

    ip.run_line_magic("config", "RSQLMagic.batch = 'yes'")  # nbconvert: the run must fail
    err, md = run(ip, "%%ask --no-data\nWhat is a join?")
    assert isinstance(err, ProxyError) and "No assistant during the exam." in str(err)
    assert (
        "not available now (403, policy window)" in str(err)
        and "No assistant during the exam." in md
    )
    ip.run_line_magic("config", "RSQLMagic.batch = 'auto'")

    err, md = run(ip, "%ask_status")
    assert "**Policy window in force**: exam (off: no assistant)" in md
    assert f"- **until**: {end_utc} ({end_local})" in md and "- **you may use**: none now" in md

    as_user(ip, server, "tok-carol")  # staff are not in the exam
    assert run(ip, "%%ask --no-data\nWhat is a join?")[0] is None
    assert len(fresh_provider.received) == 1


def test_the_chat_panels_header_says_the_model_budget_and_window(
    ip: Any, jupyter_app_factory: Any, fresh_provider: FakeProvider
) -> None:
    require("ipywidgets", reason="the chat panel is ipywidgets")
    from rsql_magic.chat.panel import ChatPanel
    from rsql_magic.client import ProxyClient

    server = proxy(
        jupyter_app_factory, fresh_provider, limit_overrides=ENTITLED, policy_windows=[EXAM]
    )
    clear_cache()
    staff = ChatPanel(ip, client=ProxyClient(server.proxy_url, "tok-carol"), refresh_usage=False)
    staff.refresh_usage()
    assert (
        "carol · model: fake-large · requests left: 50 of 50/minute · budget left: $5.00 of $5.00 today"
        in staff.usage.value
    )
    student = ChatPanel(ip, client=ProxyClient(server.proxy_url, "tok-alice"), refresh_usage=False)
    student.refresh_usage()
    assert "window: exam (off) until " in student.usage.value
    assert student.send("What is a join?") is True
    assert student.wait(30)
    assert "No assistant during the exam." in student.status.value and fresh_provider.received == []


def test_status_from_a_given_me_is_sectioned_and_keeps_unknown_keys() -> None:
    me = {
        "user": "alice",
        "groups": ["students"],
        "admin": False,
        "models": ["llama-3.1-8b-instant", "local"],
        "default_model": "llama-3.1-8b-instant",
        "sql_default_model": None,
        "limits": [
            {
                "limit": "30/minute",
                "used": 3,
                "remaining": 27,
                "resets_in_seconds": 41.0,
                "resets_at": "2001-02-03T04:05:06Z",
                "window": "moving 60 s",
            }
        ],
        "concurrency": {"limit": 2, "in_flight": 1},
        "budget": {
            "daily_usd": 0.5,
            "spent_usd": 0.125,
            "remaining_usd": 0.375,
            "resets_at": "2001-02-04T00:00:00Z",
        },
        "window": {
            "name": "course hours",
            "mode": "custom",
            "message": "Lab: small models only",
            "starts_at": "2001-02-03T08:00:00Z",
            "ends_at": "2001-02-03T10:00:00Z",
            "ends_at_local": "2001-02-03 11:00 CET",
            "timezone": "Europe/Berlin",
        },
        "context_policy": {"sample_rows": False, "redact_columns": ["*email*"]},
        "seats": {"course": "SQL 101"},  # a key this kernel does not know yet
    }
    md = "\n".join(render_me(me))
    assert "- **you**: alice (groups: students)" in md
    assert "- **you may use**: llama-3.1-8b-instant, local" in md
    assert "- **default** (%%ask, chat): llama-3.1-8b-instant" in md
    assert "- **%%sql_ai default**: the default above" in md
    assert "| limit | used | left | resets | window |" in md
    assert "| 30/minute | 3 | 27 | 2001-02-03 04:05 UTC (in 41 s) | moving 60 s |" in md
    assert "- **requests at once**: 1 in flight of 2 allowed" in md
    assert (
        "- **budget**: $0.1250 spent of $0.50 today, $0.3750 left; resets 2001-02-04 00:00 UTC"
        in md
    )
    assert "**Policy window in force**: course hours (custom: models and budget of its own)" in md
    assert "- **message**: Lab: small models only" in md
    assert "- **until**: 2001-02-03 10:00 UTC (2001-02-03 11:00 CET)" in md
    assert "| sample_rows | False |" in md and "| redact_columns | *email* |" in md
    assert "- **seats.course**: SQL 101" in md
    # one item per line, tables set off by blank lines: it renders as tables and lists, not
    # as one run-on paragraph
    import markdown

    html = markdown.markdown(markdown_bundle(md)["text/markdown"], extensions=["tables"])
    assert html.count("<table>") == 2 and html.count("<li>") >= 10


def test_policy_notes_show_hostile_proxy_text_as_text() -> None:
    hostile = '<img src=x onerror="alert(1)"> [x](javascript:alert(2)) ![i](https://evil.example/p)'
    window = ProxyError(
        403,
        "refused",
        code="policy_window",
        window={
            "name": "exam<script>",
            "mode": "off",
            "message": hostile,
            "ends_at": "2026-11-23T18:00:00Z",
            "ends_at_local": "2026-11-23 19:00 CET",
        },
    )
    md = markdown_bundle(refusal_markdown(window) or "")["text/markdown"]
    tags, hrefs = rendered(md)
    # the image: a link, not loaded
    assert tags <= SAFE_TAGS and hrefs == ["https://evil.example/p"]
    assert IMAGE_MARK in md and "It ends 2026-11-23 18:00 UTC (2026-11-23 19:00 CET)." in md
    models = ProxyError(
        403,
        "you may not use the model 'big'",
        code="model_not_allowed",
        allowed_models=["small|<b>x</b>", "local"],
    )
    md = markdown_bundle(refusal_markdown(models) or "")["text/markdown"]
    assert (
        rendered(md)[0] <= SAFE_TAGS and "Models you may use: small\\|&lt;b>x&lt;/b>, local." in md
    )
    assert "model not allowed (403)" in str(models)
    # not the policy's
    assert refusal_markdown(ProxyError(403, "forbidden", code="forbidden")) is None


def test_ask_cost_shows_hostile_paths_cell_ids_and_labels_as_text() -> None:
    """`%ask_cost`'s table is built from the proxy's answer (notebook name, cell ids) and from the
    notebook's own cells (labels): markup in any of them stays text."""
    hostile = '<img src=x onerror="alert(1)"> [x](javascript:alert(2)) |'
    cost = {
        "notebook": hostile,
        "today": {"requests": 1, "cost_usd": 0.01},
        "week": {"requests": 2, "cost_usd": 0.02},
        "cells": [{"cell": hostile, "requests": 2, "cost_usd": 0.02}],
    }
    md = markdown_bundle(
        cost_markdown(
            cost, "nb<script>alert(3)</script>.ipynb", {hostile: "<script>alert(4)</script>"}
        )
    )["text/markdown"]
    tags, hrefs = rendered(md)
    assert tags <= SAFE_TAGS and not any(h.lower().startswith("javascript") for h in hrefs)
    assert "nb&lt;script>alert(3)&lt;/script>.ipynb" in md
