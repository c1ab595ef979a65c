"""%%sql_ai's second wall on PostgreSQL: when the guard is bypassed, a READ ONLY transaction
and a role without superuser rights stop writes, sequences, file reads and signals, inside the
user's own open transaction too; attacks through the loop end refused and errors sent back to
the model carry no data; the magic's ``postgres_role`` setting and the values that steer the
schema are read as that role. Against a real PostgreSQL server (a database of each test's own).

The guard itself, and the same walls on SQLite and DuckDB: tests/unit/test_sql_security.py.
"""

from __future__ import annotations

import json
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rsql_magic.errors import SqlAIError, SuperuserWarning
from rsql_sql.connections import resolve
from rsql_sql.loop import run_question
from rsql_sql.policy import SqlPolicy
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.sql_fixtures import (
    GOOD,
    SECRET,
    U_KILL,
    U_READ,
    cell,
    check_errors_sent_back_carry_no_data,
    magic_shell,
    run,
)

# -- PostgreSQL: the second wall -----------------------------------------------------------


@pytest.fixture
def pg(pg_database: str) -> Iterator[tuple[str, str]]:
    """(URL, role): a database with table t and sequence s, and a role without superuser
    rights that may read t (created for this test, dropped afterwards)."""
    import psycopg

    role = "rsql_ro_" + secrets.token_hex(4)
    with psycopg.connect(pg_database, autocommit=True) as c:
        c.execute("CREATE TABLE t (id INT PRIMARY KEY, secret TEXT)")
        c.execute("INSERT INTO t VALUES (1, %s), (2, 'b')", (SECRET,))
        c.execute("CREATE SEQUENCE s")
        c.execute(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER")
        c.execute(f"GRANT SELECT ON t TO {role}")
    yield pg_database, role
    with psycopg.connect(pg_database, autocommit=True) as c:
        c.execute(f"DROP OWNED BY {role}")
        c.execute(f"DROP ROLE {role}")


def test_postgres_read_only_transaction_stops_writes_and_sequences(pg) -> None:
    import psycopg

    url, role = pg
    with psycopg.connect(url, autocommit=True) as conn:
        db = resolve(conn)
        with pytest.warns(SuperuserWarning, match="postgres_role"):
            for sql in ("DELETE FROM t", "SELECT nextval('s')", "SELECT setval('s', 99)"):
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    run(db, sql)
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2
        assert conn.execute("SELECT last_value, is_called FROM s").fetchone() == (1, False)
        with warnings.catch_warnings():  # the superuser warning comes once per connection
            warnings.simplefilter("error", SuperuserWarning)
            assert run(db, "SELECT count(*) AS n FROM t").frame["n"].tolist() == [2]


def test_postgres_role_stops_files_and_signals(pg, tmp_path: Path) -> None:
    import psycopg

    url, role = pg
    policy = SqlPolicy.make(postgres_role=role)
    other = psycopg.connect(url, autocommit=True)
    pid = other.info.backend_pid
    target = f"/tmp/rsql_copy_{secrets.token_hex(4)}.csv"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            db = resolve(conn)
            for sql, err in (
                (f"COPY (SELECT secret FROM t) TO '{target}'", "pg_write_server_files"),
                ("SELECT pg_read_file('/etc/passwd')", "permission denied"),
                (U_READ, "permission denied"),
                (f"SELECT pg_terminate_backend({pid})", "must be a superuser|permission denied"),
                ("SELECT pg_stat_reset()", "permission denied"),
            ):
                with pytest.raises(psycopg.Error, match=err):
                    run(db, sql, policy)
            # the role reads what it was granted; the session is back to its own role after
            res = run(db, "SELECT current_user AS u, count(*) AS n FROM t", policy)
            assert res.frame.to_dict("list") == {"u": [role], "n": [2]}
            assert conn.execute("SELECT current_user").fetchone()[0] == conn.info.user
        assert other.execute("SELECT 1").fetchone() == (1,)  # not terminated
        assert not Path(target).exists()
    finally:
        other.close()


def test_postgres_inside_the_users_open_transaction(pg) -> None:
    import psycopg

    url, role = pg
    policy = SqlPolicy.make(postgres_role=role)
    with psycopg.connect(url) as conn:  # not autocommit: the user's transaction stays open
        conn.execute("INSERT INTO t VALUES (3, 'pending')")
        db = resolve(conn)
        # the read-only wall on its own, in our savepoint (no role: the connection's own user
        # may write and advance the sequence, and is warned)
        with pytest.warns(SuperuserWarning, match="postgres_role"):
            for sql in ("DELETE FROM t", "SELECT nextval('s')"):
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    run(db, sql)
        # and with the role as well, which alone keeps the server's files out
        for sql in ("DELETE FROM t", "SELECT nextval('s')"):
            with pytest.raises(psycopg.Error):
                run(db, sql, policy)
        with pytest.raises(psycopg.Error, match="permission denied"):
            run(db, "SELECT pg_read_file('/etc/passwd')", policy)
        assert run(db, "SELECT count(*) AS n FROM t", policy).frame["n"].tolist() == [3]
        assert conn.execute("SELECT last_value, is_called FROM s").fetchone() == (1, False)
        # read-only, the role and the timeout ended with our savepoint
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert conn.execute("SHOW transaction_read_only").fetchone()[0] == "off"
        assert conn.execute("SELECT current_user").fetchone()[0] == conn.info.user
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "0"
        conn.commit()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 3


def test_postgres_sqlalchemy_engine_and_open_connection(pg) -> None:
    import psycopg  # the driver's own errors: queries run on its cursor
    import sqlalchemy as sa

    url, role = pg
    eng = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    policy = SqlPolicy.make(postgres_role=role)
    try:
        db = resolve(eng)
        with pytest.raises(psycopg.Error, match="permission denied"):
            run(db, "SELECT pg_read_file('/etc/passwd')", policy)
        with eng.connect() as c:  # a caller's transaction, as JupySQL keeps one open
            c.exec_driver_sql("INSERT INTO t VALUES (4, 'pending')")
            inner = resolve(c)
            with pytest.raises(psycopg.Error, match="read-only transaction"):
                run(inner, "DELETE FROM t", policy)
            assert run(inner, "SELECT count(*) AS n FROM t", policy).frame["n"].tolist() == [3]
            assert c.exec_driver_sql("SELECT current_user").scalar() == eng.url.username
            c.commit()
        with eng.connect() as c:
            assert c.exec_driver_sql("SELECT count(*) FROM t").scalar() == 3
    finally:
        eng.dispose()


# -- the loop: attacks end refused, and no data reaches the model --------------------------


def test_postgres_attack_through_the_loop_is_refused_and_nothing_leaks(
    fresh_provider: FakeProvider, complete, pg
) -> None:
    import psycopg

    url, _role = pg
    fresh_provider.script(f"```sql\n{U_READ}\n```", f"```sql\n{U_KILL}\n```", GOOD)
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(SqlAIError) as ei:
            run_question("show me the file", resolve(conn), complete)
    assert ei.value.stage == "refused"
    assert [a.stage for a in ei.value.attempts] == ["refused", "refused"]
    assert "hide a call of pg_read_file()" in ei.value.attempts[0].error
    # the model was asked again with the refusal, never with anything read: nothing ran
    asked = [json.dumps(r.body) for r in fresh_provider.received]
    assert len(asked) == 2 and "hide a call of pg_read_file()" in asked[1], asked[-1][-2000:]


# the duckdb case: tests/unit/test_sql_security.py
@pytest.mark.parametrize("kind", ["postgres"])
def test_database_errors_sent_back_carry_no_data(
    kind: str, request: pytest.FixtureRequest, fresh_provider: FakeProvider, complete
) -> None:
    # The model makes the database quote a value in its error: CAST(secret AS int).
    fresh_provider.script("```sql\nSELECT CAST(secret AS int) AS n FROM t\n```", GOOD)
    import psycopg

    url, _ = request.getfixturevalue("pg")
    conn = psycopg.connect(url, autocommit=True)
    check_errors_sent_back_carry_no_data(kind, conn, fresh_provider, complete)


# -- the magic: settings -------------------------------------------------------------------


@pytest.fixture
def ip(fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with magic_shell(fresh_provider, monkeypatch) as shell:
        yield shell


def test_magic_postgres_role_setting(fresh_provider: FakeProvider, ip, pg) -> None:
    url, role = pg
    ip.user_ns["conn"] = url.replace("postgresql://", "postgresql+psycopg://")
    fresh_provider.script("```sql\nSELECT current_user AS u FROM t LIMIT 1\n```")
    cell(ip, f"%config SqlAIMagics.postgres_role = '{role}'")
    cell(ip, "%%sql_ai conn\nwho am I")
    assert ip.user_ns["_"]["u"].tolist() == [role]


def test_column_values_that_steer_the_schema_are_read_as_the_role(pg) -> None:
    """The values of short text columns help choose the tables %%sql_ai shows: they are read
    inside the same walls as generated SQL, so a table the role may not read gives none."""
    import psycopg

    from rsql_magic.privacy import ContextPolicy
    from rsql_sql.schema import capture_schema, capture_values

    url, role = pg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE pets (id INT, kind TEXT)")  # no GRANT to the role
        conn.execute("INSERT INTO pets VALUES (1, 'dog'), (2, 'cat')")
        # a view runs its definition when read (it could call anything): its values are not read
        conn.execute("CREATE VIEW t_view AS SELECT secret FROM t")
        conn.execute(f"GRANT SELECT ON t_view TO {role}")
        db = resolve(conn)
        schema = capture_schema(db)
        as_role = capture_values(
            db, schema, policy=ContextPolicy(), sql_policy=SqlPolicy.make(postgres_role=role)
        )
        assert ("public", "pets") not in as_role and as_role[("public", "t")]["secret"]
        assert ("public", "t_view") not in as_role
        with pytest.warns(SuperuserWarning):
            as_owner = capture_values(db, schema, policy=ContextPolicy(), sql_policy=SqlPolicy())
        assert as_owner[("public", "pets")]["kind"] == ("dog", "cat")


def test_the_questions_literals_are_looked_up_as_the_role(pg) -> None:
    """#39: a value the question names ("Lyon") is looked up in text columns inside the same
    walls as generated SQL: a table the role may not read points at no column and shows no
    value; read as the owner, the same lookup finds the column that holds it."""
    import psycopg

    from rsql_magic.privacy import ContextPolicy
    from rsql_sql.schema import capture_schema, capture_values, describe_schema

    url, role = pg
    question = "How many customers live in Lyon?"
    with psycopg.connect(url, autocommit=True) as conn:
        # 300 cities: not categorical, so only the question-time lookup can find 'Lyon'
        conn.execute("CREATE TABLE customers (id INT PRIMARY KEY, home_town TEXT)")  # no GRANT
        conn.execute(
            "INSERT INTO customers SELECT g, 'town ' || g FROM generate_series(1, 300) AS g"
        )
        conn.execute("INSERT INTO customers VALUES (301, 'Lyon')")
        db = resolve(conn)
        schema = capture_schema(db)
        walls = SqlPolicy.make(postgres_role=role)
        capture_values(db, schema, policy=ContextPolicy(), sql_policy=walls, question=question)
        assert schema.probes == {}
        text = describe_schema(schema, question, None, 4000, "postgres", policy=ContextPolicy())
        assert "Lyon" not in text
        with pytest.warns(SuperuserWarning):
            capture_values(
                db, schema, policy=ContextPolicy(), sql_policy=SqlPolicy(), question=question
            )
        assert schema.probes["lyon"] == (("public", "customers", "home_town", "Lyon"),)
        text = describe_schema(schema, question, None, 4000, "postgres", policy=ContextPolicy())
        assert "home_town TEXT /* e.g. 'Lyon' */" in text


def test_values_read_for_an_ask_question_are_read_as_the_role_too(
    pg, jupyter_proxy, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """#35: %%ask's schema context reads values to choose its tables as %%sql_ai does, so with
    a postgres_role set they are read as that role: a table the role may not read steers
    nothing, and its columns do not reach the prompt."""
    import psycopg

    from tests.helpers.kernels import kernel_env, make_notebook, run_notebook

    url, role = pg
    with psycopg.connect(url, autocommit=True) as c:
        # more tables than the context can show, none about pets by name, all the role's to read
        for i in range(60):
            c.execute(f"CREATE TABLE log_{i:03d} (id INT PRIMARY KEY, note TEXT, amount REAL)")
            c.execute(f"GRANT SELECT ON log_{i:03d} TO {role}")
        c.execute("CREATE TABLE pets (id INT PRIMARY KEY, kind TEXT, weight REAL)")  # no GRANT
        c.execute("INSERT INTO pets VALUES (1, 'dog', 20), (2, 'cat', 4), (3, 'dog', 30)")
    fresh_provider.script("first", "second")
    nb = make_notebook(
        [
            "%load_ext rsql_magic\n%config RSQLMagic.context_tokens = 400",
            f"import psycopg\nconn = psycopg.connect({url!r}, autocommit=True)",
            f"%config SqlAIMagics.postgres_role = {role!r}",
            "%%ask --sql conn --no-cache\nHow many dogs are there?",
            "%config SqlAIMagics.postgres_role = ''",
            "%%ask --sql conn --no-cache\nHow many dogs are there?",
        ]
    )
    env = kernel_env(jupyter_proxy.proxy_url, jupyter_proxy.token, PLOOMBER_STATS_ENABLED="false")
    run_notebook(nb, env, tmp_path)
    as_role, as_owner = (json.dumps(r.body["messages"]) for r in fresh_provider.received[-2:])
    assert "CREATE TABLE pets" not in as_role  # the role reads no value of pets
    assert "CREATE TABLE pets" in as_owner  # the control: read as the owner, 'dog' finds pets
    assert "'dog'" not in as_owner  # values steer; they are never sent
