"""`rsql-proxy --check-config` on what replicas share (issue 77): a Redis (`state_url`) and a
PostgreSQL usage log (`database_url`) that do not answer are said (before: "starts as
written"), by one connection each that writes nothing; a PostgreSQL role that could not make
the usage log's table is said; and replicas sharing Redis without a shared pseudonym key are
warned of, by the check and by both hosts' start-up. Real Redis and PostgreSQL (tests/conftest.py),
each test with a key prefix or database of its own."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import child_env, free_port, upstreams_for
from tests.helpers.fake_provider import FakeProvider

pytestmark = pytest.mark.slow

PREFIX = "rsql-proxy: bad configuration: "
UPSTREAM = (
    'c.RSQLProxy.upstreams = [{"name": "g", "base_url": "http://127.0.0.1:9/v1", '
    '"api_key": "sk-replica-check-key", "models": ["m-1"]}]\n'
    'c.RSQLProxy.default_model = "m-1"\n'
)
# the pseudonym key replicas share, when a test is not about it
SHARED_KEY = 'c.RSQLProxy.user_id_secret = "a-shared-pseudonym-key-of-the-tests"\n'
WARNING = "rsql-proxy: RSQLProxy.state_url is set (replicas sharing Redis) but "


def check(tmp_path: Path, text: str) -> tuple[int, str, list[str]]:
    """`rsql-proxy --check-config` on `text`: exit code, stdout, stderr's lines."""
    cfg = tmp_path / "rsql_config.py"
    cfg.write_text(UPSTREAM + text)
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_server_ext", "--check-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        cwd=tmp_path,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, [ln for ln in done.stderr.splitlines() if ln.strip()]


def test_a_redis_and_a_postgresql_that_do_not_answer_are_said(tmp_path: Path) -> None:
    """Both on closed loopback ports, with passwords in their URLs: two lines, the passwords
    masked; what the service would do about each is said."""
    redis_port, pg_port = free_port(), free_port()
    code, out, said = check(
        tmp_path,
        SHARED_KEY
        + f'c.RSQLProxy.state_url = "redis://:redis-pass-77@127.0.0.1:{redis_port}/0"\n'
        + f'c.RSQLProxy.database_url = "postgresql://rsql:pg-pass-77@127.0.0.1:{pg_port}/usage"\n',
    )
    assert code == 2 and out == "", (code, out, said)
    assert len(said) == 2, said
    redis, pg = (line.removeprefix(PREFIX) for line in said)
    assert re.fullmatch(
        rf"RSQLProxy\.state_url 'redis://:\*\*\*@127\.0\.0\.1:{redis_port}/0' does not answer "
        r"\(.*\): the service would start, and answer every request with a 503 until it does; "
        r"check its host, port, password and database number",
        redis,
    ), redis
    assert re.fullmatch(
        rf"RSQLProxy\.database_url 'postgresql://rsql:\*\*\*@127\.0\.0\.1:{pg_port}/usage' does "
        r"not answer \(.*\): the service would start, and keep the usage log's rows in its "
        r"spool until it does; check its host, port, user, password and database",
        pg,
    ), pg
    assert "pass-77" not in " ".join(said)


@pytest.fixture
def pg_role(pg_server: str, pg_database: str) -> Iterator[str]:
    """A login role of this test's own that may connect to `pg_database` but not make tables
    there; dropped afterwards."""
    import psycopg

    role = f"rsql_t77_{secrets.token_hex(3)}"
    database = pg_database.rsplit("/", 1)[1]
    with psycopg.connect(pg_server + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
    with psycopg.connect(pg_database, autocommit=True) as conn:
        # PostgreSQL 15 and later keep CREATE on public from everyone; older ones need this
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        yield role
    finally:
        with psycopg.connect(pg_server + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def tables(url: str) -> list[str]:
    """The tables of the database at `url`, every schema but the catalogs'."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return [r[0] for r in rows]


def test_servers_that_answer_pass_and_are_left_as_they_were(
    tmp_path: Path, redis_url: str, redis_prefix: str, pg_server: str, pg_database: str
) -> None:
    """The real Redis and PostgreSQL: the check passes, no key is written under the prefix and
    no table is made; the same servers with a database that is not there are said."""
    import redis

    code, out, said = check(
        tmp_path,
        SHARED_KEY
        + f"c.RSQLProxy.state_url = {redis_url!r}\nc.RSQLProxy.state_prefix = {redis_prefix!r}\n"
        + f"c.RSQLProxy.database_url = {pg_database!r}\n",
    )
    assert code == 0 and "starts as written" in out and said == [], (code, out, said)
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(match=redis_prefix + "*")) == []
    client.close()
    assert tables(pg_database) == []

    gone = f"{pg_server}/rsql_t77_no_such_database"
    code, out, said = check(
        tmp_path,
        SHARED_KEY + f"c.RSQLProxy.state_url = {redis_server_db(redis_url, 16)!r}\n"
        f"c.RSQLProxy.database_url = {gone!r}\n",
    )
    assert code == 2, (code, out, said)
    assert [line.split(" does not answer (")[0] for line in said] == [
        f"{PREFIX}RSQLProxy.state_url {redis_server_db(redis_url, 16)!r}",
        f"{PREFIX}RSQLProxy.database_url {gone!r}",
    ], said
    assert "DB index is out of range" in said[0], said
    assert 'database "rsql_t77_no_such_database" does not exist' in said[1], said


def redis_server_db(redis_url: str, db: int) -> str:
    """The same Redis server, database `db` (Redis has 16 by default: 0 to 15)."""
    return f"{redis_url.rsplit('/', 1)[0]}/{db}"


def test_a_role_that_may_not_make_the_usage_table_is_said(
    tmp_path: Path, pg_database: str, pg_role: str
) -> None:
    """Start-up makes rsql_usage when it is missing: a role without CREATE on its schema would
    log nothing to the database (the rows stay spooled). Nothing is made by the check."""
    url = pg_database.replace("://postgres@", f"://{pg_role}@")
    code, out, said = check(tmp_path, f"c.RSQLProxy.database_url = {url!r}\n")
    assert (code, said) == (
        2,
        [
            f"{PREFIX}RSQLProxy.database_url {url!r}: the usage log's table rsql_usage is not "
            f"there and role {pg_role!r} may not make it in schema 'public': GRANT CREATE ON "
            f"SCHEMA public TO {pg_role}, or make the table as its owner"
        ],
    ), out
    assert tables(pg_database) == []


def test_replicas_without_a_shared_pseudonym_key_are_warned_of(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """A warning, not a refusal: exit 0, one line naming the key file each replica would make
    and what to set; none once user_id_secret or user_id_secret_file is set, or without Redis."""
    state = f"c.RSQLProxy.state_url = {redis_url!r}\nc.RSQLProxy.state_prefix = {redis_prefix!r}\n"
    code, out, said = check(tmp_path, state)
    assert code == 0 and "starts as written" in out, (code, out, said)
    (line,) = [s for s in said if WARNING in s]
    assert f"made in {tmp_path / 'user-id.secret'};" in line, line
    assert line.endswith(
        "Set the same c.RSQLProxy.user_id_secret on every replica, or point "
        "c.RSQLProxy.user_id_secret_file at one file they all read"
    ), line
    for shared in (SHARED_KEY, f'c.RSQLProxy.user_id_secret_file = "{tmp_path}/shared.key"\n', ""):
        code, out, said = check(tmp_path, (state if shared else "") + shared)
        assert code == 0 and not any(WARNING in s for s in said), (shared, said)


def test_both_hosts_warn_of_an_unshared_pseudonym_key_at_start_up(
    service_factory: Any,
    jupyter_server_factory: Any,
    fresh_provider: FakeProvider,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """rsql-proxy says it once before serving; a Jupyter server sharing Redis says it too."""
    config = {
        "upstreams": upstreams_for(fresh_provider),
        "default_model": "fake-small",
        "state_url": redis_url,
        "state_prefix": redis_prefix,
    }
    svc = service_factory(config, static_users={"a-token-long-enough-for-tests": {"name": "a"}})
    assert svc.log().count("RSQLProxy.state_url is set (replicas sharing Redis)") == 1, svc.log()
    server = jupyter_server_factory(config)
    assert "rsql proxy: RSQLProxy.state_url is set (replicas sharing Redis)" in server.log()
    shared = service_factory({**config, "user_id_secret": "one-key-for-every-replica"})
    assert "RSQLProxy.state_url is set" not in shared.log(), shared.log()
