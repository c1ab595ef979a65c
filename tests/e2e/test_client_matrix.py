"""The client compatibility matrix as CI runs it (issue 54): the oldest supported and the pinned
Claude Code and Codex (.tools/, scripts/install-system-deps.sh), and the suite's own Python
clients, each answering through a real `rsql-proxy` in front of the loopback providers.

The checks are tests/helpers/client_matrix.py's, the same `make compat` runs on the newest
versions the registries serve (scripts/compat.py); the versions stay pinned here so CI is
reproducible. Claude Code is asked for a Claude model (passed on to the Anthropic provider as
sent) and for a gateway's own model name (`course-model`, on a chat provider: Claude Code then
sends `system` turns inside `messages`). Codex runs with the configuration the docs give.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, missing
from tests.helpers.client_matrix import (
    ANTHROPIC_KEY,
    CLAUDE_MODEL,
    GATEWAY_MODEL,
    ScriptCheck,
    answer_matrix_requests,
    claude_code,
    codex,
    make_shop,
    mcp_environment,
    node_cli,
    package_version,
    run_script,
    script_checks,
    start_matrix_service,
)
from tests.helpers.fake_anthropic import FakeAnthropic, KeyPolicy
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService

pytestmark = pytest.mark.slow

TOOLS = REPO / ".tools"
# (the folder under .tools/node_modules, as the test is named): the oldest supported under its
# npm alias, the pinned under the package's own name
CLAUDE_CODES = [("claude-code-oldest", "oldest"), ("@anthropic-ai/claude-code", "pinned")]
CODEXES = [("codex-oldest", "oldest"), ("@openai/codex", "pinned")]
# what the test extra installs (pyproject.toml); make compat runs the others
SUITE_PACKAGES = {"openai", "anthropic", "openai-agents", "langchain-openai", "mcp"}


@pytest.fixture(scope="module")
def claude_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic({ANTHROPIC_KEY: KeyPolicy("claude")}) as fake:
        yield fake


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shop(tmp_path_factory.mktemp("matrix-db"))


@pytest.fixture(scope="module")
def svc(
    provider: FakeProvider,
    claude_fake: FakeAnthropic,
    shop: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProxyService]:
    provider.reset()
    answer_matrix_requests(provider)
    service = start_matrix_service(
        tmp_path_factory.mktemp("matrix-proxy"), provider, claude_fake, shop
    )
    yield service
    service.stop()
    provider.reset()


def installed(folder: str) -> tuple[list[str], str]:
    found = node_cli(TOOLS, folder)
    if found is None:
        missing(f".tools/node_modules/{folder} is not installed (scripts/install-system-deps.sh)")
    return found


@pytest.mark.parametrize("model", [CLAUDE_MODEL, GATEWAY_MODEL])
@pytest.mark.parametrize(("folder", "tried_as"), CLAUDE_CODES, ids=[t for _, t in CLAUDE_CODES])
def test_claude_code_answers_through_the_proxy(
    svc: ProxyService,
    claude_fake: FakeAnthropic,
    folder: str,
    tried_as: str,
    model: str,
    tmp_path: Path,
) -> None:
    command, version = installed(folder)
    marker = f"matrix-claude-{tried_as}-{model}"
    outcome = claude_code(command, svc.url, model, marker, claude_fake, tmp_path)
    assert outcome.result == "pass", f"Claude Code {version}: {outcome.detail}\n{svc.log()[-2000:]}"


@pytest.mark.parametrize(("folder", "tried_as"), CODEXES, ids=[t for _, t in CODEXES])
def test_codex_answers_through_the_proxy(
    svc: ProxyService, folder: str, tried_as: str, tmp_path: Path
) -> None:
    command, version = installed(folder)
    outcome = codex(command, svc.url, f"matrix-codex-{tried_as}", tmp_path)
    assert outcome.result == "pass", f"Codex {version}: {outcome.detail}\n{svc.log()[-2000:]}"


SUITE_CHECKS = [c for c in script_checks() if c.package in SUITE_PACKAGES]


@pytest.mark.parametrize("check", SUITE_CHECKS, ids=[f"{c.client}: {c.what}" for c in SUITE_CHECKS])
def test_the_suites_python_clients_answer_through_the_proxy(
    svc: ProxyService, shop: Path, check: ScriptCheck, tmp_path: Path
) -> None:
    version = package_version(sys.executable, check.package)
    if version is None:
        missing(f"{check.package} is not installed (the test extra)")
    rsql_mcp = str(Path(sys.executable).parent / "rsql-mcp")
    extra = mcp_environment(svc.url, shop, rsql_mcp)
    outcome = run_script(check, sys.executable, svc.url, tmp_path, **extra)
    # n/a: the check needs what this version lacks (the Responses API before openai 1.66)
    assert outcome.result != "fail", f"{check.package} {version}: {outcome.detail}"
