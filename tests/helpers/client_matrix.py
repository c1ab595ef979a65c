"""The client compatibility matrix (issue 54): the AI clients users install, each run against a
real `rsql-proxy` in front of the loopback providers, one check at a time.

The suite runs it on the pinned and the oldest supported versions (tests/e2e/test_client_matrix.py);
`make compat` (scripts/compat.py) on the newest the registries serve. A check is a CLI run
(`claude -p`, `codex exec`) or a small script run by the Python whose packages are under test,
each given the proxy only through the environment the hub gives a user's server. Every prompt
carries a marker the answer must quote, so an answer is known to be this check's.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import upstreams_for
from tests.helpers.claude_code import quiet_env
from tests.helpers.fake_anthropic import FakeAnthropic
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.servers import ProxyService, start_service
from tests.helpers.tool_calls import tool_call

ANTHROPIC_KEY = "test-anthropic-key-matrix"
TOKEN = "tok-matrix"
# what Claude Code asks for by name (the Anthropic upstream, passed on natively), a gateway's own
# name for a model (the chat upstream: Claude Code then sends `system` turns inside `messages`),
# and what Codex asks for (the chat upstream, through the Responses API)
CLAUDE_MODEL = "claude-sonnet-5-5"
GATEWAY_MODEL = "course-model"
CODEX_MODEL = "gpt-5-codex"
MARKER = re.compile(r"matrix-[a-z0-9.-]+")
TABLE_ROW = "matrix-mcp-row"
CLI_SECONDS = 180.0
SCRIPT_SECONDS = 120.0


@dataclass(frozen=True)
class Outcome:
    """What one check found: passed, failed, or not applicable to this version (`n/a`)."""

    result: str  # "pass", "fail", "n/a"
    detail: str  # the answer, the reason it does not apply, or the error line

    @property
    def failed(self) -> bool:
        return self.result == "fail"


def answer_from_request(body: dict[str, Any]) -> str | dict[str, Any] | None:
    """The chat provider's model: it quotes the prompt's marker, and calls the tool `rows` once
    when offered it (then quotes the tool's result), so a tool round trip needs no script."""
    messages = body.get("messages") or []
    found = MARKER.search(json.dumps(messages))
    if found is None:
        return None
    results = [m for m in messages if m.get("role") == "tool"]
    offered = {(t.get("function") or {}).get("name") for t in body.get("tools") or []}
    if "rows" in offered and not results:
        return tool_call("rows", {"table": "sales"}, "call_rows", prompt=20, completion=5)
    if results:
        return f"Answered {found.group()}: the tool said {results[-1].get('content')}."
    return f"Answered {found.group()}."


def answer_matrix_requests(provider: FakeProvider) -> None:
    """Make `provider` answer by answer_from_request until its next reset."""
    # the fake sends a dict as the whole answer (a tool call), though `respond` is typed str
    provider.respond = answer_from_request


def make_shop(folder: Path) -> Path:
    """The SQLite file both MCP servers serve: one table, one row the checks read back."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "matrix.db"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, note TEXT)")
        db.execute("INSERT INTO notes VALUES (1, ?)", (TABLE_ROW,))
    db.close()
    return path


def start_matrix_service(
    tmp: Path, provider: FakeProvider, claude_fake: FakeAnthropic, shop: Path
) -> ProxyService:
    """`rsql-proxy` with the chat provider's keys (the gateway names and Codex's model mapped onto
    its model), the Anthropic provider for Claude models, and `shop` at `{proxy}mcp`."""
    price = {"input": 1.0, "output": 2.0}
    names = {CODEX_MODEL: "fake-small", GATEWAY_MODEL: "fake-small", "fake-small": "fake-small"}
    chat = {"models": names, "prices": dict.fromkeys(names, price)}
    # claude-sonnet-5: a model LangChain's profiles say takes system turns inside `messages`
    claude_names = dict.fromkeys(
        (CLAUDE_MODEL, "claude-haiku-4-5", "claude-sonnet-5"), "claude-fake-small"
    )
    claude = {
        "name": "claude",
        "provider": "anthropic",
        "base_url": claude_fake.base_url,
        "api_key": ANTHROPIC_KEY,
        "models": claude_names,
        "prices": dict.fromkeys(claude_names, price),
    }
    aliases = {policy.alias: chat for policy in provider.keys.values()}
    return start_service(
        tmp,
        {
            "upstreams": [*upstreams_for(provider, **aliases), claude],
            "default_model": "fake-small",
            "user_daily_budget_usd": 50.0,
            "mcp_connections": {"shop": {"url": f"sqlite:///{shop}"}},
        },
        static_users={TOKEN: {"name": "matrix"}},
    )


def hub_environment(proxy_url: str, home: Path, **extra: str) -> dict[str, str]:
    """The variables the hub gives a user's server (docs/users/ai-tools.md), nothing else of
    the providers', with telemetry and update checks off."""
    root = proxy_url.rstrip("/")
    return quiet_env(
        home,
        OPENAI_BASE_URL=proxy_url + "v1",
        OPENAI_API_BASE=proxy_url + "v1",
        OPENAI_API_KEY=TOKEN,
        OPENAI_AGENTS_DISABLE_TRACING="1",
        ANTHROPIC_BASE_URL=root,
        ANTHROPIC_API_URL=root,
        ANTHROPIC_API_KEY=TOKEN,
        # LiteLLM fetches its price list from GitHub on import unless told to use its own copy
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        **extra,
    )


def error_line(text: str) -> str:
    """The line of a client's output that says what went wrong, shortened for a table cell: a
    Python exception's last line, else the first line naming an error, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "(no output)"
    raised = [line for line in lines if re.match(r"[\w.]*(Error|Exception|Exit)\b.*:", line)]
    named = [line for line in lines if re.search(r"error|refused|invalid|denied", line, re.I)]
    return (raised[-1] if raised else named[0] if named else lines[-1])[:300]


def _judged(done: subprocess.CompletedProcess[str], expect: tuple[str, ...]) -> Outcome:
    """Passed when the client exits 0 and printed every answer expected (the model's words
    quoting the marker: a client may echo the prompt itself)."""
    out = done.stdout.strip()
    if done.returncode == 0 and out.startswith("n/a:"):
        return Outcome("n/a", out[4:].strip())
    if done.returncode == 0 and all(e in out for e in expect):
        return Outcome("pass", out.splitlines()[-1][:300])
    return Outcome("fail", error_line(done.stderr + "\n" + done.stdout))


def _run(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str] | Outcome:
    try:
        return subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as gone:
        said = gone.stderr.decode(errors="replace") if isinstance(gone.stderr, bytes) else ""
        return Outcome("fail", f"no answer within {timeout:.0f} s: {error_line(said)}")


# -- the CLIs -------------------------------------------------------------------------------------


def node_cli(prefix: Path, package_dir: str) -> tuple[list[str], str] | None:
    """The command that runs the npm package installed at `prefix`/node_modules/`package_dir`
    (a name or an alias) and its version, or None when it is not installed there."""
    folder = prefix / "node_modules" / package_dir
    try:
        meta = json.loads((folder / "package.json").read_text())
    except (OSError, ValueError):
        return None
    bins = meta.get("bin")
    target = next(iter(bins.values())) if isinstance(bins, dict) else bins
    path = folder / str(target)
    if not path.exists():
        return None
    # a JavaScript entry point (Claude Code before its native builds) runs under node
    command = ["node", str(path)] if path.suffix in (".js", ".mjs", ".cjs") else [str(path)]
    return command, str(meta.get("version"))


def claude_code(
    command: list[str],
    proxy_url: str,
    model: str,
    marker: str,
    claude_fake: FakeAnthropic,
    tmp: Path,
) -> Outcome:
    """`claude -p` asked for `model` through the proxy: answered by the Anthropic provider for a
    Claude model, by the chat provider for a gateway's own name."""
    claude_fake.reset()
    claude_fake.script(*[f"Answered {marker}."] * 3)
    env = hub_environment(proxy_url, tmp / "home")
    prompt = f"Say hello ({marker})"
    done = _run([*command, "-p", prompt, "--model", model], env, tmp, CLI_SECONDS)
    claude_fake.reset()  # the answers it did not ask for are not the next check's
    return done if isinstance(done, Outcome) else _judged(done, (f"Answered {marker}",))


def codex(command: list[str], proxy_url: str, marker: str, tmp: Path) -> Outcome:
    """`codex exec` configured as docs/users/ai-tools.md says, through the Responses API."""
    entry = (
        f'model_providers.hub={{name="hub", base_url="{proxy_url}v1", env_key="OPENAI_API_KEY", '
        'wire_api="responses"}'
    )
    env = hub_environment(proxy_url, tmp / "home", CODEX_HOME=str(tmp / "codex"))
    os.makedirs(env["CODEX_HOME"], exist_ok=True)
    argv = [*command, "exec", "--skip-git-repo-check", "-c", entry, "-c", "model_provider=hub"]
    # with its defaults: web search on, which the proxy drops where it cannot run (hosted tools)
    argv += ["-m", CODEX_MODEL, f"Say hello ({marker})"]
    done = _run(argv, env, tmp, CLI_SECONDS)
    return done if isinstance(done, Outcome) else _judged(done, (f"Answered {marker}",))


# -- the Python clients ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptCheck:
    """One check of a Python client: `code` prints the answers (or `n/a: why`) and exits
    non-zero on an error; they must hold each of `expect`."""

    client: str  # the row: "openai SDK", "MCP client (2025-06-18)", ...
    package: str  # the distribution whose version is the row's
    what: str  # what the check does
    code: str
    expect: tuple[str, ...]


def run_script(check: ScriptCheck, python: str, proxy_url: str, tmp: Path, **extra: str) -> Outcome:
    env = hub_environment(proxy_url, tmp / "home", **extra)
    done = _run([python, "-c", check.code], env, tmp, SCRIPT_SECONDS)
    return done if isinstance(done, Outcome) else _judged(done, check.expect)


def package_version(python: str, package: str) -> str | None:
    """The version of `package` that `python` imports, or None when it has none."""
    code = f"import importlib.metadata as m\ntry: print(m.version({package!r}))\nexcept m.PackageNotFoundError: pass"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or None


def _openai_chat(marker: str, stream: bool) -> str:
    ask = f"model='fake-small', messages=[{{'role': 'user', 'content': {marker!r}}}]"
    if not stream:
        return f"import openai\nprint(openai.OpenAI().chat.completions.create({ask}).choices[0].message.content)"
    return (
        "import openai\n"
        f"chunks = openai.OpenAI().chat.completions.create({ask}, stream=True)\n"
        "print(''.join(c.choices[0].delta.content or '' for c in chunks if c.choices))"
    )


OPENAI_RESPONSES = """
import openai, sys
client = openai.OpenAI()
if not hasattr(client, "responses"):
    print("n/a: this version has no Responses API"); sys.exit(0)
print(client.responses.create(model="fake-small", input="matrix-openai-responses").output_text)
"""

ANTHROPIC_NATIVE = """
import anthropic
answer = anthropic.Anthropic().messages.create(
    model="claude-sonnet-5-5", max_tokens=64, system="Be brief.",
    messages=[{"role": "user", "content": "matrix-anthropic-native"}])
print(answer.content[0].text)
"""

ANTHROPIC_STREAM = """
import anthropic
with anthropic.Anthropic().messages.stream(
    model="fake-small", max_tokens=64, system="Be brief.",
    messages=[{"role": "user", "content": "matrix-anthropic-stream"}]) as stream:
    print(stream.get_final_text())
"""

AGENTS = """
from agents import Agent, Runner, function_tool

@function_tool
def rows(table: str) -> int:
    \"\"\"How many rows a table has.\"\"\"
    return 42

agent = Agent(name="analyst", instructions="Use the tools.", tools=[rows], model="fake-small")
print(Runner.run_sync(agent, "matrix-agents: how many rows has sales?").final_output)
"""

LANGCHAIN_OPENAI = """
from langchain_openai import ChatOpenAI
print(ChatOpenAI(model="fake-small").invoke("matrix-langchain-chat").content)
print(ChatOpenAI(model="fake-small", use_responses_api=True).invoke("matrix-langchain-responses").content)
"""

LANGCHAIN_ANTHROPIC = """
from langchain_anthropic import ChatAnthropic
claude = ChatAnthropic(model="claude-sonnet-5-5", max_tokens=64)
print(claude.invoke([("system", "Be brief."), ("human", "matrix-langchain-anthropic")]).content)
"""

# a system message after the first turn, which LangChain's Anthropic package sends at its position
# (after a human turn, last or before an AI turn) to a model whose profile says the model takes
# it (newer Claude models), and hoists into `system` otherwise
LANGCHAIN_ANTHROPIC_LATER_SYSTEM = """
import inspect, sys
import langchain_anthropic.chat_models as chat_models
from langchain_anthropic import ChatAnthropic
if "mid_conversation_system_messages" not in inspect.getsource(chat_models):
    print("n/a: this version hoists every system message into `system`"); sys.exit(0)
turns = [("system", "Be brief."), ("human", "Hello"), ("ai", "Hello."),
         ("human", "matrix-langchain-system"), ("system", "Answer in one line.")]
print(ChatAnthropic(model="claude-sonnet-5", max_tokens=64).invoke(turns).content)
in_place = {"mid_conversation_system_messages": True}
print(ChatAnthropic(model="fake-small", max_tokens=64, profile=in_place).invoke(turns).content)
"""

# what jupyter-ai 3's Jupyternaut does with a model: its own ChatLiteLLM (prompt caching on the
# system message), streamed, with a tool round trip; langchain-litellm's where jupyter-ai is not
# installed (the suite's venv, where its server extensions would load into every test server)
JUPYTERNAUT = """
import asyncio, sys
from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
try:
    from jupyter_ai_jupyternaut.jupyternaut.chat_models import ChatLiteLLM
    cache = {}
except ImportError:
    from langchain_litellm import ChatLiteLLM
    cache = {"cache_control_injection_points": [{"location": "message", "role": "system"}]}

@tool
def rows(table: str) -> int:
    '''How many rows a table has.'''
    return 42

async def main(model_id: str, marker: str) -> None:
    model = ChatLiteLLM(model=model_id, streaming=True).bind_tools([rows])
    messages = [SystemMessage("You are Jupyternaut."), HumanMessage(f"{marker}: rows of sales?")]
    for _ in range(3):
        answer = None
        async for chunk in model.astream(messages, **cache):
            answer = chunk if answer is None else answer + chunk
        messages.append(answer)
        if not answer.tool_calls:
            break
        for call in answer.tool_calls:
            messages.append(ToolMessage(str(rows.invoke(call["args"])), tool_call_id=call["id"]))
    print(answer.content)

asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else MODEL, MARKER))
"""

# MCP: the `mcp` SDK's client on one protocol revision, against {proxy}mcp (streamable HTTP, the
# user's token) or rsql-mcp (stdio). A handshake-era revision is asked for in `initialize` (the
# SDK proposes its newest otherwise); 2026-07-28 is adopted without a handshake, as its mode says.
MCP = """
import os, sys, anyio
import mcp
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
VERSION, SERVER = {version!r}, {server!r}
try:
    import mcp_types as types
    from mcp import Client
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS, SUPPORTED_PROTOCOL_VERSIONS
except ImportError:
    print("n/a: this mcp has no client pinned to a revision (mcp 2 and later)"); sys.exit(0)
if VERSION not in SUPPORTED_PROTOCOL_VERSIONS:
    print(f"n/a: this mcp does not speak {{VERSION}}"); sys.exit(0)

def transport():
    if SERVER == "rsql-mcp":
        db = os.environ["MATRIX_DB"]
        return stdio_client(StdioServerParameters(command=os.environ["RSQL_MCP"],
                                                  args=["--db", f"shop=sqlite:///{{db}}"]))
    import httpx2
    from mcp.client.streamable_http import streamable_http_client
    http = httpx2.AsyncClient(headers={{"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}})
    return streamable_http_client(os.environ["MATRIX_MCP_URL"], http_client=http)

async def calls(call_tool, list_tools, agreed):
    names = sorted(t.name for t in (await list_tools()).tools)
    result = await call_tool("run_sql", {{"connection": "shop", "sql": "SELECT note FROM notes"}})
    text = " ".join(getattr(part, "text", "") for part in result.content).replace(chr(10), " ")
    print(f"protocol {{agreed}}; tools {{','.join(names)}}; run_sql: {{text}}")

async def main():
    if VERSION in MODERN_PROTOCOL_VERSIONS:
        async with Client(transport(), mode=VERSION) as client:
            await calls(client.call_tool, client.list_tools, VERSION)
        return
    async with transport() as streams, ClientSession(streams[0], streams[1]) as session:
        result = await session.send_request(types.InitializeRequest(params=types.InitializeRequestParams(
            protocol_version=VERSION, capabilities=types.ClientCapabilities(),
            client_info=types.Implementation(name="rsql-matrix", version="1"))), types.InitializeResult)
        if result.protocol_version != VERSION:
            sys.exit(f"error: the server answered protocol {{result.protocol_version}}, not {{VERSION}}")
        session.adopt(result)
        await session.send_notification(types.InitializedNotification())
        await calls(session.call_tool, session.list_tools, result.protocol_version)

anyio.run(main)
"""

MCP_REVISIONS = ("2025-06-18", "2026-07-28")


def _jupyternaut(model: str, marker: str) -> str:
    return f"MODEL, MARKER = {model!r}, {marker!r}\n" + JUPYTERNAUT


def script_checks() -> list[ScriptCheck]:
    """Every check of a Python client, in the table's order. What each expects: the chat
    provider's "Answered <marker>" (answer_from_request), the Anthropic provider's "Fake answer
    to: <marker>", a tool's result quoted back, or the MCP table's row."""
    chat, claude = "Answered ", "Fake answer to: "
    tool = ("the tool said 42",)
    checks = [
        ScriptCheck(
            "openai SDK",
            "openai",
            "Chat Completions",
            _openai_chat("matrix-openai-chat", False),
            (chat + "matrix-openai-chat",),
        ),
        ScriptCheck(
            "openai SDK",
            "openai",
            "Chat Completions, streamed",
            _openai_chat("matrix-openai-stream", True),
            (chat + "matrix-openai-stream",),
        ),
        ScriptCheck(
            "openai SDK",
            "openai",
            "Responses",
            OPENAI_RESPONSES,
            (chat + "matrix-openai-responses",),
        ),
        ScriptCheck(
            "anthropic SDK",
            "anthropic",
            "Messages to a Claude model (native)",
            ANTHROPIC_NATIVE,
            (claude + "matrix-anthropic-native",),
        ),
        ScriptCheck(
            "anthropic SDK",
            "anthropic",
            "Messages streamed, to a chat model (translated)",
            ANTHROPIC_STREAM,
            (chat + "matrix-anthropic-stream",),
        ),
        ScriptCheck(
            "OpenAI Agents SDK", "openai-agents", "a function tool round trip", AGENTS, tool
        ),
        ScriptCheck(
            "LangChain (langchain-openai)",
            "langchain-openai",
            "ChatOpenAI, Chat Completions and Responses",
            LANGCHAIN_OPENAI,
            (chat + "matrix-langchain-chat", chat + "matrix-langchain-responses"),
        ),
        ScriptCheck(
            "LangChain (langchain-anthropic)",
            "langchain-anthropic",
            "ChatAnthropic with a system prompt",
            LANGCHAIN_ANTHROPIC,
            (claude + "matrix-langchain-anthropic",),
        ),
        ScriptCheck(
            "LangChain (langchain-anthropic)",
            "langchain-anthropic",
            "a later system message, in place, native and translated",
            LANGCHAIN_ANTHROPIC_LATER_SYSTEM,
            (claude + "matrix-langchain-system", chat + "matrix-langchain-system"),
        ),
        ScriptCheck(
            "jupyter-ai 3 (Jupyternaut)",
            "jupyter-ai",
            "openai/ model, streamed, a tool round trip",
            _jupyternaut("openai/fake-small", "matrix-jupyternaut"),
            tool,
        ),
        ScriptCheck(
            "jupyter-ai 3 (Jupyternaut)",
            "jupyter-ai",
            "anthropic/ model, streamed",
            _jupyternaut(f"anthropic/{CLAUDE_MODEL}", "matrix-jupyternaut-claude"),
            (claude + "matrix-jupyternaut-claude",),
        ),
    ]
    for version in MCP_REVISIONS:
        for server in ("{proxy}mcp", "rsql-mcp"):
            checks.append(
                ScriptCheck(
                    f"MCP client ({version})",
                    "mcp",
                    f"`{server}`: list the tools, run_sql",
                    MCP.format(version=version, server=server),
                    (f"protocol {version}", TABLE_ROW),
                )
            )
    return checks


def mcp_environment(proxy_url: str, shop: Path, rsql_mcp: str) -> dict[str, str]:
    """What the MCP checks read: the proxy's endpoint, the database and rsql-mcp's command."""
    return {"MATRIX_MCP_URL": proxy_url + "mcp", "MATRIX_DB": str(shop), "RSQL_MCP": rsql_mcp}
