"""Claude Code (the `claude` CLI the set-up installs from npm) as a test runs it: quiet, with a
home of its own, pointed at the proxy, and the tool results it sent back read from a fake; and
any CLI run with its output read as it comes (Codex, stopped when it begins to wait)."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.helpers import child_env, require


def quiet_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI under test: no telemetry or updates, loopback only, and of the
    provider variables only those `extra` gives."""
    home.mkdir(parents=True, exist_ok=True)
    env = child_env(
        HOME=str(home),
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_ERROR_REPORTING="1",
        NO_PROXY="127.0.0.1,localhost",
        **extra,
    )
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_BASE_URL"):
        if name not in extra:
            env.pop(name, None)  # only what the test gives it
    return env


def run_claude_with_mcp(
    prompt: str, *, proxy_url: str, token: str, model: str, config: Path, allowed: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """`claude -p PROMPT` through the proxy at `proxy_url` as `token`'s user, with the MCP
    servers of `config` only, allowed to call the tool `allowed` without asking."""
    env = quiet_env(cwd / "home", ANTHROPIC_BASE_URL=proxy_url.rstrip("/"), ANTHROPIC_API_KEY=token)
    return subprocess.run(
        [
            "claude",
            "-p",
            prompt,
            "--model",
            model,
            "--mcp-config",
            str(config),
            "--strict-mcp-config",
            "--allowedTools",
            allowed,
        ],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def run_sql_use(connection: str, sql: str) -> dict[str, Any]:
    """A scripted Anthropic answer in which the model calls the MCP server ``wh``'s ``run_sql``
    on `connection` (what Claude Code names ``mcp__wh__run_sql``)."""
    use = {"type": "tool_use", "name": "mcp__wh__run_sql"}
    return {
        "content": [{**use, "input": {"connection": connection, "sql": sql}}],
        "stop_reason": "tool_use",
    }


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of a Messages request body."""
    return [
        block
        for message in body.get("messages", [])
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]


def result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content or [])


@dataclass
class CliRun:
    """What a CLI printed, and whether the test stopped it (see `run_cli`)."""

    returncode: int
    stdout: str
    stderr: str
    stopped_on: str | None  # the line it was stopped on; None: it ended by itself

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    argv: list[str], env: dict[str, str], cwd: Path, *, stop_on: str = "", timeout: float = 120
) -> CliRun:
    """Run a CLI as a user would, its output read as it comes. `stop_on`: text of a line that
    says the CLI has begun waiting to retry (Codex's "Reconnecting..."), on which it is stopped
    at once: it would otherwise sleep as long as a 429's Retry-After says, hours for a budget."""
    require(argv[0], binary=True, reason="the project's set-up installs it into .tools/ from npm")
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    settled = threading.Event()
    out: list[str] = []
    err: list[str] = []
    stopped: list[str] = []

    def read(stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line)
            if stop_on and stop_on in line and not stopped:
                stopped.append(line.strip())
                settled.set()

    readers = [
        threading.Thread(target=read, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=read, args=(proc.stderr, err), daemon=True),
    ]
    for reader in readers:
        reader.start()

    def ended() -> None:
        proc.wait()
        settled.set()

    threading.Thread(target=ended, daemon=True).start()
    if not settled.wait(timeout):
        stopped.append(f"(no end after {timeout} s)")
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for reader in readers:
        reader.join(5)
    return CliRun(proc.returncode, "".join(out), "".join(err), stopped[0] if stopped else None)


def codex_argv(proxy_url: str, model: str, prompt: str, *config: str) -> list[str]:
    """`codex exec` with the hub as its provider, as docs/users/ai-tools.md writes it (the key
    from RSQL_PROXY_TOKEN), and `config`'s extra ``-c`` settings."""
    provider = (
        f'model_providers.hub={{name="hub", base_url="{proxy_url}v1", env_key="RSQL_PROXY_TOKEN", '
        'wire_api="responses"}'
    )
    argv = ["codex", "exec", "--skip-git-repo-check", "-c", provider, "-c", "model_provider=hub"]
    for setting in config:
        argv += ["-c", setting]
    return [*argv, "-m", model, prompt]
