"""Usage and accounting: what each request cost and where it is written down.

``pricing`` prices an answer per (upstream, model); ``usage`` writes each request's row to the
usage store (the interface ``jupyter_server_ext.store`` implements: SQLite, PostgreSQL), through
``spool``, an on-disk journal that keeps rows the database cannot take yet.
"""
