"""The assistant's tools: read-only, bounded, and held to the same walls as %%sql_ai.

Modules, bottom up:

- ``calls``: what a tool call is in any tool box: the definitions the model sees, its
  arguments checked before anything runs, and the bounded result that goes back.
- ``warehouse``: the warehouse tools over one database connection (``search_schema``,
  ``describe_table``, ``run_sql``), shared by the kernel's agent tools and by MCP. Every
  statement goes through the guard, the engine rules, the database's read-only walls and the
  result bound of :mod:`rsql_magic.sql`; the context policy decides which values may leave.
- ``connections``: the databases an MCP server holds, opened read-only, and one warehouse tool
  call on one (``rsql-mcp`` and the proxy's ``{proxy}mcp`` endpoint both run them so).
- ``tools``: the kernel's agent tools (frames, R objects, the last error, proposed cells).
- ``eval_tools``: the warehouse tools over one database, for rsql-eval's agent mode.
- ``loop``: one agent turn: the model calls the tools over several steps, within a step and
  token limit, then answers.
- ``cell``: ``%%ask --agent`` in a cell: each step shown as it happens, then the answer.
- ``mcp_server``: ``rsql-mcp``, the warehouse tools as an MCP server over stdio for a user's
  own connections (``rsql-mcp --db NAME=URL ...``).

No tool runs Python or R code a model wrote.
"""
