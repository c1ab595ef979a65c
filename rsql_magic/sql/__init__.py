"""%%sql_ai: from a question to checked, read-only SQL and a DataFrame.

Modules, bottom up:

- ``stages``: the fixed set of stages where SQL fails (a leaf the proxy reads too); the errors
  themselves (``SqlCheckError``, ``Refused``, ``SqlAIError``, ``QueryTimeout``) and the
  position they point at are in :mod:`rsql_magic.errors`.
- ``carets``: messages that point at a token (a caret line under it).
- ``dialects``: dialect names as sqlglot spells them (``sqlglot_dialect``).
- ``functions``: the allowlists of pure functions (each engine adds its own); ``policy``:
  allowed functions and the PostgreSQL role (``SqlPolicy``).
- ``parse``: sqlglot parsing, shared by the guard and the validator.
- ``strings``: refuses string literals a database may read two ways (backslash escapes).
- ``guard``: the read-only allowlist check on the parsed statement, and width bounds on calls
  that build a value in one step (``repeat``, padding, format widths, DuckDB's list ``range``).
- ``fetch``: fetching within a row, byte and time bound.
- ``engines``: one module per SQL engine (``sqlite``, ``duckdb``, ``postgres``; ``others`` by
  name only), each with its connection adapter, database-side read-only walls, functions,
  catalog queries and name rules, registered by name (``engine_for``); the SQLAlchemy and
  DataFrames adapters as thin wrappers over them.
- ``connections``: where callers find the adapters (``resolve`` any accepted connection).
- ``schema``: schema capture (``model``, ``catalog``, ``backends``, ``render`` as DDL, ``rank``
  by relevance, ``words`` and ``index``: word variants, the per-schema index and join graph,
  ``values``: the short text columns' values that steer the ranking where the policy allows).
- ``fences``: which fenced blocks of an answer are SQL (one grammar for the kernel and the
  proxy's placeholder restorer).
- ``engine_rules``: what the engines' own name rules share, and sqlglot's respelling for the
  target after a syntax error.
- ``validate``: extract, transpile, guard and qualify against the schema.
- ``execute``: the executor, and database errors with the data removed.
- ``loop``: the retry loop (``run_question``) and the escalation chain (``run_chain``).

The magic itself, ``%%sql_ai``, stands on the session above this package:
:mod:`rsql_magic.magics.sql_ai`.
"""
