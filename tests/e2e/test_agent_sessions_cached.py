"""Issue 74, must-have 5: Claude Code and Codex sessions, run as a user runs them, keep to the
account whose prompt cache holds them. A real `rsql-proxy` in front of three Anthropic keys and
three chat keys, each on an account of its own (the fakes cache prompts per account: Anthropic
at the client's `cache_control` marks, the chat provider as OpenAI does); the CLIs get only the
environment the hub gives a user's tools (`ai_environment`).

Left to headroom alone, the turns of a session would go round the three accounts (the tie-break
is the account that sent least recently: tests/helpers/cache_affinity.py shows it)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_server_ext.ai_environment import ai_environment
from tests.helpers import REPO, missing, upstreams_for
from tests.helpers.claude_code import quiet_env
from tests.helpers.client_matrix import CLAUDE_MODEL, CODEX_MODEL, node_cli
from tests.helpers.fake_anthropic import FakeAnthropic
from tests.helpers.fake_anthropic import KeyPolicy as AnthropicKey
from tests.helpers.fake_anthropic import Received as AnthropicReceived
from tests.helpers.fake_provider import FakeProvider, KeyPolicy
from tests.helpers.servers import ProxyService, start_service

pytestmark = pytest.mark.slow

TOKEN = "tok-sessions"
CLAUDE_KEYS = {
    f"test-anthropic-key-session-{n}": AnthropicKey(f"c{n}", f"acct-c{n}") for n in (1, 2, 3)
}
CHAT_KEYS = {
    f"sk-test-session-{n}-fake0123456789": KeyPolicy(f"o{n}", account=f"acct-o{n}")
    for n in (1, 2, 3)
}
# the published shape of a Claude and a GPT price: reads at a tenth, 5-minute writes at 1.25x
CLAUDE_PRICE = {
    "input": 3.0,
    "output": 15.0,
    "cache_read": 0.3,
    "cache_write_5m": 3.75,
    "cache_write": 6.0,
}
CHAT_PRICE = {"input": 1.25, "output": 10.0, "cache_read": 0.125}
SECONDS = 180


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeAnthropic, FakeProvider]]:
    with FakeAnthropic(dict(CLAUDE_KEYS)) as claude, FakeProvider(dict(CHAT_KEYS)) as chat:
        claude.script(*["Answered."] * 200)
        chat.respond = lambda body: "Answered."
        yield claude, chat


@pytest.fixture(scope="module")
def svc(
    fakes: tuple[FakeAnthropic, FakeProvider], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyService]:
    claude, chat = fakes
    names = {CODEX_MODEL: "fake-small"}
    served = {"models": names, "prices": {CODEX_MODEL: CHAT_PRICE}}
    claude_upstreams = [
        {
            "name": policy.alias,
            "provider": "anthropic",
            "base_url": claude.base_url,
            "api_key": key,
            "account": policy.account,
            "models": {CLAUDE_MODEL: "claude-fake-small"},
            "prices": {CLAUDE_MODEL: CLAUDE_PRICE},
        }
        for key, policy in CLAUDE_KEYS.items()
    ]
    service = start_service(
        tmp_path_factory.mktemp("sessions-proxy"),
        {
            "upstreams": [
                *upstreams_for(chat, **{p.alias: served for p in CHAT_KEYS.values()}),
                *claude_upstreams,
            ],
            "default_model": CODEX_MODEL,
            "user_daily_budget_usd": 50.0,
        },
        static_users={TOKEN: {"name": "student"}},
    )
    yield service
    service.stop()


def installed(package: str) -> list[str]:
    found = node_cli(REPO / ".tools", package)
    if found is None:
        missing(f".tools/node_modules/{package} is not installed (scripts/install-system-deps.sh)")
    return found[0]


def tools_environment(svc: ProxyService, home: Path, **extra: str) -> dict[str, str]:
    """What a user's terminal on the hub holds: the hub's variables for AI tools, and `extra`."""
    given = ai_environment(svc.url, TOKEN, {})
    assert given["CLAUDE_CODE_ATTRIBUTION_HEADER"] == "0"
    return quiet_env(home, **{**given, **extra})


def run(argv: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=SECONDS,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0 and "Answered." in done.stdout, done.stderr[-2000:]


def answered(received: list[AnthropicReceived], since: int) -> list[AnthropicReceived]:
    return [r for r in received[since:] if r.status == 200]


def test_a_claude_code_session_keeps_to_one_account_and_reads_its_cache(
    svc: ProxyService, fakes: tuple[FakeAnthropic, FakeProvider], tmp_path: Path
) -> None:
    claude_fake, _ = fakes
    claude = installed("@anthropic-ai/claude-code")
    env = tools_environment(svc, tmp_path / "home")
    work = tmp_path / "work"
    work.mkdir()
    model = ["--model", CLAUDE_MODEL]
    turns: list[list[AnthropicReceived]] = []
    for args in (
        ["-p", "Which tables hold orders?"],
        *[["-p", "--continue", "And customers?"]] * 2,
    ):
        start = len(claude_fake.received)
        run([*claude, *args, *model], env, work)
        turns.append(answered(claude_fake.received, start))
    accounts = {r.alias for turn in turns for r in turn}
    reads = [sum(r.cache_read for r in turn) for turn in turns]
    writes = [sum(r.cache_write for r in turn) for turn in turns]
    assert len(accounts) == 1, f"one session's turns went to {accounts}"
    # the tools and instructions, then the conversation so far, read from the second turn on
    assert reads[0] == 0 and all(read > writes[i] for i, read in enumerate(reads[1:], 1)), (
        reads,
        writes,
    )

    # a new session of the same user starts on that account, reading the tools and instructions
    start = len(claude_fake.received)
    run([*claude, "-p", "A new question: which tables hold returns?", *model], env, work)
    first = answered(claude_fake.received, start)[0]
    assert first.alias in accounts and first.cache_read > 5_000, (first.alias, first.cache_read)

    # why the hub sets CLAUDE_CODE_ATTRIBUTION_HEADER=0: with Claude Code's attribution line the
    # prompt starts with a hash of the session's first message, and no new session reads a thing
    lined = tools_environment(svc, tmp_path / "home", CLAUDE_CODE_ATTRIBUTION_HEADER="1")
    start = len(claude_fake.received)
    run([*claude, "-p", "One more new question: refunds?", *model], lined, work)
    first = answered(claude_fake.received, start)[0]
    system = json.dumps(first.body.get("system"))
    assert "x-anthropic-billing-header" in system and first.cache_read == 0, first.cache_read

    # the user is shown what the cache read (GET me, what %ask_status says): every token the
    # providers read from a cache for them (the module's other test may have run first)
    status, _, body = svc.request("GET", "me", token=TOKEN)
    assert status == 200
    cache: dict[str, Any] = json.loads(body)["prompt_cache"]
    _, chat = fakes
    read = sum(r.cache_read for r in claude_fake.received if r.status == 200)
    read += sum(r.cached_tokens for r in chat.received if r.status == 200)
    assert cache["read_tokens"] == read and read > sum(reads), (cache, read)
    assert cache["saved_usd"] > 0, cache


def test_a_codex_session_keeps_to_one_account_and_reads_its_cache(
    svc: ProxyService, fakes: tuple[FakeAnthropic, FakeProvider], tmp_path: Path
) -> None:
    _, chat = fakes
    codex = installed("@openai/codex")
    env = tools_environment(svc, tmp_path / "home", CODEX_HOME=str(tmp_path / "codex"))
    os.makedirs(env["CODEX_HOME"], exist_ok=True)
    work = tmp_path / "work"
    work.mkdir()
    hub = (
        f'model_providers.hub={{name="hub", base_url="{env["OPENAI_BASE_URL"]}", '
        'env_key="OPENAI_API_KEY", wire_api="responses"}'
    )
    base = [*codex, "exec", "--skip-git-repo-check", "-c", hub, "-c", "model_provider=hub"]
    base += ["-m", CODEX_MODEL]
    sent = []
    for args in (["Which tables hold orders?"], *[["resume", "--last", "And customers?"]] * 2):
        start = len(chat.received)
        run([*base, *args], env, work)
        sent.append([r for r in chat.received[start:] if r.status == 200])
    accounts = {r.alias for turn in sent for r in turn}
    cached = [sum(r.cached_tokens for r in turn) for turn in sent]
    assert len(accounts) == 1, f"one session's turns went to {accounts}"
    # Codex names its thread in prompt_cache_key: the turns after the first read their prefix
    assert cached[0] == 0 and all(c >= 1024 for c in cached[1:]), cached
