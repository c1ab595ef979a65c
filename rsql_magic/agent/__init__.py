"""The assistant's tools: read-only, bounded, and held to the same walls as %%sql_ai.

Modules, bottom up:

- ``calls``: what a tool call is in any tool box: the definitions the model sees, its
  arguments checked before anything runs, and the bounded result that goes back.
- ``tools``: the kernel's agent tools (frames, R objects, the last error, proposed cells).
- ``eval_tools``: the warehouse tools over one database, for rsql-eval's agent mode.
- ``loop``: one agent turn: the model calls the tools over several steps, within a step and
  token limit, then answers.
- ``cell``: ``%%ask --agent`` in a cell: each step shown as it happens, then the answer.

The warehouse tools themselves (``search_schema``, ``describe_table``, ``run_sql`` over one
database connection) are the SQL package's (:mod:`rsql_sql.warehouse`), since MCP serves them
too: ``rsql-mcp`` and the proxy's ``{proxy}mcp`` endpoint (:mod:`rsql_sql.mcp`).

No tool runs Python or R code a model wrote.
"""
