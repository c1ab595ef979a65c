"""``{proxy}mcp``: the warehouse tools (list_connections, search_schema, describe_table,
run_sql) for users' MCP clients, over streamable HTTP, on the databases an admin configures.

Modules, bottom up:

- ``settings``: ``c.RSQLProxy.mcp_connections`` and the tool-call limits, checked at start-up.
- ``tool_calls``: one call from the caller to the usage row (window, entitlement, limits, a
  worker thread, the kernel's guarded tool, redaction); plain asyncio.
- ``endpoint``: the official SDK's MCP server and session manager, run for the process's life.
- ``handler``: the tornado handler both hosts mount, bridging each request to the SDK's ASGI.
"""

from __future__ import annotations

from typing import Any

from ..engine import ConfigError


def build_mcp(proxy: Any, engine: Any) -> Any:
    """The endpoint (``endpoint.MCPEndpoint``) for the connections the configuration names, or
    None when it names none. Raises ConfigError for a bad setting, or when what the endpoint
    needs is not installed.

    The endpoint's modules load only here, when connections are configured: they stand on the
    MCP SDK and on the kernel package's SQL guard, which a proxy without MCP (the service
    image) neither needs nor ships."""
    settings = proxy.mcp_settings()
    if not settings.on:
        return None
    try:
        from .endpoint import MCPEndpoint
        from .tool_calls import ToolCalls
    except ImportError as exc:
        raise ConfigError(
            "RSQLProxy.mcp_connections is set, but what the MCP endpoint needs is not installed "
            f"({exc.name or exc}): pip install 'rsql-assistant[mcp]'"
        ) from None
    return MCPEndpoint(ToolCalls(settings, engine))
