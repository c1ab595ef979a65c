"""``{proxy}mcp``: the warehouse tools (list_connections, search_schema, describe_table,
run_sql) for users' MCP clients, over streamable HTTP, on the databases an admin configures.

Modules, bottom up:

- ``settings``: ``c.RSQLProxy.mcp_connections`` and the tool-call limits, checked at start-up.
- ``tool_calls``: one call from the caller to the usage row (window, entitlement, limits, a
  worker thread, the kernel's guarded tool, redaction); plain asyncio.
- ``endpoint``: the official SDK's MCP server and session manager, run for the process's life.
- ``handler``: the tornado handler both hosts mount, bridging each request to the SDK's ASGI.
"""
