"""The warehouse tools over MCP: ``connections`` (the databases a server holds, opened
read-only, and one tool call on one, for ``rsql-mcp`` and the proxy's ``{proxy}mcp`` endpoint
alike) and ``server`` (``rsql-mcp``, over stdio)."""
