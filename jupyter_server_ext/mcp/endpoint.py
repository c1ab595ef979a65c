"""The MCP server behind ``{proxy}mcp``: the official SDK's, over streamable HTTP.

The SDK serves ASGI; the proxy's hosts are tornado. The handler (``mcp.handler``) hands each
authenticated request to the SDK's session manager as one ASGI call, with the caller in a
context variable the tools read. The manager runs stateless with JSON answers: every POST
carries the user's token and is answered on its own, so any replica can answer any request and
there is no session to steal or to keep alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from typing import Any

# the SDK (version 2: MCPServer) and the kernel package's tools: a missing one is an
# ImportError that mcp.build_mcp turns into the message to install the [mcp] extra
from mcp.server.mcpserver import MCPServer  # noqa: F401
from mcp.server.transport_security import TransportSecuritySettings

from rsql_sql.mcp.server import INSTRUCTIONS, add_tools, sdk

from ..engine import Caller
from .tool_calls import ToolCalls

# the authenticated caller of the request being served (set by the handler, read by the tools)
CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "rsql_mcp_caller", default=None
)
# a JSON-RPC message to these tools is small: a question or one SQL statement
MAX_BODY_BYTES = 256 * 1024


def build_server(calls: ToolCalls) -> Any:
    """The SDK server with the four tools, each run for the caller of the request."""
    Server, ToolError, _ = sdk()
    server = Server("rsql-proxy", instructions=INSTRUCTIONS)

    def caller() -> Caller:
        found = CALLER.get()
        if found is None:  # only the handler calls the server, and it sets the caller first
            raise ToolError("not authenticated")
        return found

    async def call(tool: str, args: dict[str, str]) -> str:
        result = await calls.call(caller(), tool, args)
        if not result.ok:
            raise ToolError(result.text)
        return result.text

    async def list_connections() -> str:
        result = await calls.list_connections(caller())
        if not result.ok:
            raise ToolError(result.text)
        return result.text

    async def search_schema(connection: str, question: str) -> str:
        return await call("search_schema", {"connection": connection, "question": question})

    async def describe_table(connection: str, table: str) -> str:
        return await call("describe_table", {"connection": connection, "table": table})

    async def run_sql(connection: str, sql: str) -> str:
        return await call("run_sql", {"connection": connection, "sql": sql})

    add_tools(server, list_connections, search_schema, describe_table, run_sql)
    return server


class MCPEndpoint:
    """The SDK's session manager, run for the life of the proxy process."""

    def __init__(self, calls: ToolCalls) -> None:
        self.calls = calls
        self.server = build_server(calls)
        # the proxy has authenticated the request by its token before the SDK sees it, and a
        # browser cannot send a cross-site request with that header: the SDK's own Host and
        # Origin checks (for servers that trust whatever reaches them) would refuse the hub's
        # own host names
        self.server.streamable_http_app(
            json_response=True,
            stateless_http=True,
            max_request_body_size=MAX_BODY_BYTES,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self.manager = self.server.session_manager
        self._running: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()

    async def _run(self) -> None:
        async with self.manager.run():
            self._ready.set()
            await self._stop.wait()

    async def start(self) -> None:
        if self._running is None:
            self._running = asyncio.ensure_future(self._run())
        if not self._ready.is_set():
            ready = asyncio.ensure_future(self._ready.wait())
            await asyncio.wait({ready, self._running}, return_when=asyncio.FIRST_COMPLETED)
            if not self._ready.is_set():
                ready.cancel()
                self._running.result()  # the manager failed to start: its error

    async def handle(self, caller: Caller, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve one ASGI request for `caller`."""
        await self.start()
        token = CALLER.set(caller)
        try:
            await self.manager.handle_request(scope, receive, send)
        finally:
            CALLER.reset(token)

    async def close(self) -> None:
        self._stop.set()
        if self._running is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._running, 5)
        await self.calls.close()
