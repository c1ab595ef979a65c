"""One MCP tool call at the proxy, from the caller to the usage row: plain asyncio.

A call is checked in this order, each refusal a tool error the agent can read:

1. the engine's admission of the call (``Engine.admit`` with the calls' limits): the policy
   window in force (an ``off`` window, or one that turns agent mode off, ``"agent": false``; a
   tutor window does unless it allows them) and the admin's agent switch refuse every tool
   call, as they refuse %%ask --agent; then the caller's tool-call limits (``mcp_user_limits``,
   ``mcp_user_concurrency``), in the state backend, so every replica counts the same calls;
   ``list_connections`` and a call naming an unknown connection too, since each call is a
   usage row;
2. the connection: one the admin configured and opened to one of the caller's groups (an
   unknown one and one closed to the caller get the same answer, so names do not leak);
3. a worker thread of this process's pool (``mcp_workers``): the databases' clients block. A
   user holds at most ``mcp_user_concurrency`` of them and never all (one less than the pool,
   when it has more than one), counted until the thread is done, not until the caller stops
   waiting (a client that hangs up does not free a thread that still runs its statement).

The tool itself is :func:`rsql_sql.mcp.connections.call_tool`, as ``rsql-mcp`` runs it:
%%sql_ai's guard, database rules and read-only walls, the context policy (the admin's
``context_policy`` and the connection's ``redact_columns``), the result bound; then the
proxy's ``redact_patterns`` mask what still looks like personal data in the text that goes back
(a net, not a wall: SQL can reshape a value past a pattern; columns are withheld by name). Each call, refused
or not, is one usage row (client ``mcp``, model ``mcp:<tool>``, upstream ``mcp:<connection>``,
``result_rows``) and one log line; neither holds the SQL, a value or a URL.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from rsql_common.context_policy import ContextPolicy
from rsql_common.terminal import shown
from rsql_sql.errors import BadConnection
from rsql_sql.mcp.connections import (
    TOOLS,
    Connection,
    ToolAnswer,
    call_tool,
    open_connection,
)
from rsql_sql.policy import SqlPolicy
from rsql_sql.warehouse import ToolBounds

from ..config.mcp import ConnectionSpec, MCPSettings
from ..engine import Caller, Engine, Outcome
from ..engine.admission.limiter import Admitted, CallLimits
from ..engine.errors import EngineError, RateLimited, ToolRefused
from ..engine.privacy.redact import Redactor

log = logging.getLogger("rsql.mcp")

# a call waits this long for one of the process's worker threads before it is refused
WAIT_FOR_WORKER_S = 15.0
# a lease outlives any call (the longest timeout, the schema capture), then expires on its own
LEASE_SECONDS = 600.0


@dataclass(frozen=True)
class CallResult:
    text: str
    ok: bool


class ToolCalls:
    """The warehouse tools of the connections an admin configured, for authenticated users."""

    def __init__(self, settings: MCPSettings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.specs = {c.name: c for c in settings.connections}
        self._local = threading.local()  # each worker thread's connections
        self._all: list[Connection] = []  # every connection opened, to close at the end
        self._all_lock = threading.Lock()
        self._workers = ThreadPoolExecutor(settings.workers, thread_name_prefix="rsql-mcp")
        self._slots = asyncio.Semaphore(settings.workers)
        # each user's calls waiting for or running on a worker thread here; at most pool_share
        self._in_pool: dict[str, int] = {}
        self.pool_share = max(1, min(settings.user_concurrency, settings.workers - 1))
        self.limits = CallLimits(
            "mcp", "MCP tool calls", settings.user_limits, settings.user_concurrency, LEASE_SECONDS
        )

    # -- what a caller sees ------------------------------------------------------------------

    def visible(self, caller: Caller) -> list[ConnectionSpec]:
        return [c for c in self.specs.values() if c.open_to(caller.groups)]

    async def list_connections(self, caller: Caller) -> CallResult:
        t0, started = time.perf_counter(), time.time()
        try:
            await self._release(await self._admit(caller))  # counted in the windows like any call
        except ToolRefused as r:
            self._record(caller, "list_connections", "-", r.outcome, r.status, None, t0, started)
            return CallResult(r.text, False)
        mine = self.visible(caller)
        lines = [
            f"{c.name}: {c.kind} (read-only)"
            + (f" - {shown(c.description)}" if c.description else "")
            for c in mine
        ]
        self._record(caller, "list_connections", "-", "ok", 200, len(mine), t0, started)
        if not lines:
            return CallResult("No database is open to you here; ask your admin.", True)
        return CallResult("\n".join(lines), True)

    # -- one call ----------------------------------------------------------------------------

    async def call(self, caller: Caller, tool: str, args: Mapping[str, Any]) -> CallResult:
        """Run `tool` for `caller`; never raises for what the caller sent."""
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}")
        t0, started = time.perf_counter(), time.time()
        name = str(args.get("connection", ""))
        shown_name = shown(name)[:60]
        try:
            held = await self._admit(caller)  # first: a window that is off says so
            try:
                spec = self._find(caller, name)
                answer = await self._run(caller, spec, tool, args)
            finally:
                await self._release(held)
        except ToolRefused as r:
            self._record(caller, tool, shown_name, r.outcome, r.status, None, t0, started)
            return CallResult(r.text, False)
        patterns = self.engine.settings.redact_patterns
        text = Redactor(patterns).text(answer.text) if patterns else answer.text
        status = 200 if answer.ok else (400 if answer.outcome == "refused" else 500)
        outcome = answer.outcome.split(" ", 1)[0]  # "failed (TimeoutError)" -> "failed"
        self._record(caller, tool, spec.name, outcome, status, answer.rows, t0, started)
        return CallResult(text, answer.ok)

    def _find(self, caller: Caller, name: str) -> ConnectionSpec:
        spec = self.specs.get(name)
        if spec is None or not spec.open_to(caller.groups):
            known = ", ".join(c.name for c in self.visible(caller)) or "none"
            raise ToolRefused(
                f"unknown connection {shown(name)[:60]!r}: the connections open to you are {known} "
                "(list_connections)",
                "unknown_connection",
                404,
            )
        return spec

    async def _admit(self, caller: Caller) -> Admitted:
        """The engine's admission of one tool call: the windows and switches that turn agent
        mode off (a 403), then the MCP windows and concurrency (a 429), as a ToolRefused."""
        try:
            return await self.engine.admit(caller, self.limits)
        except RateLimited as r:
            text = f"{r.limit} reached for {caller.user!r}; retry in {r.retry_after} s"
            raise ToolRefused(text, "rate_limited", 429) from None
        except EngineError as e:  # a policy window, or agent mode off
            raise ToolRefused(
                str(e), "agent_off" if e.code == "agent_off" else "window", 403
            ) from None

    async def _release(self, held: Admitted) -> None:
        try:
            await held.settle(0.0)
        except Exception as exc:  # the lease expires on its own (LEASE_SECONDS)
            log.warning("mcp: releasing a tool-call lease failed: %s", type(exc).__name__)

    def _connection(self, spec: ConnectionSpec) -> Connection:
        """This worker thread's own connection to `spec` (opened on its first call here).

        One per thread, not one per process: SQLite and DuckDB run one statement at a time on a
        connection, so a shared one would let one user's slow query hold up everyone's calls on
        that database; separate read-only connections read side by side."""
        mine: dict[str, Connection] = self._local.__dict__.setdefault("open", {})
        found = mine.get(spec.name)
        if found is None:
            try:
                found = mine[spec.name] = open_connection(spec.name, spec.url)
            except BadConnection as exc:
                # the message names no password (open_connection shows none); the admin's log
                # gets it, the user a plain "unavailable"
                log.warning("mcp: cannot open the connection %r: %s", spec.name, exc)
                raise ToolRefused(
                    f"the connection {spec.name!r} is unavailable now; try again later",
                    "unavailable",
                    503,
                ) from None
            with self._all_lock:
                self._all.append(found)
        return found

    def _job(self, spec: ConnectionSpec, tool: str, args: dict[str, str]) -> ToolAnswer:
        return call_tool(self._connection(spec), tool, args, self.bounds(spec))

    def bounds(self, spec: ConnectionSpec) -> ToolBounds:
        """The connection's bounds, and the admin's context policy with its own redactions."""
        pol = self.engine.settings.context_policy
        policy = ContextPolicy(
            sample_rows=pol.get("sample_rows", True) is True,
            value_stats=pol.get("value_stats", True) is True,
            redact_columns=(*pol.get("redact_columns", ()), *spec.redact_columns),
            source="the proxy's context_policy",
        )
        return ToolBounds(
            max_rows=spec.max_rows,
            timeout_s=spec.timeout_seconds,
            sql_policy=SqlPolicy.make(spec.allow_functions, spec.role),
            policy=policy,
        )

    def _take_share(self, caller: Caller) -> None:
        """Count one more of `caller`'s calls in this process's pool, or refuse it: one user's
        calls never hold every worker thread."""
        held = self._in_pool.get(caller.user, 0)
        if held >= self.pool_share:
            n, workers = self.pool_share, self.settings.workers
            raise ToolRefused(
                f"MCP tool calls at once in one proxy process {n} (of its {workers} workers, "
                f"mcp_workers) reached for {caller.user!r}; retry when one of your calls is done",
                "rate_limited",
                429,
            )
        self._in_pool[caller.user] = held + 1

    def _give_share(self, user: str) -> None:
        left = self._in_pool.get(user, 1) - 1
        if left > 0:
            self._in_pool[user] = left
        else:
            self._in_pool.pop(user, None)

    async def _run(
        self, caller: Caller, spec: ConnectionSpec, tool: str, args: Mapping[str, Any]
    ) -> ToolAnswer:
        self._take_share(caller)
        try:
            await asyncio.wait_for(self._slots.acquire(), WAIT_FOR_WORKER_S)
        except asyncio.TimeoutError:
            self._give_share(caller.user)
            raise ToolRefused(
                "every tool-call worker of the proxy is busy; retry in a few seconds", "busy", 503
            ) from None
        except BaseException:  # cancelled while waiting: no thread was taken
            self._give_share(caller.user)
            raise
        loop = asyncio.get_running_loop()

        def done() -> None:  # on the loop, once the thread is done (or the job never started)
            self._slots.release()
            self._give_share(caller.user)

        def on_done(_: Future[ToolAnswer]) -> None:
            try:
                loop.call_soon_threadsafe(done)
            except RuntimeError:  # the loop is closed: the process is stopping
                pass

        strings = {k: v if isinstance(v, str) else str(v) for k, v in args.items()}
        try:
            job = self._workers.submit(self._job, spec, tool, strings)
        except RuntimeError:  # the pool was shut down: the proxy is stopping
            done()
            raise ToolRefused(
                "the proxy is stopping; retry in a few seconds", "busy", 503
            ) from None
        # the thread's end, not the caller's (a cancelled await leaves the thread running)
        job.add_done_callback(on_done)
        return await asyncio.wrap_future(job)

    # -- the record --------------------------------------------------------------------------

    def _record(
        self,
        caller: Caller,
        tool: str,
        connection: str,
        outcome: str,
        status: int,
        rows: int | None,
        t0: float,
        started: float,
    ) -> None:
        took = time.perf_counter() - t0
        log.info(
            "mcp: user=%s tool=%s connection=%s rows=%s time=%.3fs %s",
            shown(caller.user)[:80],
            tool,
            connection,
            "-" if rows is None else rows,
            took,
            outcome,
        )
        row = Outcome(
            uuid.uuid4().hex,
            replace(caller, client="mcp"),
            f"mcp:{tool}",
            started,
            upstream=f"mcp:{connection}",
            status=status,
            error=None if outcome == "ok" else outcome,
            latency_s=took,
            api="mcp",
            result_rows=rows,
        )
        self.engine.record_call(row, tool, outcome)

    async def close(self) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)
        with self._all_lock:
            opened, self._all = self._all, []
        for conn in opened:
            raw, bind = getattr(conn.db, "raw", None), getattr(conn.db, "bind", None)
            try:
                if raw is not None:  # sqlite3, DuckDB
                    raw.close()
                elif bind is not None and hasattr(bind, "dispose"):  # a SQLAlchemy engine's pool
                    bind.dispose()
            except Exception:  # closing at shutdown: nothing left to tell
                pass
