"""Issue 75, must-have 1 with the clients students bring to the hub's terminal: Claude Code and
Codex, as installed from npm, through a real `rsql-proxy` with the environment the hub gives a
user's tools. An admin starts a tutor window at run time (as `rsql-proxy admin window start
--mode tutor` does); the CLIs' requests reach the loopback providers with the course's
instruction first, ahead of their own system prompts. Both CLIs offer the model tools on every
request, which is agent mode: in a tutor window that leaves agent tools off, the student is told
why and nothing reaches a provider."""

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
from tests.helpers.fake_provider import FakeProvider, KeyPolicy
from tests.helpers.servers import ProxyService, start_service

pytestmark = pytest.mark.slow

STUDENT, ADMIN = "tok-tutor-student", "tok-tutor-admin"
CLAUDE_KEY = "test-anthropic-key-tutor-cli"
COURSE = "Tutor for STAT 101: give hints and questions, never the whole solution."
SECONDS = 180


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeAnthropic, FakeProvider]]:
    with (
        FakeAnthropic({CLAUDE_KEY: AnthropicKey("claude")}) as claude,
        FakeProvider({"sk-test-tutor-fake0123456789": KeyPolicy("o1")}) as chat,
    ):
        claude.script(*["A hint: which table holds the orders?"] * 50)
        chat.respond = lambda body: "A hint: which table holds the orders?"
        yield claude, chat


@pytest.fixture(scope="module")
def svc(
    fakes: tuple[FakeAnthropic, FakeProvider], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyService]:
    claude, chat = fakes
    service = start_service(
        tmp_path_factory.mktemp("tutor-proxy"),
        {
            "upstreams": [
                *upstreams_for(chat, o1={"models": {CODEX_MODEL: "fake-small"}}),
                {
                    "name": "claude",
                    "provider": "anthropic",
                    "base_url": claude.base_url,
                    "api_key": CLAUDE_KEY,
                    "models": {CLAUDE_MODEL: "claude-fake-small"},
                },
            ],
            "default_model": CODEX_MODEL,
        },
        static_users={
            STUDENT: {"name": "student", "groups": ["stat101"]},
            ADMIN: {"name": "teacher", "admin": True},
        },
    )
    yield service
    service.stop()


def tutor_window(svc: ProxyService, agent: bool) -> None:
    """A 60-minute tutor window for stat101, started by the admin; any earlier one ended."""
    svc.request("POST", "admin/windows/tutoring/end", {}, token=ADMIN)
    body = {
        "name": "tutoring",
        "mode": "tutor",
        "groups": ["stat101"],
        "minutes": 60,
        "message": "STAT 101 is in tutor mode",
        "instruction": COURSE,
        "agent": agent,
    }
    status, _, answer = svc.request("POST", "admin/windows", body, token=ADMIN)
    assert status == 200, answer


def cli(package: str) -> list[str]:
    found = node_cli(REPO / ".tools", package)
    if found is None:
        missing(f".tools/node_modules/{package} is not installed (scripts/install-system-deps.sh)")
    return found[0]


def environment(svc: ProxyService, home: Path, **extra: str) -> dict[str, str]:
    return quiet_env(home, **{**ai_environment(svc.url, STUDENT, {}), **extra})


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=SECONDS,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def codex_argv(svc: ProxyService, env: dict[str, str], prompt: str) -> list[str]:
    hub = (
        f'model_providers.hub={{name="hub", base_url="{env["OPENAI_BASE_URL"]}", '
        'env_key="OPENAI_API_KEY", wire_api="responses"}'
    )
    return [
        *cli("@openai/codex"), "exec", "--skip-git-repo-check", "-c", hub,
        "-c", "model_provider=hub", "-m", CODEX_MODEL, prompt,
    ]  # fmt: skip


def systems(body: dict[str, Any]) -> list[str]:
    system = body.get("system") or []
    return [system] if isinstance(system, str) else [b.get("text", "") for b in system]


def test_claude_code_in_tutor_mode_reaches_the_model_behind_the_course_instruction(
    svc: ProxyService, fakes: tuple[FakeAnthropic, FakeProvider], tmp_path: Path
) -> None:
    claude, _ = fakes
    tutor_window(svc, agent=True)
    env = environment(svc, tmp_path / "home")
    start = len(claude.received)
    done = run(
        [*cli("@anthropic-ai/claude-code"), "-p", "Solve exercise 3", "--model", CLAUDE_MODEL],
        env,
        tmp_path,
    )
    assert done.returncode == 0 and "A hint" in done.stdout, done.stderr[-2000:]
    sent = [r for r in claude.received[start:] if r.status == 200]
    assert sent, "Claude Code's request did not reach the provider"
    for r in sent:
        texts = systems(r.body)
        # first the course's instruction, then Claude Code's own system prompt, whole
        assert texts[0] == COURSE and len(texts) > 1 and "Claude" in json.dumps(texts[1:])


def test_claude_code_is_told_agent_tools_are_off_in_tutor_mode(
    svc: ProxyService, fakes: tuple[FakeAnthropic, FakeProvider], tmp_path: Path
) -> None:
    claude, _ = fakes
    tutor_window(svc, agent=False)
    env = environment(svc, tmp_path / "home")
    start = len(claude.received)
    done = run(
        [*cli("@anthropic-ai/claude-code"), "-p", "Solve exercise 3", "--model", CLAUDE_MODEL],
        env,
        tmp_path,
    )
    said = done.stdout + done.stderr
    assert done.returncode != 0 and "STAT 101 is in tutor mode" in said and "agent mode" in said, (
        said[-2000:]
    )
    assert claude.received[start:] == []


def test_codex_in_tutor_mode_reaches_the_model_behind_the_course_instruction(
    svc: ProxyService, fakes: tuple[FakeAnthropic, FakeProvider], tmp_path: Path
) -> None:
    _, chat = fakes
    tutor_window(svc, agent=True)
    env = environment(svc, tmp_path / "home", CODEX_HOME=str(tmp_path / "codex"))
    os.makedirs(env["CODEX_HOME"], exist_ok=True)
    start = len(chat.received)
    done = run(codex_argv(svc, env, "Solve exercise 3"), env, tmp_path)
    assert done.returncode == 0 and "A hint" in done.stdout, done.stderr[-2000:]
    sent = [r for r in chat.received[start:] if r.status == 200]
    assert sent
    for r in sent:
        first = r.body["messages"][0]
        assert first == {"role": "system", "content": COURSE}, first
        # Codex's own instructions follow, as the next system (or developer) text
        assert any("Codex" in json.dumps(m) for m in r.body["messages"][1:3])
