"""%%sql_ai: from a question to checked, read-only SQL and a DataFrame.

Modules, bottom up:

- ``errors``: the check errors (``SqlCheckError``, ``Refused``), their fixed set of stages and
  the position they point at (line, column, start, end), and caret messages.
- ``dialects``: dialect names as sqlglot spells them (``sqlglot_dialect``).
- ``functions``: the per-dialect allowlists of pure functions; ``policy``: allowed functions
  and the PostgreSQL role (``SqlPolicy``).
- ``parse``: sqlglot parsing, shared by the guard and the validator.
- ``guard``: the read-only allowlist check on the parsed statement.
- ``walls``: the database-side read-only walls (SQLite authorizer, DuckDB's own parser,
  PostgreSQL read-only transaction and role).
- ``connections``: one adapter over sqlite3 / DuckDB / SQLAlchemy / JupySQL / psycopg / frames,
  with time bounds, putting the walls in place around generated SQL.
- ``schema``: schema capture (``model``, ``backends``, ``render`` as DDL, ``rank`` by relevance).
- ``validate``: extract, transpile, guard and qualify against the schema.
- ``execute``: the executor, and database errors with the data removed.
- ``loop``: the retry loop (``run_question``, ``SqlAIError``).
- ``magics``: the IPython magic.
"""
