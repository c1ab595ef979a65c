"""%%sql_ai: from a question to checked, read-only SQL and a DataFrame.

Modules: ``connections`` (one adapter over sqlite3 / DuckDB / SQLAlchemy / JupySQL / frames),
``extract`` (SQL out of a model answer), ``validate`` (parse, transpile, qualify against the
schema), ``guard`` (read-only check on the parsed statement), ``loop`` (the retry loop),
``magics`` (the IPython magic). Schema capture lives in ``rsql_magic.context.sql_schema``.
"""
