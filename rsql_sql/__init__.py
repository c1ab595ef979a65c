"""The SQL package: from a question to checked, read-only SQL and a DataFrame, and the same walls
for every other way SQL reaches a database (the agent's warehouse tools, ``rsql-mcp``, the
proxy's ``{proxy}mcp`` endpoint).

A package of its own, depending on nothing of ours but the shared leaves (:mod:`rsql_common`),
because both the kernel (:mod:`rsql_magic`) and the proxy (:mod:`jupyter_server_ext`, for MCP)
run it, and neither imports the other.

Modules, bottom up:

- ``errors``: the SQL errors (``SqlCheckError``, ``Refused``, ``SqlAIError``, ``QueryTimeout``,
  ``BadConnection``) and the position they point at, under the shared roots; the stages where
  SQL fails are a shared leaf (:mod:`rsql_common.stages`). ``defaults``: ``%%sql_ai``'s
  defaults, declared once.
- ``token_pointers``: messages that point at a token (a caret line under it).
- ``dialects``: dialect names as sqlglot spells them (``sqlglot_dialect``).
- ``policy``: allowed functions and the PostgreSQL role (``SqlPolicy``).
- ``parse``: sqlglot parsing, shared by the checks and the databases' name rules.
- ``fetch``: fetching within a row, byte and time bound.
- ``catalog``: the captured shape of a database (``Schema``, ``Table``, ``Column``,
  ``ForeignKey``) and ``assemble``, which makes one from catalog rows.
- ``database_rules``: what the databases' own name rules share, and sqlglot's respelling for the
  target after a syntax error.
- ``databases``: one module per SQL database (``sqlite``, ``duckdb``, ``postgres``; ``others`` by
  name only), each with its connection adapter, database-side read-only walls, functions,
  catalog queries and name rules, registered by name (``database_for``); ``functions``, the
  allowlists of pure functions every database adds to; the SQLAlchemy and DataFrames adapters as
  thin wrappers over them.
- ``connections``: where callers find the adapters (``resolve`` any accepted connection).
- ``schema``: schema capture (``backends``, ``render`` as DDL, ``rank`` by relevance, ``words``
  and ``index``: word variants, the per-schema index and join graph, ``values``: the short
  text columns' values that steer the ranking where the policy allows).
- ``checks``: what a generated statement passes before it runs: ``strings`` (string literals
  a database may read two ways), ``guard`` (the read-only allowlist on the parsed statement,
  and width bounds on calls that build a value in one step), ``validate`` (extract,
  transpile, guard and qualify against the schema).
- ``execute``: the executor, and database errors with the data removed.
- ``loop``: the retry loop (``run_question``) and the escalation chain (``run_chain``).
- ``warehouse``: the warehouse tools over one database connection (``search_schema``,
  ``describe_table``, ``run_sql``), for the kernel's agent and for MCP alike; the context
  policy (:mod:`rsql_common.context_policy`) decides which values may leave.
- ``mcp``: ``connections``, the databases an MCP server holds, opened read-only, and one tool
  call on one (``rsql-mcp`` and the proxy's ``{proxy}mcp`` endpoint both run them so); and
  ``server``, ``rsql-mcp`` itself, the warehouse tools over stdio.

The magic itself, ``%%sql_ai``, stands on the session above this package:
:mod:`rsql_magic.magics.sql_ai`.
"""
