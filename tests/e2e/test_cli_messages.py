"""What Claude Code (`claude -p`) and Codex (`codex exec`) print when the hub's proxy refuses
them, read as a user reads it: one line that says what was refused, why, and where the admin
changes it (issue 54, must-have 4); and the context window Claude Code plans with for the hub's
own model names.

Both CLIs run as npm ships them, with a scratch home, against a real `rsql-proxy` in front of
the loopback fake provider. One service for the module; a user per test, so no test's
refusals (or spending) reach another's. The agent-off window's message is read in
test_ai_tools.py; a document given by URL (a field a chat model would not read) is out of reach
here: neither CLI sends one.

How each CLI takes a 429 (measured against Claude Code 2.1.330 and Codex 0.169.0): Claude Code
waits out a Retry-After of up to 60 s and retries (10 times by default), and reports a longer one
at once; Codex waits out any Retry-After, five times over, printing only "Reconnecting... n/5",
so a spent budget (a Retry-After until midnight UTC) holds it for hours. Codex is stopped here
on its first "Reconnecting", and reports at once only a 429 whose body says
``usage_limit_reached``. An answer no retry can change (a wrong key, a model not served) says
``x-should-retry: false``; Claude Code retried a 401 ten times without it (issue 55).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_server_ext.ai_environment import ai_environment
from tests.helpers import upstreams_for
from tests.helpers.claude_code import CliRun, codex_argv, quiet_env, run_cli
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService, start_service
from tests.helpers.tool_calls import tool_call

pytestmark = pytest.mark.slow

PRICE = {"input": 1.0, "output": 2.0}
# a gateway's own names (not Claude ids: Claude Code does not know their windows), and the model
# Codex asks for
MODEL, OTHER, CODEX_MODEL = "course-model", "other-model", "gpt-5-codex"
# a request window no test waits out: moving, so its Retry-After is about an hour at any time
WINDOW = "1/hour"
# Codex offers web search by default; this hub refuses it (the admin's choice under test in one
# test), so every other Codex run here leaves it out, as a user of such a hub would
NO_WEB_SEARCH = 'web_search="disabled"'
# Codex's line when it begins to wait before a retry
CODEX_RETRIES = "Reconnecting..."
# how long a CLI may take to report an answer no retry can change: starting it takes about 1 s
NO_RETRY_SECONDS = 30


@pytest.fixture(scope="module")
def svc(provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyService]:
    # the session's provider as it started: a module run before this one on the same worker may
    # have left it failing (its keys' faults), which every answer here would then meet
    provider.reset()
    served = {
        "models": {MODEL: "fake-small", OTHER: "fake-small", CODEX_MODEL: "fake-small"},
        "prices": {MODEL: PRICE, OTHER: PRICE, CODEX_MODEL: PRICE},
    }
    only_course = {"models": [MODEL, CODEX_MODEL]}
    users = {
        "tok-mia": "mia",  # may not use OTHER (Claude Code)
        "tok-max": "max",  # may not use OTHER (Codex)
        "tok-bea": "bea",  # no budget left (Claude Code)
        "tok-bob": "bob",  # no budget left (Codex)
        "tok-wes": "wes",  # request window spent (Claude Code)
        "tok-wil": "wil",  # request window spent (Codex)
        "tok-cyd": "cyd",  # a budget smaller than one request (Claude Code)
        "tok-cal": "cal",  # a budget smaller than one request (Codex)
        "tok-hal": "hal",  # Codex with its default web search
        "tok-ws": "ws",  # Claude Code's WebSearch tool
        "tok-ann": "ann",  # Claude Code told the hub's window
        "tok-uma": "uma",  # a model the hub does not serve (Claude Code)
        "tok-rio": "rio",  # request window spent (x-should-retry)
    }
    service = start_service(
        tmp_path_factory.mktemp("cli-messages"),
        {
            "upstreams": upstreams_for(provider, a1=served, a2=served, b1=served),
            "default_model": MODEL,
            "user_daily_budget_usd": 5.0,
            "hosted_tools": {"web_search": {"if_not_run": "refuse"}},
            "limit_overrides": {
                "user:mia": only_course,
                "user:max": only_course,
                # a budget of $0 is spent before the first request: the 429 of any spent budget
                "user:bea": {"user_daily_budget_usd": 0},
                "user:bob": {"user_daily_budget_usd": 0},
                "user:wes": {"user_limits": [WINDOW]},
                "user:wil": {"user_limits": [WINDOW]},
                "user:rio": {"user_limits": [WINDOW]},
                "user:cyd": {"user_daily_budget_usd": 0.001},
                "user:cal": {"user_daily_budget_usd": 0.001},
            },
        },
        static_users={token: {"name": name} for token, name in users.items()},
    )
    yield service
    service.stop()


def claude(svc: ProxyService, token: str, tmp_path: Path, model: str = MODEL, **env: str) -> CliRun:
    home = quiet_env(
        tmp_path / "home", ANTHROPIC_BASE_URL=svc.url.rstrip("/"), ANTHROPIC_API_KEY=token, **env
    )
    return run_cli(["claude", "-p", "Say hello", "--model", model], home, tmp_path, timeout=90)


def codex(
    svc: ProxyService, token: str, tmp_path: Path, model: str, *config: str, waits: bool = False
) -> CliRun:
    """`codex exec` as `token`'s user; stopped on its first retry unless it `waits` (retries
    it makes of a refusal whatever the proxy says: five of a 403, about 8 s)."""
    env = quiet_env(tmp_path / "home", CODEX_HOME=str(tmp_path / "codex"), RSQL_PROXY_TOKEN=token)
    os.makedirs(env["CODEX_HOME"], exist_ok=True)
    argv = codex_argv(svc.url, model, "Say hello", *config)
    return run_cli(argv, env, tmp_path, stop_on="" if waits else CODEX_RETRIES, timeout=90)


def reported(run: CliRun, marker: str) -> str:
    """The one line in which the CLI reports the refusal: the last that carries `marker`."""
    assert run.stopped_on is None, f"it began to wait instead ({run.stopped_on}):\n{run.output}"
    assert run.returncode != 0, run.output[-2000:]
    lines = [line for line in run.output.splitlines() if marker in line]
    assert lines, f"no line names {marker!r}:\n{run.output[-2000:]}"
    return lines[-1]


def says(line: str, *parts: str) -> None:
    missing = [part for part in parts if part not in line]
    assert not missing, f"the line does not say {missing}: {line}"


def spend_the_window(svc: ProxyService, token: str) -> None:
    status, _, raw = svc.request(
        "POST",
        "v1/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        token=token,
    )
    assert status == 200, raw


@pytest.fixture
def not_at_midnight() -> None:
    """A day's budget resets at midnight UTC: within the last minute its Retry-After is short
    enough for Claude Code to wait it out, and the budget is back when it retries."""
    if 86_400 - time.time() % 86_400 < 120:
        pytest.skip("within two minutes of midnight UTC, when daily budgets reset")


# -- a model the user may not use -------------------------------------------------------------


def test_claude_code_says_which_model_is_not_yours_and_which_setting_allows_it(
    svc: ProxyService, tmp_path: Path
) -> None:
    # before issue 54: "Failed to authenticate. API Error: 403 you may not use the model 'other-model';
    # models you may use: course-model, gpt-5-codex. Ask your hub admin if you need another"
    # (Claude Code puts "Failed to authenticate." before every 403)
    line = reported(claude(svc, "tok-mia", tmp_path, model=OTHER), "API Error")
    says(line, "403", MODEL, "allowed_models", "limit_overrides")


def test_codex_says_which_model_is_not_yours_and_which_setting_allows_it(
    svc: ProxyService, tmp_path: Path
) -> None:
    # today, after five retries of the 403 (about 8 s of "Reconnecting... n/5", Codex's own
    # choice for any status but 400 and 429): "unexpected status 403 Forbidden: you may not use
    # the model 'other-model'; ... Ask your hub admin if you need another, url: .../v1/responses"
    line = reported(codex(svc, "tok-max", tmp_path, OTHER, NO_WEB_SEARCH, waits=True), OTHER)
    says(line, "403", MODEL, "allowed_models", "limit_overrides")


# -- answers no retry can change ---------------------------------------------------------------


def timed_claude(svc: ProxyService, token: str, tmp_path: Path, model: str = MODEL) -> CliRun:
    """`claude` as `claude()` runs it, and it must end by itself within NO_RETRY_SECONDS."""
    started = time.monotonic()
    run = claude(svc, token, tmp_path, model=model)
    took = time.monotonic() - started
    assert took < NO_RETRY_SECONDS, (
        f"it ended after {took:.0f} s (retrying?):\n{run.output[-2000:]}"
    )
    return run


def test_claude_code_with_a_wrong_key_says_so_at_once(svc: ProxyService, tmp_path: Path) -> None:
    """A 401 says x-should-retry: false, which Claude Code reads before its own rule of
    retrying every 401 (made for keys it fetches itself: it drops the cached one and asks
    again)."""
    # before issue 55: nothing for 176 s (ten retries of the 401 with backoff, eleven requests,
    # measured against Claude Code 2.1.330), then the same line; now one request, about 2 s
    line = reported(timed_claude(svc, "tok-nobody-issued", tmp_path), "API Error")
    says(line, "Failed to authenticate", "401", "a valid token is required")


def test_answers_no_retry_can_change_say_so_and_limits_and_failures_do_not(
    svc: ProxyService, service_factory: Any
) -> None:
    """``x-should-retry: false`` on a 401, 403, 400 and a model not served, on each API, each in
    its API's shape; never on a 429 (retried after its Retry-After) nor a 5xx (which may pass)."""
    ask = [{"role": "user", "content": "hi"}]
    chat = {"model": MODEL, "messages": ask, "max_tokens": 5}
    messages = {"model": MODEL, "messages": ask, "max_tokens": 5}
    responses = {"model": MODEL, "input": "hi", "max_output_tokens": 16}
    final = [
        ("v1/chat/completions", chat, "tok-not-issued", 401),
        ("v1/responses", responses, "tok-not-issued", 401),
        ("v1/messages", messages, "tok-not-issued", 401),
        ("v1/messages", {**messages, "model": OTHER}, "tok-mia", 403),
        ("v1/chat/completions", {**chat, "model": "no-such-model"}, "tok-uma", 404),
        ("v1/chat/completions", {**chat, "max_tokens": "many"}, "tok-uma", 400),
    ]
    for path, body, token, status in final:
        got, headers, raw = svc.request("POST", path, body, token=token)
        assert (got, headers.get("x-should-retry")) == (status, "false"), (path, raw)
    # what each API's clients read: Anthropic's error object, OpenAI's
    _, _, raw = svc.request("POST", "v1/messages", messages, token="tok-not-issued")
    error = json.loads(raw)
    assert error["type"] == "error" and error["error"]["type"] == "authentication_error", error
    _, _, raw = svc.request("POST", "v1/chat/completions", chat, token="tok-not-issued")
    assert json.loads(raw)["error"]["code"] == "invalid_api_key", raw
    # a window spent: retried after its Retry-After
    spend_the_window(svc, "tok-rio")
    got, headers, raw = svc.request("POST", "v1/messages", messages, token="tok-rio")
    assert got == 429 and "retry-after" in headers and "x-should-retry" not in headers, raw
    # an upstream that does not answer: a 502, which a retry may find answered
    dead = service_factory(
        {
            "upstreams": [
                {
                    "name": "gone",
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key": "sk-x",
                    "models": [MODEL],
                }
            ],
            "default_model": MODEL,
            "unpriced_models": "free",
        },
        static_users={"tok-a": {"name": "a"}},
    )
    for path, body in (("v1/messages", messages), ("v1/chat/completions", chat)):
        got, headers, raw = dead.request("POST", path, body, token="tok-a")
        assert got >= 500 and "x-should-retry" not in headers, (path, got, raw)


def test_claude_code_asking_for_a_model_not_served_here_says_which_are(
    svc: ProxyService, tmp_path: Path
) -> None:
    """For any 404 Claude Code prints its own guess ("There's an issue with the selected
    model ... It may not exist or you may not have access to it"): the Messages API answers a
    model not served here with a 400, whose message Claude Code prints as it is."""
    line = reported(timed_claude(svc, "tok-uma", tmp_path, model="no-such-model"), "API Error")
    says(line, "not served here", "available", MODEL, OTHER)


# -- a spent budget -------------------------------------------------------------------------------


def test_claude_code_reports_a_spent_budget_at_once_with_when_and_which_setting(
    svc: ProxyService, tmp_path: Path, not_at_midnight: None
) -> None:
    # before issue 54: "API Error: Request rejected (429) · user daily budget $0 reached for 'bea'
    # ($0.0000 spent or reserved today; this request may cost up to $0.0763); resets in
    # 4833 s at 2026-11-26T00:00:00Z": what, why and when, not where the admin sets it
    line = reported(claude(svc, "tok-bea", tmp_path), "API Error")
    says(line, "daily budget", "resets", "user_daily_budget_usd")


def test_codex_reports_a_spent_budget_at_once_instead_of_sleeping_until_midnight(
    svc: ProxyService, tmp_path: Path, not_at_midnight: None
) -> None:
    # before issue 54: "Reconnecting... 1/5", then it sleeps the Retry-After (until midnight UTC) five
    # times over before it says anything
    line = reported(codex(svc, "tok-bob", tmp_path, CODEX_MODEL, NO_WEB_SEARCH), "budget")
    says(line, "daily budget", "user_daily_budget_usd")


# -- a request window spent -----------------------------------------------------------------------


def test_claude_code_reports_a_spent_request_window_with_when_and_which_setting(
    svc: ProxyService, tmp_path: Path
) -> None:
    # before issue 54: "API Error: Request rejected (429) · user 1/hour reached for 'wes' (1 requests in
    # the window); resets in 3599 s at ...": what, why and when, not where the admin sets it
    spend_the_window(svc, "tok-wes")
    line = reported(claude(svc, "tok-wes", tmp_path), "API Error")
    says(line, WINDOW, "resets", "user_limits")


def test_codex_reports_a_spent_request_window_at_once_instead_of_sleeping_an_hour(
    svc: ProxyService, tmp_path: Path
) -> None:
    # before issue 54: "Reconnecting... 1/5", then it sleeps the Retry-After (an hour) five times over
    spend_the_window(svc, "tok-wil")
    line = reported(codex(svc, "tok-wil", tmp_path, CODEX_MODEL, NO_WEB_SEARCH), WINDOW)
    says(line, WINDOW, "user_limits")


# -- a budget smaller than one request --------------------------------------------------------------


def test_claude_code_says_its_answer_reserve_is_more_than_the_whole_budget_and_what_to_lower(
    svc: ProxyService, tmp_path: Path
) -> None:
    # before issue 54: "API Error: 400 this request may cost up to $0.0838 (its prompt and n x max_tokens
    # completion tokens at the model's price), more than the whole user daily budget $0.001;
    # lower 'max_tokens' (or 'max_completion_tokens') or 'n'": a Claude Code user sets no
    # max_tokens (it asks for 32,000), and the admin's setting is not named
    line = reported(claude(svc, "tok-cyd", tmp_path), "API Error")
    says(line, "$0.001", "user_daily_budget_usd", "CLAUDE_CODE_MAX_OUTPUT_TOKENS")


def test_codex_says_its_request_is_more_than_the_whole_budget_and_which_setting(
    svc: ProxyService, tmp_path: Path
) -> None:
    # today (the body, printed whole): {"error": {"message": "this request may cost up to
    # $0.0106 (...), more than the whole user daily budget $0.001; lower 'max_tokens' (or
    # 'max_completion_tokens') or 'n'", ..., "code": "over_budget"}}
    line = reported(codex(svc, "tok-cal", tmp_path, CODEX_MODEL, NO_WEB_SEARCH), "budget")
    says(line, "$0.001", "user_daily_budget_usd")


# -- a hosted tool the admin refuses ---------------------------------------------------------------


def test_codex_with_its_default_web_search_says_the_hub_refuses_it_and_where(
    svc: ProxyService, tmp_path: Path
) -> None:
    """Codex offers web search unless told not to; this hub's admin refuses the hosted tool
    where it cannot run (``"if_not_run": "refuse"``). Codex prints the error's body whole, at
    once, on one line: the tool, why, the setting."""
    line = reported(codex(svc, "tok-hal", tmp_path, CODEX_MODEL), "hosted_tool_not_run")
    says(line, "web_search", "not offered to you", "hosted_tools['web_search']")


def test_claude_codes_web_search_hands_the_model_the_refusal_and_its_reason(
    svc: ProxyService, provider: FakeProvider, tmp_path: Path
) -> None:
    """Claude Code's WebSearch tool asks the API for Anthropic's hosted web search in a
    request of its own; refused, the error is the tool's result, which the model reads and can
    relay: the user sees the model's answer, not the error itself."""
    provider.reset()
    provider.script(tool_call("WebSearch", {"query": "weather in Paris"}), "No search here.")
    env = quiet_env(
        tmp_path / "home", ANTHROPIC_BASE_URL=svc.url.rstrip("/"), ANTHROPIC_API_KEY="tok-ws"
    )
    argv = ["claude", "-p", "Search the web for the weather in Paris", "--model", MODEL]
    run = run_cli([*argv, "--allowedTools", "WebSearch"], env, tmp_path, timeout=90)
    assert run.returncode == 0, run.output[-2000:]
    assert "No search here." in run.stdout
    results = [r for request in provider.received for r in tool_results_of(request.body)]
    assert results, [request.body.get("messages", [])[-1:] for request in provider.received]
    says(results[-1], "web_search", "not offered to you", "hosted_tools['web_search']")


def tool_results_of(body: dict) -> list[str]:
    """The tool results a chat request carries (Claude Code's, as the proxy translated them)."""
    return [str(m["content"]) for m in body.get("messages", []) if m.get("role") == "tool"]


# -- the window Claude Code plans with ------------------------------------------------------------


def test_claude_code_told_the_hubs_window_plans_with_it_and_does_not_warn(
    svc: ProxyService, provider: FakeProvider, tmp_path: Path
) -> None:
    """For a model name it does not know, Claude Code assumes a window of a million tokens and
    warns on every start; the environment the server gives it (ai_environment, with the windows
    the configuration states) tells it the model's own, and it answers without the warning."""
    provider.reset()
    provider.script("Hello, with a warning.", "Hello, with none.")
    root = svc.url.rstrip("/")
    # as the environment was before: the proxy's address and the key, no window
    before = run_cli(
        ["claude", "-p", "Say hello", "--model", MODEL],
        quiet_env(tmp_path / "before", ANTHROPIC_BASE_URL=root, ANTHROPIC_API_KEY="tok-ann"),
        tmp_path,
        timeout=90,
    )
    assert before.returncode == 0, before.output[-2000:]
    assert "doesn't recognize the model" in before.stderr  # the warning this removes
    # what a server (extension or hub) now injects, with the window its configuration states
    injected = ai_environment(svc.url, "tok-ann", {}, {MODEL: 131_072, "tiny-local": 8_192})
    assert injected["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "131072"
    run = run_cli(
        ["claude", "-p", "Say hello", "--model", MODEL],
        quiet_env(tmp_path / "after", **{k: str(v) for k, v in injected.items()}),
        tmp_path,
        timeout=90,
    )
    assert run.returncode == 0, run.output[-2000:]
    assert "Hello, with none." in run.stdout
    assert "doesn't recognize the model" not in run.output and "1m tokens" not in run.output
