"""%%sql_ai: from a question to checked, read-only SQL and a DataFrame.

Modules: ``connections`` (one adapter over sqlite3 / DuckDB / SQLAlchemy / JupySQL / frames,
with the database-side read-only walls), ``validate`` (extract, parse, transpile, qualify
against the schema), ``guard`` (the read-only allowlist check on the parsed statement),
``functions`` (the per-dialect allowlists), ``policy`` (allowed functions and PostgreSQL role),
``execute`` (the executor, and database errors with the data removed), ``loop`` (the retry
loop), ``magics`` (the IPython magic). Schema capture lives in ``rsql_magic.context.sql_schema``.
"""
