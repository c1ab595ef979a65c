"""The wiring: an Engine built from the configuration (``config.RSQLProxy``), with the state
backend, key pool and usage store it names, and the pseudonym key file; and, for
``--check-config``, whether the servers it names answer (``reach_problems``).

Configuration (what an admin may set, and its checks) is ``config``; this module puts the
pieces together, so ``config`` needs no backend and a backend never reads traitlets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
from typing import cast

from .config.problems import POSTGRES_SCHEMES, database_url_problem, state_url_problem
from .config.proxy import RSQLProxy
from .config.secrets import mask_url
from .engine import ConfigError, Engine
from .engine.accounting.course_rows import CourseLogStore, CourseRowLog
from .engine.admission.shared_state import StateBackend
from .engine.courses.log import ANSWER_COLUMN, COLUMNS, PROMPT_COLUMN, CourseLog
from .engine.monitoring.alerts import Ledger
from .engine.upstreams.transport import Transports
from .engine.upstreams.transport.local import LocalTransport
from .state import MemoryState
from .store import open_store

# where the engine of a server that passes requests on says what it would answer with: nowhere
_UNHEARD = logging.Logger("rsql.passed_on", logging.ERROR)


def build_engine(
    proxy: RSQLProxy,
    *,
    default_database: str,
    log: logging.Logger | None = None,
    passes_on: bool = False,
) -> Engine:
    """The engine both hosts run, with the state backend and usage store the config names.

    `passes_on`: the host passes requests on to another proxy (a user's server on a hub, whose
    ``RSQL_PROXY_URL`` is the hub's service) and answers no model request itself (the handlers
    refuse them): its falling back to the local model when no upstreams are configured is not
    announced (the host says once where requests go instead), and a local model is not started
    with the engine."""
    quiet = passes_on and not proxy.upstreams
    settings = proxy.engine_settings(log=_UNHEARD if quiet else log)
    key_file = pseudonym_key_file(proxy, default_database)
    if settings.forward_user == "hash" and not settings.user_id_secret and key_file:
        settings.user_id_secret = user_id_secret(key_file)
    spool_dir, spool_max = usage_spool(proxy, default_database)
    settings = dataclasses.replace(
        settings, usage_spool_dir=spool_dir, usage_spool_max_bytes=spool_max
    )
    state: StateBackend = MemoryState()
    ledger: Ledger | None = None
    # the URLs' schemes and the spool's size were checked by engine_settings, with the rest
    if proxy.state_url:
        from .state.admission.redis import RedisState
        from .state.monitoring.alert_ledger import RedisAlertLedger

        redis = RedisState(proxy.state_url, prefix=proxy.state_prefix, fail_open=proxy.fail_open)
        state = redis  # its key pool is shared too (``RedisState.key_pool``)
        # one alert per condition for all replicas, and one list of recent alerts
        ledger = RedisAlertLedger(redis.redis, proxy.state_prefix)
    url = proxy.database_url or default_database
    store = open_store(url)
    # a host that passes requests on answers none itself: a local model would only cost memory
    local = LocalTransport(start_with_engine=not passes_on)
    engine = Engine(
        settings, state=state, store=store, alert_ledger=ledger, transports=Transports(local=local)
    )
    # both stores keep the course log beside the usage log (store/course_queries.py)
    courses = course_log(proxy, cast(CourseLogStore, store), spool_dir)
    attach_course_log(engine, courses)
    return engine


def pseudonym_key_file(proxy: RSQLProxy, default_database: str) -> str:
    """Where the pseudonym key is kept when ``user_id_secret`` is empty: ``user_id_secret_file``,
    else user-id.secret beside the default SQLite usage log ("": none, a key in memory)."""
    if proxy.user_id_secret_file or not default_database.startswith("sqlite:///"):
        return proxy.user_id_secret_file
    return os.path.join(os.path.dirname(default_database[len("sqlite:///") :]), "user-id.secret")


# --check-config's attempt at each server replicas share: long enough for a server across a
# data centre, short enough that a check of a wrong address ends promptly
REACH_SECONDS = 3.0


def reach_problems(proxy: RSQLProxy, timeout: float = REACH_SECONDS) -> list[str]:
    """A line for the Redis of ``state_url`` and the PostgreSQL of ``database_url`` when they
    do not answer (``--check-config``, issue 77): one connection each, both at once, reading
    only. A URL whose form or package is wrong is said by the configuration's checks instead.
    Start-up itself does not wait for them: a replica serves through an outage."""

    async def ask() -> list[str]:
        looks = []
        if proxy.state_url and not state_url_problem(proxy.state_url):
            looks.append(_state_problem(proxy, timeout))
        url = proxy.database_url
        if url.startswith(POSTGRES_SCHEMES) and not database_url_problem(url):
            looks.append(_database_problems(proxy, timeout))
        return [line for lines in await asyncio.gather(*looks) for line in lines]

    return asyncio.run(ask())


async def _state_problem(proxy: RSQLProxy, timeout: float) -> list[str]:
    try:
        from .state.admission.redis import ping_problem
    except ImportError:  # the redis extra is missing: said by the configuration's checks
        return []
    why = await ping_problem(proxy.state_url, timeout)
    if not why:
        return []
    then = (
        "admit requests without per-user limits (fail_open)"
        if proxy.fail_open
        else "answer every request with a 503"
    )
    return [
        f"RSQLProxy.state_url {mask_url(proxy.state_url)!r} does not answer ({why}): the "
        f"service would start, and {then} until it does; check its host, port, password and "
        "database number"
    ]


async def _database_problems(proxy: RSQLProxy, timeout: float) -> list[str]:
    try:
        from .store.postgres import connect_problem
    except ImportError:  # the postgres extra is missing: said by the configuration's checks
        return []
    silent, no_table = await connect_problem(proxy.database_url, timeout)
    where = f"RSQLProxy.database_url {mask_url(proxy.database_url)!r}"
    if silent:
        return [
            f"{where} does not answer ({silent}): the service would start, and keep the usage "
            "log's rows in its spool until it does; check its host, port, user, password and "
            "database"
        ]
    return [f"{where}: {no_table}"] if no_table else []


def course_log(proxy: RSQLProxy, store: CourseLogStore, usage_spool_dir: str) -> CourseLog:
    """The course log the configuration names (checked by engine_settings), its rows journaled
    beside the usage log's (`usage_spool_dir`/course-log) and written to the same database.
    With no course configured it writes nothing, but still drops the rows of courses no longer
    logged once past the usage log's retention."""
    specs = proxy.course_log_specs()
    writer = CourseRowLog(
        store,
        retention_days={c: s.retention_days for c, s in specs.items()},
        others_days=proxy.retention_days,
        width=len(COLUMNS),
        # a row waiting in memory: its prompt and answer, and about 300 bytes more
        size_of=lambda r: 300 + len(r[PROMPT_COLUMN] or "") + len(r[ANSWER_COLUMN] or ""),
        spool_dir=os.path.join(usage_spool_dir, "course-log") if specs else None,
        spool_max_bytes=proxy.usage_spool_max_bytes,
    )
    return CourseLog(specs, writer)


def attach_course_log(engine: Engine, log: CourseLog) -> None:
    """Hand the engine its course log: its answers transcribe logged students' requests
    (``Replies.course_log``) and every outcome goes to the log (``on_outcome``)."""
    engine.replies.course_log = log
    engine.on_outcome.append(log.record)


def usage_spool(proxy: RSQLProxy, default_database: str) -> tuple[str, int]:
    """Where the usage log journals its rows, and how much: the configured folder, else one
    beside the default SQLite file (even when the rows go to PostgreSQL: the spool is local on
    purpose)."""
    spool = proxy.usage_spool_dir
    if not spool:
        folder = (
            os.path.dirname(default_database[len("sqlite:///") :])
            if default_database.startswith("sqlite:///")
            else ""
        )
        spool = os.path.join(folder, "usage-spool") if folder else "rsql_usage_spool"
    return spool, proxy.usage_spool_max_bytes


def user_id_secret(path: str) -> bytes:
    """The pseudonym key kept in `path`, created (random, owner-only) on first use: pseudonyms
    must survive restarts, or a provider would see every user anew after each one. A file
    another user could have written (a symlink, theirs, writable by others) stops start-up: a key
    they know would let them reverse every pseudonym."""
    key = _read_key_file(path)
    if key is None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        key = secrets.token_hex(32).encode()
        flags = (
            os.O_WRONLY
            | os.O_CREAT
            | os.O_EXCL
            | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_CLOEXEC", 0)
        )
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            key = _read_key_file(path)
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(key)
            return key
    import time

    # a process that has just made the file may not have written it yet
    for _ in range(40):
        if key:
            return key
        time.sleep(0.05)
        key = _read_key_file(path)
    raise ConfigError(
        f"the pseudonym key file {path} is empty: delete it (a new key is made; pseudonyms change)"
    )


def _read_key_file(path: str) -> bytes | None:
    """The key in `path` (None: no such file), once the file is known to be ours alone."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        # O_NONBLOCK: a FIFO planted under the name must not hang start-up
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            raise ConfigError(
                f"the pseudonym key file {path} is a symbolic link, which another user could point at a "
                "key they know: replace it with the file itself, or delete it (a new key is made; "
                "pseudonyms change)"
            ) from None
        raise ConfigError(
            f"cannot read the pseudonym key file {path}: {exc.strerror or exc}"
        ) from None
    with os.fdopen(fd, "rb") as f:
        if os.name == "posix":
            _check_key_file(path, fd)
        return f.read(4096).strip()


def _check_key_file(path: str, fd: int) -> None:
    import stat

    info, me = os.fstat(fd), os.geteuid()
    mode = info.st_mode & 0o7777
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"the pseudonym key file {path} is not a regular file: delete it (a new key is made)"
        )
    if info.st_uid != me:
        raise ConfigError(
            f"the pseudonym key file {path} is owned by uid {info.st_uid}, not by the user the proxy runs "
            f"as (uid {me}); its owner could have planted a key they know: delete it (a new key is made; "
            f"pseudonyms change), or if the file is yours, chown {me} {path}"
        )
    if mode & 0o022:
        raise ConfigError(
            f"the pseudonym key file {path} is writable by other users (mode {mode:04o}), who could "
            f"have planted a key they know: check it, then chmod 600 {path}, or delete it (a new key "
            "is made; pseudonyms change)"
        )
    if mode & 0o044:
        os.fchmod(fd, mode & 0o700)
        logging.getLogger("rsql").warning(
            "the pseudonym key file %s was readable by other users (mode %04o), now %04o: whoever read "
            "it can reverse the pseudonyms; delete it for a new key (pseudonyms then change)",
            path,
            mode,
            mode & 0o700,
        )
