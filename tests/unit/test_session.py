"""The kernel-side session: the model's fallback chain, batch detection, the 429 policy."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from rsql_magic.client import ProxyClient
from rsql_magic.errors import ProxyError
from rsql_magic.operations import Route
from rsql_magic.session import AskSettings, Session, SqlAISettings, mentions_error
from tests.helpers.fake_provider import FakeProvider, KeyPolicy

KEY = "sk-test-a1-fake0123456789"


class Shell:
    """Just enough of an IPython shell for a session: its registered magics' settings."""

    def __init__(self, kernel: Any = None, **registry: Any) -> None:
        self.magics_manager = SimpleNamespace(registry=registry)
        self.user_ns: dict[str, Any] = {}
        if kernel is not None:
            self.kernel = kernel


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RSQL_MODEL", "RSQL_BATCH"):
        monkeypatch.delenv(name, raising=False)


def test_one_session_per_shell() -> None:
    shell = Shell()
    assert Session.of(shell) is Session.of(shell)
    assert Session.of(Shell()) is not Session.of(shell)


def test_settings_come_from_the_registered_magics_else_the_defaults() -> None:
    ask, sql = AskSettings(context_tokens=123), SqlAISettings(max_rows=7)
    config = Session.of(Shell(RSQLMagic=ask, SqlAIMagics=sql)).config
    assert config.ask is ask and config.sql is sql
    alone = Session.of(Shell()).config  # the chat panel without %load_ext rsql_magic
    assert alone.ask.context_tokens == 3000 and alone.sql.max_rows == 100_000


def test_model_fallback_order(monkeypatch: pytest.MonkeyPatch) -> None:
    ask, sql = AskSettings(), SqlAISettings()
    config = Session.of(Shell(RSQLMagic=ask, SqlAIMagics=sql)).config
    assert config.model() is None and config.model(sql=True) is None  # the proxy's default
    monkeypatch.setenv("RSQL_MODEL", "from-env")
    assert config.model() == "from-env"
    ask.model = "ask-model"
    assert config.model() == "ask-model" and config.model(sql=True) == "ask-model"
    sql.model = "sql-model"
    assert config.model() == "ask-model" and config.model(sql=True) == "sql-model"
    assert config.model("option") == "option" and config.model("option", sql=True) == "option"


def test_batch_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    ask = AskSettings()
    terminal = Session.of(Shell(RSQLMagic=ask)).config
    assert terminal.is_batch() is False  # no kernel: a person at a terminal
    nbclient = Session.of(
        Shell(SimpleNamespace(_allow_stdin=False), RSQLMagic=AskSettings())
    ).config
    lab = Session.of(Shell(SimpleNamespace(_allow_stdin=True), RSQLMagic=AskSettings())).config
    assert nbclient.is_batch() is True and lab.is_batch() is False
    monkeypatch.setenv("RSQL_BATCH", "1")
    assert lab.is_batch() is True and terminal.is_batch() is True
    monkeypatch.setenv("RSQL_BATCH", "0")
    assert nbclient.is_batch() is False
    ask.batch = "yes"  # the setting beats the environment
    assert terminal.is_batch() is True
    ask.batch = "no"
    monkeypatch.setenv("RSQL_BATCH", "1")
    assert terminal.is_batch() is False


def test_mentions_error() -> None:
    assert mentions_error("why does this fail?") and mentions_error("what's wrong here")
    assert not mentions_error("plot sales by region")


@pytest.fixture
def limited(fresh_provider: FakeProvider) -> ProxyClient:
    """A client of the fake provider (it speaks the proxy's API) allowing 1 request a second."""
    fresh_provider.keys[KEY] = KeyPolicy("a1", limit=1, window=1.0)
    return ProxyClient(f"http://127.0.0.1:{fresh_provider.port}/", KEY)


MESSAGES = [{"role": "user", "content": "hi"}]


def test_batch_runs_wait_out_a_429(
    limited: ProxyClient, fresh_provider: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    session = Session.of(Shell(RSQLMagic=AskSettings()))
    retried: list[int] = []
    batch = Route(limited, batch=True)
    batch.chat(session, MESSAGES, client_kind="magic", model="fake-small")
    t0 = time.monotonic()
    res = batch.chat(
        session,
        MESSAGES,
        client_kind="magic",
        model="fake-small",
        on_retry=lambda: retried.append(1),
    )
    assert res.text and retried == [1] and time.monotonic() - t0 >= 0.5
    assert fresh_provider.too_many == 1
    assert "batch run: waiting 1s and retrying (1/3)" in capsys.readouterr().err


def test_interactive_runs_raise_a_429_at_once(limited: ProxyClient) -> None:
    session = Session.of(Shell(RSQLMagic=AskSettings()))
    interactive = Route(limited, batch=False)
    interactive.chat(session, MESSAGES, client_kind="magic", model="fake-small")
    with pytest.raises(ProxyError) as err:
        interactive.chat(session, MESSAGES, client_kind="magic", model="fake-small")
    assert err.value.status == 429 and err.value.retry_after == 1.0


def test_batch_waits_are_bounded(limited: ProxyClient) -> None:
    session = Session.of(Shell(RSQLMagic=AskSettings(batch_max_wait=0.5)))
    batch = Route(limited, batch=True)
    batch.chat(session, MESSAGES, client_kind="magic", model="fake-small")
    with pytest.raises(ProxyError, match="not waiting 1s more: RSQLMagic.batch_max_wait=0.5s"):
        batch.chat(session, MESSAGES, client_kind="magic", model="fake-small")
    retries = Session.of(Shell(RSQLMagic=AskSettings(batch_retries=0)))
    with pytest.raises(ProxyError) as err:
        batch.chat(retries, MESSAGES, client_kind="magic", model="fake-small")
    assert err.value.status == 429
