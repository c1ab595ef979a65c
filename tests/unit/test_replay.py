"""Reproducible notebooks: record answers once, replay them in every rerun (rsql_magic.replay).

Unit tests of the fingerprint and the store (pruning, hostile lines, no secrets), and crafted
replay files in an in-process IPython shell. Two writer processes and the command line:
tests/e2e/test_replay_processes.py; the same in real kernels (nbconvert, papermill):
tests/e2e/test_replay_notebooks.py.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from rsql_magic.client import ProxyClient
from rsql_magic.replay import (
    Replay,
    ReplayMissing,
    ReplayStore,
    fingerprint,
    request_parts,
    resolve_mode,
)
from tests.helpers import FAKE_KEY as KEY
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.replay import entry
from tests.helpers.shop import GOOD, SHOP

FRAME_CTX = """Context from my notebook session:

## DataFrames
### DataFrame `sales` (pandas): 3 rows x 2 columns
columns (stats from all rows):
- region: object, 2 distinct
- amount: float64, nulls 0, range 1.5..3.25
first 3 rows:
  region  amount
0  north    1.50

## Last error
In [7]:
x = Foo()
<__main__.Foo object at 0x7f3a1c2b9d50>
File /tmp/ipykernel_4242/1234567.py:1

Question:
Why?"""


def body(content: str = FRAME_CTX, model: str | None = "m", **extra: object) -> dict:
    b: dict = {
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": content}]
    }
    if model:
        b["model"] = model
    b.update(extra)
    return b


# -- fingerprint -----------------------------------------------------------------------------


def test_fingerprint_ignores_noise_and_counts_what_the_model_sees() -> None:
    base = fingerprint(body(temperature=0))
    noise = (
        FRAME_CTX.replace("0x7f3a1c2b9d50", "0x55d0aa01ff10")
        .replace("ipykernel_4242/1234567", "ipykernel_99/7654321")
        .replace("In [7]", "In [12]")
        .replace("\n", "\r\n")
        .replace("Why?", "Why?   ")
    )
    reordered = {"temperature": 0, "model": "m", "messages": body(noise)["messages"]}
    assert fingerprint(reordered) == base
    assert (
        fingerprint(body(temperature=0, stream=True, stream_options={"include_usage": True}))
        == base
    )
    # what the model is shown counts
    new_col = FRAME_CTX.replace("- amount:", "- discount: float64, nulls 0\n- amount:")
    new_rows = FRAME_CTX.replace("0  north    1.50", "0  south    9.00")
    for changed in (
        body(new_col, temperature=0),
        body(new_rows, temperature=0),
        body(model="other", temperature=0),
        body(temperature=0.7),
        body(FRAME_CTX.replace("Why?", "Why not?"), temperature=0),
    ):
        assert fingerprint(changed) != base
    # and request_parts says which part differs
    a, b = request_parts(body()), request_parts(body(new_col))
    diff = sorted(k for k in a if a[k] != b.get(k))
    assert any(k.endswith("/ columns") for k in diff) and not any(
        k.endswith("/ sample rows") for k in diff
    )
    c = request_parts(body(new_rows))
    assert [k for k in a if a[k] != c.get(k) and "/" in k] == [
        "user message 2: DataFrame `sales` (pandas): N rows x N columns / sample rows"
    ]


def test_modes_from_settings_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RSQL_REPLAY", raising=False)
    assert resolve_mode(None, batch=True) == "auto" and resolve_mode(None, batch=False) == "off"
    monkeypatch.setenv("RSQL_REPLAY", "only")
    assert resolve_mode(None, batch=False) == "only"
    assert resolve_mode("refresh", batch=False) == "refresh"  # the setting wins
    monkeypatch.setenv("RSQL_REPLAY", "sometimes")
    with pytest.raises(Exception, match="RSQL_REPLAY='sometimes': expected one of off, auto"):
        resolve_mode(None, batch=True)


# -- the store -------------------------------------------------------------------------------


def test_last_entry_wins_prune_and_hostile_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    store = ReplayStore(path)
    store.append(entry(1, "2026-01-01T00:00:00Z"))
    store.append(entry(2, "2026-03-01T00:00:00Z"))
    store.append(entry(3, "2026-03-02T00:00:00Z"))
    newer = entry(1, "2026-03-03T00:00:00Z")
    newer.text = "answer 1, again"
    store.append(newer)
    with path.open("a") as f:  # a crafted or broken file: such lines are skipped
        f.write("not json\n")
        f.write(json.dumps({**json.loads(entry(4).to_line()), "usage": {"x": "<script>"}}) + "\n")
        f.write(json.dumps({**json.loads(entry(5).to_line()), "fp": "../../etc"}) + "\n")
        f.write(json.dumps({**json.loads(entry(6).to_line()), "recorded": "<b>soon</b>"}) + "\n")
    assert sorted(store.latest()) == [f"{i:032x}" for i in (1, 2, 3)]
    assert store.get(f"{1:032x}").text == "answer 1, again"

    now = dt.datetime(2026, 3, 10, tzinfo=dt.timezone.utc)
    kept, removed = store.prune(older_than_days=8.5, now=now, dry_run=True)
    assert (kept, removed) == (2, 6) and len(path.read_text().splitlines()) == 8
    kept, removed = store.prune(older_than_days=8.5, now=now)
    assert (kept, removed) == (2, 6)
    assert [e.fp[-1] for e in store.entries()] == ["3", "1"]  # 2 is 9 days old; superseded 1 gone
    assert store.prune(keep_last=1) == (1, 1)
    assert [e.text for e in store.entries()] == ["answer 1, again"]


def test_replay_through_the_client_without_secrets(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """auto records what the provider said (a token echoed back is redacted), then replays
    with no request; only names the cell and what changed; the file holds no URL or key."""
    fresh_provider.script(f"Sure. Your key is {KEY}, see http://ann:pw123@db.example.org/x")
    url = f"http://127.0.0.1:{fresh_provider.port}/"
    client = ProxyClient(url, KEY)
    store = ReplayStore(tmp_path / "r.jsonl")
    rp = Replay(
        "auto", store, kind="ask", cell="cell In [3] `%%ask`", question="Why?", secrets=(KEY,)
    )
    first = client.chat(body()["messages"], model="fake-small", temperature=0, replay=rp)
    assert first.replayed_at is None and len(fresh_provider.received) == 1
    again = client.chat(body()["messages"], model="fake-small", temperature=0, replay=rp)
    assert len(fresh_provider.received) == 1  # nothing reached the provider
    assert again.replayed_at and again.text == first.text.replace(KEY, "[redacted]").replace(
        "ann:pw123@", "[redacted]@"
    )
    raw = store.path.read_text()
    assert KEY not in raw and "pw123" not in raw and str(fresh_provider.port) not in raw

    offline = ProxyClient(description="none", unavailable=ReplayMissing("no proxy at all"))
    only = Replay("only", store, kind="ask", cell="cell In [9] `%%ask --df sales`", question="Why?")
    assert (
        offline.chat(body()["messages"], model="fake-small", temperature=0, replay=only).text
        == again.text
    )
    changed = FRAME_CTX.replace("- amount:", "- discount: float64\n- amount:")
    with pytest.raises(ReplayMissing) as err:
        offline.chat(body(changed)["messages"], model="fake-large", temperature=0, replay=only)
    msg = str(err.value)
    assert "no recorded answer for cell In [9] `%%ask --df sales`, question 'Why?'" in msg
    assert "model: recorded 'fake-small', now 'fake-large'" in msg
    assert (
        "changed: user message 2: DataFrame `sales` (pandas): N rows x N columns / columns" in msg
    )
    assert len(fresh_provider.received) == 1

    # in one kernel's run, auto replays earlier runs only: asked twice, asked twice; one line
    session = Replay("auto", store, kind="ask", question="Twice?", recorded_here=set())
    lines = len(store.path.read_text().splitlines())
    for _ in range(2):
        res = client.chat(
            body("Twice?")["messages"], model="fake-small", temperature=0, replay=session
        )
        assert res.replayed_at is None
    assert len(fresh_provider.received) == 3
    assert len(store.path.read_text().splitlines()) == lines + 1
    rerun = Replay("auto", store, kind="ask", question="Twice?", recorded_here=set())
    assert client.chat(
        body("Twice?")["messages"], model="fake-small", temperature=0, replay=rerun
    ).replayed_at
    assert len(fresh_provider.received) == 3


# -- in-process IPython shell, crafted replay files -------------------------------------------


def test_a_crafted_replay_file_cannot_get_sql_past_the_guard(
    fresh_provider: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay file is data someone may hand out: a recorded DROP is refused like a live one."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("RSQL_PROXY_URL", f"http://127.0.0.1:{fresh_provider.port}/")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", KEY)
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    monkeypatch.delenv("RSQL_REPLAY", raising=False)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rsql_magic")
    conn = sqlite3.connect(":memory:")
    conn.executescript(SHOP)
    ip.user_ns["conn"] = conn
    path = tmp_path / "r.jsonl"
    cell = "%%sql_ai conn -o totals\nTotal order amount per region"
    try:
        ip.run_line_magic("config", f"RSQLMagic.replay_file = {str(path)!r}")
        ip.run_line_magic("config", 'RSQLMagic.replay = "auto"')
        fresh_provider.script(GOOD)
        assert ip.run_cell(cell).error_in_exec is None
        assert len(fresh_provider.received) == 1
        recorded = json.loads(path.read_text().splitlines()[-1])
        with path.open("a") as f:  # the same fingerprint, a hostile answer: the last line wins
            f.write(json.dumps({**recorded, "text": "```sql\nDROP TABLE orders\n```"}) + "\n")
        ip.run_line_magic("config", 'RSQLMagic.replay = "only"')
        err = ip.run_cell(cell).error_in_exec
        assert isinstance(err, ReplayMissing)  # as troubleshooting.md names it
        # the replayed DROP was refused; its retry was never recorded, and no proxy is asked
        assert "no recorded answer for cell In [" in err.message
        assert "retry, after: That SQL failed: the read-only guard refused it." in err.message
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 4
        assert len(fresh_provider.received) == 1
    finally:
        ip.run_line_magic("config", "RSQLMagic.replay = None")
        ip.run_line_magic("config", "RSQLMagic.replay_file = None")
        for k in ("conn", "totals", "_"):
            ip.user_ns.pop(k, None)


def test_a_crafted_answer_is_rendered_through_the_sanitizer(
    fresh_provider: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    monkeypatch.setenv("RSQL_PROXY_URL", f"http://127.0.0.1:{fresh_provider.port}/")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", KEY)
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rsql_magic")
    path = tmp_path / "r.jsonl"
    cell = "%%ask --no-data\nWhat is a left join?"
    try:
        ip.run_line_magic("config", f"RSQLMagic.replay_file = {str(path)!r}")
        ip.run_line_magic("config", 'RSQLMagic.replay = "refresh"')
        ip.run_line_magic("config", "RSQLMagic.stream = False")
        fresh_provider.script("A join.")
        assert ip.run_cell(cell).error_in_exec is None
        recorded = json.loads(path.read_text().splitlines()[-1])
        hostile = 'Hi <img src=x onerror="alert(1)"> [x](javascript:alert(2)) \x1b[31mred'
        with path.open("a") as f:
            f.write(
                json.dumps({**recorded, "text": hostile, "recorded": "2026-01-02T03:04:05Z"}) + "\n"
            )
        ip.run_line_magic("config", 'RSQLMagic.replay = "only"')
        with capture_output() as cap:
            assert ip.run_cell(cell).error_in_exec is None
        md = cap.outputs[-1].data["text/markdown"]
        plain = cap.outputs[-1].data["text/plain"]
        assert "<img" not in md and "](javascript:" not in md and "\x1b" not in plain
        assert "replayed (recorded 2026-01-02 03:04 UTC)" in md
        assert len(fresh_provider.received) == 1
        with capture_output() as cap:
            ip.run_line_magic("ask_status", "")
        assert (
            f"**replay**: only (1 answer(s) in {path.name})"
            in cap.outputs[-1].data["text/markdown"]
        )
    finally:
        for trait in ("replay", "replay_file"):
            ip.run_line_magic("config", f"RSQLMagic.{trait} = None")
        ip.run_line_magic("config", "RSQLMagic.stream = True")


# -- replays that follow the configuration (#42) ---------------------------------------------

BAD = "```sql\nSELECT region, SUM(o.total) FROM orders o GROUP BY region\n```"  # no such column


def _shell_with_shop(
    fresh_provider: FakeProvider, path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[object, sqlite3.Connection]:
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setenv("RSQL_PROXY_URL", f"http://127.0.0.1:{fresh_provider.port}/")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", KEY)
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    monkeypatch.delenv("RSQL_REPLAY", raising=False)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "rsql_magic")
    conn = sqlite3.connect(":memory:")
    conn.executescript(SHOP)
    ip.user_ns["conn"] = conn
    ip.run_line_magic("config", f"RSQLMagic.replay_file = {str(path)!r}")
    ip.run_line_magic("config", 'RSQLMagic.replay = "auto"')
    _rerun(ip)  # the shell is shared with the tests above: start as a fresh kernel would
    return ip, conn


def _rerun(ip: object) -> None:
    """A new batch run: nothing recorded by this kernel yet (a fresh kernel's state)."""
    from rsql_magic.session import Session

    Session.of(ip).config.recorded_here.clear()


def test_a_failed_sql_attempt_is_never_replayed_as_an_answer(
    fresh_provider: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cell whose first SQL failed and whose retry worked reruns straight to the SQL that
    worked (one replayed answer, nothing sent); a cell that failed is asked again on rerun
    (auto), and replay-only says its recorded answers failed instead of replaying them."""
    from rsql_magic.errors import SqlAIError

    path = tmp_path / "r.jsonl"
    ip, conn = _shell_with_shop(fresh_provider, path, monkeypatch)
    cell = "%%sql_ai conn -o totals\nTotal order amount per region"
    try:
        fresh_provider.script(BAD, GOOD)
        assert ip.run_cell(cell).error_in_exec is None  # type: ignore[attr-defined]
        assert len(fresh_provider.received) == 2
        _rerun(ip)
        assert ip.run_cell(cell).error_in_exec is None  # type: ignore[attr-defined]
        assert len(fresh_provider.received) == 2  # the SQL that worked, replayed at once:
        calls = ip.magics_manager.registry["SqlAIMagics"].chat_results  # type: ignore[attr-defined]
        assert len(calls) == 1 and calls[0].replayed_at  # not the failed attempt first
        assert list(ip.user_ns["totals"]["total"]) == [130.5, 7.25]  # type: ignore[attr-defined]

        failing = "%%sql_ai conn --max-retries 1\nTotal order amount per town"
        fresh_provider.script(BAD, BAD)
        assert isinstance(ip.run_cell(failing).error_in_exec, SqlAIError)  # type: ignore[attr-defined]
        assert len(fresh_provider.received) == 4
        latest = ReplayStore(path).latest().values()
        assert [e.failed != "" for e in latest if "town" in e.question] == [True, True]
        _rerun(ip)
        fresh_provider.script(BAD, BAD)
        assert isinstance(ip.run_cell(failing).error_in_exec, SqlAIError)  # type: ignore[attr-defined]
        assert len(fresh_provider.received) == 6  # asked again, not replayed
        ip.run_line_magic("config", 'RSQLMagic.replay = "only"')  # type: ignore[attr-defined]
        err = ip.run_cell(failing).error_in_exec  # type: ignore[attr-defined]
        assert isinstance(err, ReplayMissing) and "failed" in err.message
        assert "never replayed" in err.message and len(fresh_provider.received) == 6
    finally:
        ip.run_line_magic("config", "RSQLMagic.replay = None")  # type: ignore[attr-defined]
        ip.run_line_magic("config", "RSQLMagic.replay_file = None")  # type: ignore[attr-defined]
        for k in ("conn", "totals", "_"):
            ip.user_ns.pop(k, None)  # type: ignore[attr-defined]


def test_a_rerun_after_the_model_changed_asks_again_and_says_so(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """Recorded while the user's default was one model, replayed while it still is; once the
    configuration names another (GET me's default), the rerun asks again with a warning and
    records the new model's answer, which the next rerun replays. Offline (the default
    unknown) the recorded answer stands."""
    from rsql_magic.errors import RSQLWarning

    url = f"http://127.0.0.1:{fresh_provider.port}/"
    client = ProxyClient(url, KEY)
    store = ReplayStore(tmp_path / "r.jsonl")
    msgs = body(model=None)["messages"]

    def run(default: str | None, c: ProxyClient = client) -> object:
        rp = Replay("auto", store, kind="ask", cell="cell In [2]", question="Why?")
        return c.chat(msgs, temperature=0, replay=rp, default_model=default)

    first = run("fake-small")
    assert first.model == "fake-small" and len(fresh_provider.received) == 1  # type: ignore[attr-defined]
    assert run("fake-small").replayed_at and len(fresh_provider.received) == 1  # type: ignore[attr-defined]
    with pytest.warns(RSQLWarning, match="came from 'fake-small'.*now answers with 'fake-large'"):
        changed = run("fake-large")
    assert changed.replayed_at is None and changed.model == "fake-large"  # type: ignore[attr-defined]
    assert len(fresh_provider.received) == 2
    assert fresh_provider.received[-1].body["model"] == "fake-large"
    again = run("fake-large")
    assert again.replayed_at and again.model == "fake-large"  # type: ignore[attr-defined]
    offline = ProxyClient(description="none", unavailable=ReplayMissing("no proxy at all"))
    assert run(None, offline).model == "fake-large"  # type: ignore[attr-defined]
    assert len(fresh_provider.received) == 2


@pytest.mark.parametrize(
    ("recorded", "now", "replayed"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", True),  # a dated snapshot of the same model
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5", True),
        ("gpt-4o-mini", "gpt-4o", False),  # a name that starts with another is another model
        ("gpt-4o", "gpt-4o-mini", False),
        ("claude-sonnet-4-5", "claude-sonnet-4", False),
        ("gemini-2.5-flash-lite", "gemini-2.5-flash", False),
    ],
)
def test_only_a_dated_snapshot_counts_as_the_same_model_on_rerun(
    tmp_path: Path, recorded: str, now: str, replayed: bool
) -> None:
    """A default changed from gpt-4o-mini to gpt-4o is a configuration change: the rerun asks
    again and says so, rather than replaying the smaller model's answer as the new one's."""
    from rsql_magic.client import ChatResult
    from rsql_magic.errors import RSQLWarning

    store = ReplayStore(tmp_path / "r.jsonl")
    request = body(model=None)

    def replay() -> Replay:
        return Replay("auto", store, kind="ask", cell="cell In [3]", question="Why?")

    replay().record(request, ChatResult(text="recorded answer", model=recorded))
    if replayed:
        found = replay().lookup(request, model=now)
        assert found is not None and found.text == "recorded answer"
    else:
        with pytest.warns(RSQLWarning, match=f"came from {recorded!r}.*answers with {now!r}"):
            assert replay().lookup(request, model=now) is None


def test_an_attempt_that_failed_before_the_proxy_did_is_never_replayed_as_an_answer(
    fresh_provider: FakeProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first SQL failed, then the retry was refused by the proxy (a ProxyError, not a
    SqlAIError): the first attempt is still marked failed, so a rerun asks again instead of
    replaying SQL that is known not to work."""
    from rsql_magic.errors import ProxyError, SqlAIError

    path = tmp_path / "r.jsonl"
    ip, conn = _shell_with_shop(fresh_provider, path, monkeypatch)
    cell = "%%sql_ai conn --max-retries 1\nTotal order amount per region"
    refused = {"__status__": 400, "error": {"message": "refused", "type": "invalid_request_error"}}
    try:
        fresh_provider.script(BAD, refused)
        err = ip.run_cell(cell).error_in_exec  # type: ignore[attr-defined]
        assert isinstance(err, ProxyError) and not isinstance(err, SqlAIError)
        assert len(fresh_provider.received) == 2
        recorded = [e for e in ReplayStore(path).latest().values() if "region" in e.question]
        assert recorded and all(e.failed for e in recorded)
        _rerun(ip)
        fresh_provider.script(GOOD)
        assert ip.run_cell(cell).error_in_exec is None  # type: ignore[attr-defined]
        assert len(fresh_provider.received) == 3  # asked again: the bad SQL was not replayed
        # as a first question, not as the retry a replayed bad answer would have led to
        assert len(fresh_provider.received[2].body["messages"]) == len(
            fresh_provider.received[0].body["messages"]
        )
    finally:
        ip.run_line_magic("config", "RSQLMagic.replay = None")  # type: ignore[attr-defined]
        ip.run_line_magic("config", "RSQLMagic.replay_file = None")  # type: ignore[attr-defined]
        for k in ("conn", "_"):
            ip.user_ns.pop(k, None)  # type: ignore[attr-defined]
