"""Privacy on the kernel side: the admin's context policy in every collector, what leaves the
kernel (``--show-context``, the chat's context view), and the fallback footer.

Frames and tables hold emails, phone numbers, card numbers, student ids and names. With a
policy and redaction patterns set on a real proxy (a Jupyter server with the rsql extension in
front of the loopback fake provider), the provider's recorded requests must hold none of them,
whatever the user sets; ``--no-data`` stays stricter still.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

from rsql_magic.client import ChatResult, ProxyClient
from rsql_magic.context import build_context
from rsql_magic.context.frames import describe_frame
from rsql_magic.privacy import ContextPolicy, clear_cache
from rsql_magic.render import footer
from tests.helpers import require, upstreams_for
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import kernel_env, make_notebook, outputs_text, run_notebook
from tests.helpers.servers import JupyterServer

EMAILS = ["alice.smith@uni.example.org", "bob.jones@example.com"]
PHONES = ["+44 20 7946 0958", "030 1234567"]
CARDS = ["4111 1111 1111 1111", "5500 0000 0000 0004"]
IDS = ["S1234567", "S7654321"]
NAMES = ["Alice Smith", "Bob Jones"]
SECRETS = EMAILS + PHONES + CARDS + IDS + NAMES

POLICY = {
    "sample_rows": True,
    "value_stats": True,
    "redact_columns": ["*email*", "student_id", "card*", "*name*"],
}
PATTERNS = ["email", "phone", "card", {"name": "student_id", "regex": r"S\d{7}"}]


def people() -> pd.DataFrame:
    """Personal data in redacted columns (email, ids, names, cards) and in columns the policy
    lets through (phone, notes): those the proxy's patterns must mask."""
    return pd.DataFrame(
        {
            "student_id": IDS,
            "full_name": NAMES,
            "email": EMAILS,
            "phone": PHONES,
            "card_number": CARDS,
            "notes": [f"mail {EMAILS[1]}", f"id {IDS[1]}"],
            "payment": [CARDS[0], "cash"],
            "grade": [1.7, 2.3],
        }
    )


def leaked(texts: list[str]) -> list[str]:
    """Every secret (also without its spaces) found in any of ``texts``."""
    blob = "\n".join(texts)
    squeezed = blob.replace(" ", "")
    return [s for s in SECRETS if s in blob or s.replace(" ", "") in squeezed]


def upstream_texts(fp: FakeProvider) -> list[str]:
    return [json.dumps(r.body, ensure_ascii=False) for r in fp.received]


def shown(outputs: list[Any]) -> str:
    """The text of displayed bundles (plain text and Markdown)."""
    return "\n".join(
        str(v)
        for o in outputs
        if isinstance(o, dict)
        for k, v in o.items()
        if k in ("text/plain", "text/markdown")
    )


# -- pure: the policy and the collectors ----------------------------------------------------


def test_policy_parsing_merging_and_matching() -> None:
    p = ContextPolicy.from_dict(POLICY, "admin")
    assert p.redacts("EMAIL") and p.redacts("work_Email_2") and p.redacts("student_id")
    assert p.redacts("card_number") and p.redacts(("contact", "Full_Name"))
    assert not p.redacts("phone") and not p.redacts("grade") and not p.redacts("student_ids")
    # the user's settings only ever add restrictions
    loose = ContextPolicy.from_dict(
        {"sample_rows": True, "value_stats": True, "redact_columns": []}, "user"
    )
    strict_admin = ContextPolicy.from_dict({"sample_rows": False, "value_stats": False}, "admin")
    merged = strict_admin.merge(loose)
    assert not merged.sample_rows and not merged.value_stats
    assert p.merge(loose).redact_columns == p.redact_columns
    both = p.merge(ContextPolicy.from_dict({"redact_columns": ["phone"]}, "user"))
    assert both.redacts("phone") and both.redacts("email") and both.source == "admin + user"
    # malformed fields are read as the strict value, never as "allowed"
    odd = ContextPolicy.from_dict({"sample_rows": "yes", "value_stats": 1, "redact_columns": 7})
    assert not odd.sample_rows and not odd.value_stats and odd.redacts("anything")
    assert ContextPolicy.from_dict(None).is_open


def test_frame_collectors_obey_the_policy() -> None:
    df = people()
    text = describe_frame("people", df, policy=ContextPolicy.from_dict(POLICY))
    for col in ("student_id", "full_name", "email", "card_number"):
        assert f"- {col}: " in text and text.count("(values withheld by policy)") == 4
    assert "[redacted]" in text and "range 1.7..2.3" in text  # others keep their stats
    # only the columns the policy lets through (phone, notes, payment) still hold values
    assert sorted(leaked([text])) == sorted([*PHONES, EMAILS[1], IDS[1], CARDS[0]])
    # value_stats off: names and dtypes only; sample_rows off: no rows
    no_stats = describe_frame("people", df, policy=ContextPolicy(value_stats=False))
    assert "range" not in no_stats and "distinct" not in no_stats and "nulls" not in no_stats
    no_rows = describe_frame("people", df, policy=ContextPolicy(sample_rows=False))
    assert "first 2 rows" not in no_rows and "range 1.7..2.3" in no_rows
    # an index named like a redacted column: its values are not shown either
    idx = df.set_index("student_id")[["grade"]]
    itext = describe_frame("p", idx, policy=ContextPolicy(redact_columns=("student_id",)))
    assert "first 2 rows" in itext and not leaked([itext])
    assert IDS[0] in describe_frame("p", idx)  # without the policy the index is shown
    # polars too
    require("polars")
    import polars as pl

    pdf = pl.DataFrame({"student_id": IDS, "email": EMAILS, "grade": [1.7, 2.3]})
    ptext = describe_frame(
        "pp", pdf, policy=ContextPolicy(redact_columns=("*EMAIL*", "student_id"))
    )
    assert not leaked([ptext]) and "[redacted]" in ptext and "range 1.7..2.3" in ptext
    ctx = build_context(
        question="q",
        ns={"pp": pdf, "people": df},
        frames=["pp", "people"],
        policy=ContextPolicy.from_dict(POLICY),
    )
    assert ctx.withheld == [
        "pp.student_id",
        "pp.email",
        "people.student_id",
        "people.full_name",
        "people.email",
        "people.card_number",
    ]


def test_r_collector_obeys_the_policy() -> None:
    require("rpy2", reason="the R collector")
    from tests.helpers.kernels import import_rpy2

    import_rpy2()
    from rsql_magic.context.rsession import describe_r_session, import_robjects

    ro = import_robjects()
    ro.r(
        f'people_r <- data.frame(student_id = c("{IDS[0]}", "{IDS[1]}"), '
        f'email = c("{EMAILS[0]}", "{EMAILS[1]}"), '
        'grp = factor(c("Alice Smith", "Bob Jones")), grade = c(1.7, 2.3))'
    )
    try:
        pol = ContextPolicy(redact_columns=("*EMAIL*", "student_id"), value_stats=False)
        text = describe_r_session(
            budget_chars=20_000, max_frames=50, prefer=["people_r"], policy=pol
        )
        assert "- email: character (values withheld by policy)" in text
        assert "[redacted]" in text and not leaked(
            [text.replace(NAMES[0], "").replace(NAMES[1], "")]
        )
        assert "- grp: factor\n" in text  # levels are values: no value stats, no levels
        assert NAMES[0] in text  # in the sample rows, which this policy allows
        ctx = build_context(
            question="people_r",
            ns={},
            include_frames=False,
            include_r=True,
            policy=pol,
            budget_tokens=5000,
        )
        assert {"people_r.student_id", "people_r.email"} <= set(ctx.withheld)
        rows_off = describe_r_session(
            budget_chars=20_000,
            max_frames=50,
            prefer=["people_r"],
            policy=ContextPolicy(sample_rows=False),
        )
        assert "Alice Smith" in rows_off and IDS[0] not in rows_off  # levels yes, rows no
    finally:
        ro.r("rm(people_r)")


def test_fallback_footer() -> None:
    res = ChatResult(
        text="x",
        model="smol",
        usage={"prompt_tokens": 3, "completion_tokens": 4},
        latency_s=0.5,
        fallback="local",
    )
    assert footer(res).startswith("answered by the local fallback model (local) · smol · ")
    assert "fallback" not in footer(ChatResult(text="x", model="m"))
    evil = ChatResult(text="x", model="m", fallback="<script>x</script>")
    assert "<" not in footer(evil)


# -- through a real proxy with a policy -----------------------------------------------------


@pytest.fixture
def policy_proxy(jupyter_server_factory: Any, fresh_provider: FakeProvider) -> JupyterServer:
    ups = upstreams_for(
        fresh_provider,
        a1={"models": ["fake-small"]},
        a2={"models": ["fake-small"]},
        b1={"name": "local", "models": ["fake-large"]},
    )
    return jupyter_server_factory(
        {
            "upstreams": ups,
            "default_model": "fake-small",
            "max_wait_seconds": 5.0,
            "context_policy": POLICY,
            "redact_patterns": PATTERNS,
            "fallback_model": "local",
        }
    )


@pytest.fixture
def ip(policy_proxy: JupyterServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("RSQL_PROXY_URL", policy_proxy.proxy_url)
    monkeypatch.setenv("RSQL_PROXY_TOKEN", policy_proxy.token)
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    monkeypatch.delenv("RSQL_BATCH", raising=False)
    monkeypatch.delenv("RSQL_REPLAY", raising=False)
    clear_cache()
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "rsql_magic")
    m = shell.magics_manager.registry["RSQLMagic"]
    saved = (m.context_policy, m.stream)
    m.stream = False
    yield shell
    m.context_policy, m.stream = saved
    for k in ("people", "conn", "msgs", "res", "_"):
        shell.user_ns.pop(k, None)
    clear_cache()


def run(ip: InteractiveShell, cell: str) -> list[Any]:
    """Run a cell; return what it displayed (raw bundles)."""
    got: list[Any] = []
    pub = ip.display_pub
    orig = pub.publish

    def publish(data: Any, *a: Any, **kw: Any) -> None:
        got.append(data)
        orig(data, *a, **kw)

    pub.publish = publish  # type: ignore[method-assign]
    try:
        r = ip.run_cell(cell)
    finally:
        pub.publish = orig  # type: ignore[method-assign]
    if r.error_in_exec is not None:
        raise r.error_in_exec
    if r.error_before_exec is not None:
        raise r.error_before_exec
    return got


def test_ask_sends_no_personal_values_and_show_context_says_what_leaves(
    ip: InteractiveShell, fresh_provider: FakeProvider
) -> None:
    ip.user_ns["people"] = people()
    # --show-context: what leaves, after policy and redaction; the model sees nothing
    out = shown(run(ip, "%%ask --df people --show-context\nWhy is grade a float?"))
    assert fresh_provider.received == []
    assert "nothing sent (--show-context)" in out
    assert (
        "withheld by the admin's policy: values of people.student_id, people.full_name, "
        "people.email, people.card_number"
    ) in out
    assert "sample rows: sent" in out
    mask = out.split("the proxy will mask ", 1)[1].split("\n", 1)[0]
    assert "email" in mask and "phone" in mask and "card" in mask and "student_id" in mask
    assert not leaked([out])  # what the preview shows is what the upstream would see

    fresh_provider.script("Because of decimals.")
    out = shown(
        run(
            ip,
            "%%ask --df people --no-cache\nWhy is grade a float? Mail alice.smith@uni.example.org",
        )
    )
    assert "fallback" not in out and "via a" in out  # the usual upstream: no fallback words
    assert len(fresh_provider.received) == 1
    assert not leaked(upstream_texts(fresh_provider))
    prompt = fresh_provider.received[0].body["messages"][-1]["content"]
    assert "- grade: float64, nulls 0, range 1.7..2.3" in prompt  # the rest still helps
    assert "first 2 rows" in prompt and "<phone-1>" in prompt

    # a user cannot loosen the admin's policy
    ip.run_line_magic(
        "config",
        "RSQLMagic.context_policy = {'sample_rows': True, "
        "'value_stats': True, 'redact_columns': []}",
    )
    fresh_provider.script("Still private.")
    run(ip, "%%ask --df people --no-cache\nWhat is in people?")
    assert not leaked(upstream_texts(fresh_provider))
    assert (
        "(values withheld by policy)" in fresh_provider.received[-1].body["messages"][-1]["content"]
    )

    # ... but can be stricter: --no-data sends no rows or values at all, and a local policy adds
    fresh_provider.script("Schemas only.")
    run(ip, "%%ask --df people --no-data --no-cache\nWhat is in people?")
    last = fresh_provider.received[-1].body["messages"][-1]["content"]
    assert "first 2 rows" not in last and "range" not in last and "<phone" not in last
    assert "- grade: float64" in last  # the frame's schema still goes
    ip.run_line_magic(
        "config",
        "RSQLMagic.context_policy = {'sample_rows': False, "
        "'redact_columns': ['phone', 'notes', 'pay*']}",
    )
    out = shown(run(ip, "%%ask --df people --show-context\nWhat is in people?"))
    assert (
        "withheld by your policy (RSQLMagic.context_policy): values of people.phone, "
        "people.notes, people.payment"
    ) in out
    assert "sample rows: withheld by your policy" in out
    assert "the proxy's redaction masks nothing here" in out and not leaked([out])

    # {var} references obey the policy as well: withheld in the kernel, by name, before the
    # proxy's patterns (which would mask an email or a phone number anyway) see them; a name,
    # which no pattern masks, shows it
    ip.run_line_magic("config", "RSQLMagic.context_policy = {}")
    ip.user_ns["student_email"] = EMAILS[1]
    ip.user_ns["student_name"] = NAMES[0]
    ip.user_ns["phones"] = people()["phone"]
    fresh_provider.script("ok")
    run(
        ip,
        "%%ask --df people --no-cache\nCompare {student_email}, {student_name} and {phones}",
    )
    assert not leaked(upstream_texts(fresh_provider))
    sent = fresh_provider.received[-1].body["messages"][-1]["content"]
    assert NAMES[0] not in sent
    for name in ("student_email", "student_name"):
        assert f"<str `{name}`: values withheld by the context policy>" in sent, sent
    ip.user_ns.pop("student_email")
    ip.user_ns.pop("student_name")
    ip.user_ns.pop("phones")


def test_sql_ai_and_ask_sql_send_no_values(
    ip: InteractiveShell, fresh_provider: FakeProvider
) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, phone TEXT, "
        "card TEXT, student_id TEXT, full_name TEXT)"
    )
    conn.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?)",
        [(i, EMAILS[i], PHONES[i], CARDS[i], IDS[i], NAMES[i]) for i in range(2)],
    )
    ip.user_ns["conn"] = conn
    fresh_provider.script("```sql\nSELECT id, email FROM customers WHERE email = '<email-1>'\n```")
    out = shown(run(ip, f"%%sql_ai conn -o res --no-cache\nThe row of {EMAILS[0]} ({IDS[0]})"))
    assert len(fresh_provider.received) == 1 and not leaked(upstream_texts(fresh_provider))
    assert "CREATE TABLE customers" in fresh_provider.received[0].body["messages"][0]["content"]
    # the SQL client gets the placeholder back, never the value mapped into code: no row
    assert len(ip.user_ns["res"]) == 0 and "1 call(s)" in out
    fresh_provider.script("Group by email.")
    run(ip, "%%ask --sql conn --no-cache\nHow many customers per email domain?")
    assert not leaked(upstream_texts(fresh_provider))


def test_chat_panel_obeys_the_policy_and_shows_its_context(
    ip: InteractiveShell, policy_proxy: JupyterServer, fresh_provider: FakeProvider
) -> None:
    require("ipywidgets", reason="the chat panel is ipywidgets")
    from rsql_magic.chat.panel import ChatPanel

    ip.user_ns["people"] = people()
    client = ProxyClient(policy_proxy.proxy_url, policy_proxy.token)
    panel = ChatPanel(ip, client=client, model="fake-small", refresh_usage=False, frames=["people"])
    text = panel.show_context(True)
    assert panel.context_view.layout.display == "" and "withheld by the admin's policy" in text
    assert "people.email" in text and "the proxy will mask" in text and not leaked([text])
    assert not leaked([panel.context_view.value]) and fresh_provider.received == []
    panel.show_context(False)
    assert panel.context_view.layout.display == "none"

    fresh_provider.script("Look at the grade column.")
    assert panel.send(f"Who is {EMAILS[1]}?") and panel.wait(30)
    assert panel.turns[-1].state == "done", panel.turns[-1].error
    assert not leaked(upstream_texts(fresh_provider))
    # the frame went, its redacted columns' values withheld in the kernel (the proxy's patterns
    # mask no names)
    sent = json.dumps(fresh_provider.received[0].body)
    assert "`people`" in sent and "(values withheld by policy)" in sent, sent
    # the user's own words come back restored in the history shown to them, not upstream
    fresh_provider.script("Second answer.")
    assert panel.send("And the others?") and panel.wait(30)
    assert len(fresh_provider.received) == 2 and not leaked(upstream_texts(fresh_provider))


def _only_fallback_answers(fp: FakeProvider, reply: str) -> None:
    """Both keys of the requested model fail; the fake provider takes a scripted reply for
    every request, failed ones too, so the reply is queued a few times over."""
    fp.reset()
    fp.set_fault("a1", "status", status=500)
    fp.set_fault("a2", "status", status=500)
    fp.script(*[reply] * 8)


def test_fallback_is_named_in_every_footer(
    ip: InteractiveShell, policy_proxy: JupyterServer, fresh_provider: FakeProvider
) -> None:
    _only_fallback_answers(fresh_provider, "From the fallback.")
    out = shown(run(ip, "%%ask --no-cache\nWhat is a left join?"))
    assert "answered by the local fallback model (local)" in out
    assert fresh_provider.received[-1].alias == "b1"
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER)")
    ip.user_ns["conn"] = conn
    _only_fallback_answers(fresh_provider, "```sql\nSELECT a FROM t\n```")
    out = shown(run(ip, "%%sql_ai conn --no-cache\nall of a"))
    assert "answered by the local fallback model (local)" in out
    require("ipywidgets", reason="the chat panel is ipywidgets")
    from rsql_magic.chat.panel import ChatPanel

    panel = ChatPanel(
        ip,
        client=ProxyClient(policy_proxy.proxy_url, policy_proxy.token),
        model="fake-small",
        refresh_usage=False,
    )
    _only_fallback_answers(fresh_provider, "Chat from the fallback.")
    assert panel.send("What is a join?") and panel.wait(30)
    assert "answered by the local fallback model (local)" in panel.turns[-1].footer.value


def test_unreadable_policy_fails_closed(
    policy_proxy: JupyterServer, fresh_provider: FakeProvider
) -> None:
    """A `me` the proxy refuses (here: a wrong token) means a client that sends nothing, said
    once by the request's own 401 (no note of a policy for a request never made); a proxy that
    cannot be reached gets nothing sent at all. (A `me` that fails otherwise fails closed:
    tests/unit/test_kernel_policy.py.)"""
    from rsql_magic.client import ProxyError
    from rsql_magic.privacy import effective_policy
    from tests.helpers import free_port

    clear_cache()
    refused = ProxyClient(policy_proxy.proxy_url, "wrong-token")
    pol, notes = effective_policy(refused)
    assert notes == [] and refused.unavailable is not None
    assert refused.unavailable.status == 401
    with pytest.raises(ProxyError, match=r"not authenticated \(401\)") as said:
        refused.chat([{"role": "user", "content": describe_frame("people", people(), policy=pol)}])
    # the error `me` got, raised again: no request was made (one made would raise its own)
    assert said.value is refused.unavailable
    assert fresh_provider.received == []
    # nothing listens: no policy is known, and this client will not send
    dead = ProxyClient(f"http://127.0.0.1:{free_port()}/rsql/", "t", timeout=2)
    pol, notes = effective_policy(dead)
    assert dead.unavailable is not None and dead.unavailable.status == 0
    with pytest.raises(ProxyError) as gone:
        dead.chat([{"role": "user", "content": "x"}])
    assert gone.value is dead.unavailable
    assert fresh_provider.received == []


@pytest.mark.slow
def test_notebook_in_a_real_kernel_obeys_the_policy(
    policy_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """nbclient runs a real kernel (as nbconvert does) against the proxy with a policy."""
    rows = ", ".join(repr(x) for x in EMAILS)
    nb = make_notebook(
        [
            "%load_ext rsql_magic",
            "import pandas as pd\n"
            f"people = pd.DataFrame({{'email': [{rows}], 'phone': {PHONES!r}, 'student_id': {IDS!r},"
            f" 'full_name': {NAMES!r}, 'card_number': {CARDS!r}, 'grade': [1.7, 2.3]}})",
            "%config RSQLMagic.context_policy = {'sample_rows': True, 'value_stats': True, "
            "'redact_columns': []}",
            "%%ask --df people --show-context\nWhat is in people?",
            "%%ask --df people --no-cache\nWhat is in people?",
        ]
    )
    fresh_provider.script("A frame of people.")
    run_notebook(nb, kernel_env(policy_proxy.proxy_url, policy_proxy.token), tmp_path)
    assert len(fresh_provider.received) == 1 and not leaked(upstream_texts(fresh_provider))
    shown_ctx = outputs_text(nb.cells[3])
    assert "withheld by the admin's policy: values of people.email" in shown_ctx
    assert "the proxy will mask" in shown_ctx and "phone" in shown_ctx
    assert not leaked([shown_ctx])


@pytest.mark.slow
def test_inprocess_engine_uses_the_users_own_policy(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """No proxy, no admin: RSQLMagic.context_policy is the policy; nothing overrides it."""
    nb = make_notebook(
        [
            "%load_ext rsql_magic",
            "%config RSQLMagic.context_policy = {'redact_columns': ['*email*', 'phone'], "
            "'sample_rows': True}",
            "import pandas as pd\n"
            f"people = pd.DataFrame({{'email': {EMAILS!r}, 'phone': {PHONES!r}, 'grade': [1.7, 2.3]}})",
            "%%ask --df people --show-context\nWhat is in people?",
            "%%ask --df people\nWhat is in people?",
        ]
    )
    fresh_provider.script("in-process answer")
    env = kernel_env(
        None,
        RSQL_UPSTREAMS=json.dumps(upstreams_for(fresh_provider)),
        RSQL_MODEL="fake-small",
        HOME=str(tmp_path),
    )
    run_notebook(nb, env, tmp_path)
    assert len(fresh_provider.received) == 1 and not leaked(upstream_texts(fresh_provider))
    assert "- grade: float64, nulls 0, range 1.7..2.3" in upstream_texts(fresh_provider)[0]
    ctx = outputs_text(nb.cells[3])
    assert (
        "withheld by your policy (RSQLMagic.context_policy): values of people.email, people.phone"
    ) in ctx and "sample rows: sent" in ctx
