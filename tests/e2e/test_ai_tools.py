"""The AI coding tools hub users run, through a real `rsql-proxy`: Claude Code (`claude -p`, the
Messages API) and Codex CLI (`codex exec`, the Responses API), as npm ships them (installed into
.tools/ by the project's set-up), each with the user's own proxy token and no provider key,
answered by the loopback providers and billed to that user under the API it came by.

Each CLI runs with a scratch home, its telemetry and update checks off, so it talks to the
proxy on loopback and to nothing else.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, child_env, require, upstreams_for
from tests.helpers.claude_code import codex_argv, quiet_env
from tests.helpers.fake_anthropic import FakeAnthropic
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService, start_service
from tests.helpers.tool_calls import tool_call

pytestmark = pytest.mark.slow

CLAUDE_KEY = "test-anthropic-key-cli"
PRICE = {"input": 1.0, "output": 2.0}
# what Claude Code and Codex ask for by name; the proxy maps them to the fakes' own models
CLAUDE_MODEL = "claude-sonnet-5-5"
CODEX_MODEL = "gpt-5-codex"
EXAM_MESSAGE = "Exam until noon: no agents"
NATIVE_MODEL = "codex-native"  # served only by an upstream that speaks the Responses API
SEARCH = 0.01  # the admin's price of a web search


@pytest.fixture(scope="module")
def claude_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic({CLAUDE_KEY: AnthropicKey("claude")}) as fake:
        yield fake


@pytest.fixture(scope="module")
def svc(
    provider: FakeProvider, claude_fake: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyService]:
    # course-model: a gateway's own name for a model, not named like a Claude id
    openai_models = {
        "models": {
            CODEX_MODEL: "fake-small",
            "fake-small": "fake-small",
            "course-model": "fake-small",
        }
    }
    claude = {
        "name": "claude",
        "provider": "anthropic",
        "base_url": claude_fake.base_url,
        "api_key": CLAUDE_KEY,
        "models": {CLAUDE_MODEL: "claude-fake-small", "claude-haiku-4-5": "claude-fake-small"},
        "prices": {CLAUDE_MODEL: PRICE, "claude-haiku-4-5": PRICE},
    }
    priced = {
        **openai_models,
        "prices": {CODEX_MODEL: PRICE, "fake-small": PRICE, "course-model": PRICE},
    }
    # b1 also serves codex-native alone, speaking the Responses API: a request to it goes on as
    # sent, and a hosted tool offered to the caller runs there
    native = {
        "models": {**openai_models["models"], NATIVE_MODEL: "fake-small"},
        "prices": {**priced["prices"], NATIVE_MODEL: PRICE},
        "responses_api": True,
    }
    now = time.time()
    exam = {  # in force for the whole module, for its group only
        "name": "exam",
        "groups": ["exam"],
        "mode": "custom",
        "models": ["*"],
        "agent": False,
        "message": EXAM_MESSAGE,
        "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
        "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 4 * 3600)),
    }
    service = start_service(
        tmp_path_factory.mktemp("ai-tools"),
        {
            "upstreams": [*upstreams_for(provider, a1=priced, a2=priced, b1=native), claude],
            "hosted_tools": {
                "web_search": {"offered": True, "groups": ["search"], "price_per_call": SEARCH}
            },
            "default_model": "fake-small",
            "user_daily_budget_usd": 5.0,
            "policy_windows": [exam],
        },
        static_users={
            "tok-ann": {"name": "ann"},
            "tok-ben": {"name": "ben"},
            # users of one test each: their usage rows are that test's alone
            "tok-dan": {"name": "dan"},
            "tok-eve": {"name": "eve"},
            "tok-gil": {"name": "gil"},
            "tok-hal": {"name": "hal"},
            "tok-ivy": {"name": "ivy"},
            "tok-jo": {"name": "jo", "groups": ["search"]},
            "tok-fay": {"name": "fay", "groups": ["exam"]},
            "tok-root": {"name": "root", "admin": True},
        },
    )
    yield service
    service.stop()


def run_cli(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    require(argv[0], binary=True, reason="the project's set-up installs it into .tools/ from npm")
    return subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def activity(svc: ProxyService, user: str, rows: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        status, _, raw = svc.request("GET", f"admin/users/{user}/activity", token="tok-root")
        assert status == 200, raw
        found = json.loads(raw)["activity"]
        if len(found) >= rows or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_claude_code_answers_through_the_proxy_and_is_billed_to_its_user(
    svc: ProxyService, claude_fake: FakeAnthropic, tmp_path: Path
) -> None:
    claude_fake.reset()
    claude_fake.script("Hello from the hub's Claude.")
    env = quiet_env(
        tmp_path / "home",
        ANTHROPIC_BASE_URL=svc.url.rstrip("/"),  # the API root, without /v1
        ANTHROPIC_API_KEY="tok-ann",
    )
    done = run_cli(["claude", "-p", "Say hello", "--model", CLAUDE_MODEL], env, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Hello from the hub's Claude." in done.stdout
    sent = claude_fake.received[-1]
    assert sent.body["model"] == "claude-fake-small"  # the provider's own name, not the public one
    assert "tok-ann" not in json.dumps(sent.headers)  # the user's token never reaches the provider
    # the answered request's row: Claude Code may first send a request with a beta field
    # (context_management) that the provider refuses, and retry without it; on a loaded
    # machine that refused row can be the latest
    rows = activity(svc, "ann", rows=len(claude_fake.received))
    row = next(r for r in rows if r["status"] == 200)
    assert row["api"] == "messages" and row["cost_usd"] > 0


def test_claude_code_on_a_model_not_named_like_claude_sends_system_turns_and_is_answered(
    svc: ProxyService, provider: FakeProvider, tmp_path: Path
) -> None:
    """With a gateway's own model name Claude Code sends its environment as a system turn
    inside `messages`, after the first user turn, as Anthropic's API takes; through a chat
    upstream it is a system message at its own position (issue 54: a 400 before)."""
    provider.reset()
    provider.script("Hello from the course model.")
    env = quiet_env(
        tmp_path / "home", ANTHROPIC_BASE_URL=svc.url.rstrip("/"), ANTHROPIC_API_KEY="tok-ivy"
    )
    done = run_cli(["claude", "-p", "Say hello", "--model", "course-model"], env, tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "Hello from the course model." in done.stdout
    sent = provider.received[-1].body
    assert sent["model"] == "fake-small"
    roles = [m["role"] for m in sent["messages"]]
    assert roles[0] == "system" and "user" in roles


def test_claude_codes_web_search_is_told_it_did_not_run_never_handed_a_guess(
    svc: ProxyService, provider: FakeProvider, tmp_path: Path
) -> None:
    """Claude Code runs its WebSearch tool as a request of its own whose only tool is the hosted
    web search. Where that cannot run, leaving it out would have the model answer from memory
    and Claude Code show the guess as search results: such a request is refused, and the model
    reads why as the tool's result (issue 54)."""
    provider.reset()
    provider.script(tool_call("WebSearch", {"query": "weather in Paris"}), "No search here.")
    env = quiet_env(
        tmp_path / "home", ANTHROPIC_BASE_URL=svc.url.rstrip("/"), ANTHROPIC_API_KEY="tok-gil"
    )
    argv = ["claude", "-p", "Search the web for the weather in Paris", "--model", "course-model"]
    done = run_cli([*argv, "--allowedTools", "WebSearch"], env, tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "No search here." in done.stdout
    results = [
        str(m["content"])
        for request in provider.received
        for m in request.body.get("messages", [])
        if m.get("role") == "tool"
    ]
    assert results and "pass for theirs" in results[-1] and "Web search results" not in results[-1]


def test_codex_answers_through_the_proxy_and_is_billed_to_its_user(
    svc: ProxyService, provider: FakeProvider, tmp_path: Path
) -> None:
    provider.reset()
    provider.script("Hello from the hub's Codex.")
    env = quiet_env(
        tmp_path / "home", CODEX_HOME=str(tmp_path / "codex"), RSQL_PROXY_TOKEN="tok-ben"
    )
    os.makedirs(env["CODEX_HOME"], exist_ok=True)
    done = run_cli(codex_argv(svc.url, CODEX_MODEL, "Say hello"), env, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Hello from the hub's Codex." in done.stdout
    assert provider.received[-1].body["model"] == "fake-small"
    row = activity(svc, "ben")[0]
    assert row["api"] == "responses" and row["status"] == 200 and row["cost_usd"] > 0


def test_codex_with_its_defaults_web_search_on_is_answered_with_no_set_up(
    svc: ProxyService, provider: FakeProvider, tmp_path: Path
) -> None:
    """Codex as installed offers the Responses API's web search, which no chat upstream can
    run: the proxy leaves it out (x-rsql-dropped) and answers, where it used to stop Codex
    with a 400 unless the user set web_search = "disabled" (issue 54)."""
    provider.reset()
    provider.script("Hello from Codex's defaults.")
    env = quiet_env(
        tmp_path / "home", CODEX_HOME=str(tmp_path / "codex"), RSQL_PROXY_TOKEN="tok-hal"
    )
    os.makedirs(env["CODEX_HOME"], exist_ok=True)
    done = run_cli(codex_argv(svc.url, CODEX_MODEL, "Say hello"), env, tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "Hello from Codex's defaults." in done.stdout
    sent = provider.received[-1].body
    assert "web_search" not in json.dumps(sent.get("tools", []))


def test_codex_searches_where_its_hub_offers_it_and_each_search_is_billed(
    svc: ProxyService, provider: FakeProvider, tmp_path: Path
) -> None:
    """Codex with its defaults, for a user the hub offers web search, on a model whose upstream
    speaks the Responses API: the search runs at the provider and each one is charged by the
    call, as the provider reports it (issue 54: the other case, where it cannot run, is
    test_codex_with_its_defaults_web_search_on_is_answered_with_no_set_up)."""
    provider.reset()
    provider.script({"web_searches": 2, "text": "Found it on the web."})
    env = quiet_env(
        tmp_path / "home", CODEX_HOME=str(tmp_path / "codex"), RSQL_PROXY_TOKEN="tok-jo"
    )
    os.makedirs(env["CODEX_HOME"], exist_ok=True)
    done = run_cli(codex_argv(svc.url, NATIVE_MODEL, "Search the news"), env, tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    assert "Found it on the web." in done.stdout
    sent = next(r for r in reversed(provider.received) if r.path == "responses")
    assert any(t.get("type") == "web_search" for t in sent.body["tools"]) and sent.tool_calls == 2
    row = activity(svc, "jo")[0]
    assert row["status"] == 200 and row["cost_usd"] >= 2 * SEARCH


def test_in_a_window_without_agents_claude_code_and_codex_are_refused_with_its_message(
    svc: ProxyService, provider: FakeProvider, claude_fake: FakeAnthropic, tmp_path: Path
) -> None:
    """Both CLIs offer the model their tools on every request and send no header of ours: in
    an exam window with agents off, each is refused with the window's message before anything
    reaches a provider (issue 53, finding 4: both answered 200)."""
    claude_fake.reset()
    provider.reset()
    env = quiet_env(
        tmp_path / "home", ANTHROPIC_BASE_URL=svc.url.rstrip("/"), ANTHROPIC_API_KEY="tok-fay"
    )
    done = run_cli(["claude", "-p", "List the files", "--model", CLAUDE_MODEL], env, tmp_path)
    assert done.returncode != 0, done.stdout[-2000:]
    assert EXAM_MESSAGE in done.stdout + done.stderr, (done.stdout + done.stderr)[-2000:]
    env = quiet_env(
        tmp_path / "home2", CODEX_HOME=str(tmp_path / "codex"), RSQL_PROXY_TOKEN="tok-fay"
    )
    os.makedirs(env["CODEX_HOME"], exist_ok=True)
    done = run_cli(codex_argv(svc.url, CODEX_MODEL, "List the files"), env, tmp_path)
    assert done.returncode != 0, done.stdout[-2000:]
    assert EXAM_MESSAGE in done.stdout + done.stderr, (done.stdout + done.stderr)[-2000:]
    assert claude_fake.received == [] and provider.received == []
    rows = activity(svc, "fay", rows=2)
    assert {r["status"] for r in rows} == {403} and {r["api"] for r in rows} >= {
        "messages",
        "responses",
    }


# -- tools find the proxy without a key ---------------------------------------------------------

SDK_CELLS = [
    "import os, openai, anthropic\n"
    "print(sorted(k for k in os.environ if k.startswith(('OPENAI_', 'ANTHROPIC_'))))",
    # no base URL, no key: both SDKs read them from the environment the server gave the kernel
    "print(openai.OpenAI().chat.completions.create(model='fake-small', "
    "messages=[{'role': 'user', 'content': 'from openai'}]).choices[0].message.content)",
    "print(anthropic.Anthropic().messages.create(model='fake-small', max_tokens=20, "
    "messages=[{'role': 'user', 'content': 'from anthropic'}]).content[0].text)",
]


def test_a_personal_servers_kernels_reach_the_proxy_with_no_key_and_keep_a_users_own(
    jupyter_server_factory, provider: FakeProvider
) -> None:
    import asyncio

    from tests.helpers.kernels import run_cells

    provider.reset()
    server = jupyter_server_factory(
        {
            "upstreams": upstreams_for(provider),
            "default_model": "fake-small",
            "ai_environment": True,
        },
        # the user's own OpenAI key, set before the server started: theirs to keep
        env={"OPENAI_API_KEY": "sk-users-own-openai-key"},
    )
    own = (
        "import os\n"
        "print(os.environ.get('OPENAI_API_KEY') == 'sk-users-own-openai-key', "
        "'OPENAI_BASE_URL' in os.environ, 'OPENAI_API_BASE' in os.environ)"
    )
    results = asyncio.run(run_cells(server.url, server.token, [SDK_CELLS[0], SDK_CELLS[2], own]))
    assert all(r["error"] is None for r in results), results
    names = "".join(results[0]["outputs"])
    assert "ANTHROPIC_API_KEY" in names and "ANTHROPIC_BASE_URL" in names
    assert "OPENAI_BASE_URL" not in names  # the user set half of that pair: none of it is ours
    assert "Fake answer to: from anthropic" in "".join(results[1]["outputs"])
    # the user's own key is still theirs in the kernel, and no base URL sends it to the proxy
    assert "".join(results[2]["outputs"]).strip() == "True False False", results[2]


# -- jupyter-ai 3 -------------------------------------------------------------------------------

# jupyter-ai 3's Jupyternaut agent calls its models through langchain-litellm's ChatLiteLLM, in
# the Jupyter server's process, with LiteLLM model ids ("openai/<name>", "anthropic/<name>") and,
# by default, prompt caching injected on the system message. With the AI environment on, LiteLLM
# reads OPENAI_BASE_URL / ANTHROPIC_BASE_URL and the keys: the user picks a model, nothing more.
# (jupyter-ai itself is not installed here: its server extensions would load into every test
# server; this is its model layer, called as Jupyternaut calls it.)
JUPYTERNAUT = r"""
import asyncio, json, sys
from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_litellm import ChatLiteLLM

@tool
def rows(table: str) -> int:
    '''How many rows a table has.'''
    return 42

async def ask(model_id: str) -> None:
    model = ChatLiteLLM(model=model_id, streaming=True).bind_tools([rows])
    cache = {"cache_control_injection_points": [{"location": "message", "role": "system"}]}
    messages = [SystemMessage("You are Jupyternaut."), HumanMessage("How many rows has sales?")]
    for _ in range(3):
        answer = None
        async for chunk in model.astream(messages, **cache):
            answer = chunk if answer is None else answer + chunk
        messages.append(answer)
        if not answer.tool_calls:
            break
        for call in answer.tool_calls:
            messages.append(ToolMessage(str(rows.invoke(call["args"])), tool_call_id=call["id"]))
    print(json.dumps({"model": model_id, "text": answer.content, "calls": len(messages) - 2}))

async def main(model_ids: list[str]) -> None:
    for model_id in model_ids:  # one after another, as a user switches Jupyternaut's model
        await ask(model_id)

asyncio.run(main(sys.argv[1:]))
"""


def test_jupyter_ais_jupyternaut_reaches_the_proxy_from_the_environment_alone(
    svc: ProxyService, provider: FakeProvider, claude_fake: FakeAnthropic, tmp_path: Path
) -> None:
    require("langchain_litellm", reason="jupyter-ai 3's model layer (the test extra)")
    provider.reset()
    claude_fake.reset()
    call = tool_call("rows", {"table": "sales"}, "call_rows", prompt=12, completion=6)
    provider.script(call, "sales has 42 rows.", "Hello from the hub's Codex model.")
    claude_fake.script("Hello from the hub's Claude, via LiteLLM.")
    env = quiet_env(
        tmp_path / "home",
        # what the server extension or the hub (ai_tools=True) gives the Jupyter server
        OPENAI_BASE_URL=svc.url + "v1",
        OPENAI_API_KEY="tok-dan",
        ANTHROPIC_BASE_URL=svc.url.rstrip("/"),
        ANTHROPIC_API_KEY="tok-dan",
        # LiteLLM fetches its price list from GitHub on import unless told to use its own copy
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    script = tmp_path / "jupyternaut.py"
    script.write_text(JUPYTERNAUT)
    expected = {
        # a model LiteLLM does not know: Chat Completions, with a tool round trip
        "openai/fake-small": "sales has 42 rows.",
        f"anthropic/{CLAUDE_MODEL}": "Hello from the hub's Claude, via LiteLLM.",
        # one its price list marks Responses-only: LiteLLM sends it by the Responses API
        f"openai/{CODEX_MODEL}": "Hello from the hub's Codex model.",
    }
    # the three in one process: LangChain and LiteLLM take 5 s to import, which three processes
    # paid three times
    done = subprocess.run(
        [sys.executable, str(script), *expected],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert {a["model"]: a["text"] for a in answers} == expected, done.stdout[-3000:]
    # the tool round trip: the tool's result went back to the model, under the public name
    assert [r.body["model"] for r in provider.received] == ["fake-small"] * 3
    assert any(m.get("role") == "tool" for m in provider.received[1].body["messages"])
    assert "tok-dan" not in json.dumps([r.headers for r in claude_fake.received])
    rows = activity(svc, "dan", rows=4)
    assert sorted(r["api"] for r in rows) == ["chat", "chat", "messages", "responses"]
    assert all(r["status"] == 200 and r["cost_usd"] > 0 for r in rows)


# -- R --------------------------------------------------------------------------------------------


def test_the_clients_pages_r_example_runs_through_the_proxy_as_written(
    svc: ProxyService, provider: FakeProvider, tmp_path: Path
) -> None:
    """docs/users/clients.md's httr2 example, run by Rscript with only the hub's address and
    model swapped for this proxy's: answered, and billed to the token's user. (Its ellmer
    example cannot run here: ellmer is on CRAN only, which these machines do not reach.)"""
    require("Rscript", binary=True, reason="R, from the project's set-up (r-base-core)")
    page = (REPO / "docs" / "users" / "clients.md").read_text()
    section = page.split("## R with httr2", 1)[1]
    code = re.search(r"^```r\n(.*?)^```", section, re.M | re.S)
    assert code is not None, "the page's httr2 example"
    script = code.group(1).replace("https://hub.example.org/services/rsql/", svc.url)
    script = script.replace("llama-3.1-8b-instant", "fake-small")
    assert svc.url in script and "fake-small" in script  # the swaps took
    provider.reset()
    provider.script("A left join keeps every row of the left table.")
    done = subprocess.run(
        ["Rscript", "-e", script],
        env=child_env(RSQL_TOKEN="tok-eve"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "A left join keeps every row of the left table." in done.stdout
    (row,) = activity(svc, "eve")
    assert row["api"] == "chat" and row["status"] == 200 and row["cost_usd"] > 0
