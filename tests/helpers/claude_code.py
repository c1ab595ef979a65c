"""Claude Code (the `claude` CLI the set-up installs from npm) as a test runs it: quiet, with a
home of its own, pointed at the proxy, and the tool results it sent back read from a fake."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import child_env


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
