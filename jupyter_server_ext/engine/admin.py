"""What the hosts' admin endpoints, dashboard and probes ask of the engine, in one place: they
call these methods and never reach into the engine's parts (its limiter, key pool, policy
windows, alerts, metrics, usage log, state backend), so a part can change without them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .accounting.usage import UsageLog, UsageStore
from .admission.limiter import Limiter
from .admission.policy_windows import PolicyWindows
from .admission.shared_state import StateBackend
from .courses.log import CourseLog
from .monitoring.alerts import Alerts
from .monitoring.metrics import Metrics
from .replies import Replies
from .settings import EngineSettings
from .upstreams.health import KeyHealth
from .upstreams.pool import Pool
from .upstreams.report import key_report


class EngineAdmin:
    """Mixed into ``Engine``, which builds the parts annotated here."""

    settings: EngineSettings
    clock: Callable[[], float]
    pool: Pool
    limiter: Limiter
    windows: PolicyWindows
    alerts: Alerts
    metrics: Metrics
    health: KeyHealth
    state: StateBackend
    usage: UsageLog | None
    replies: Replies

    # -- keys and spend ------------------------------------------------------------------

    async def health_check(self) -> dict[str, str]:
        """Every key's state after probing the disabled ones (``KeyHealth.check``)."""
        return await self.health.check()

    def upstream_report(self) -> list[dict[str, Any]]:
        """Per key: account, state, cooldown, breaker, use of its account's limits, errors."""
        return key_report(self.pool, self.clock(), time.time())

    def key_states(self) -> tuple[tuple[str, str], ...]:
        """(alias, state) of every key, in the pool's order."""
        return self.pool.key_states()

    async def global_spend(self) -> tuple[float, float] | None:
        """(spent + reserved today, the limit) of the global daily budget; None without one."""
        return await self.limiter.global_spend()

    async def reset_limits(self, user: str | None) -> int:
        """Clear one user's windows and budget (None: everyone's); the entries cleared."""
        return await self.limiter.reset(user)

    # -- policy windows ------------------------------------------------------------------

    async def start_window(self, body: Any) -> dict[str, Any]:
        """Start a policy window at run time, shared with every replica (``PolicyWindows``)."""
        return await self.windows.start(body)

    async def end_window(self, name: str) -> dict[str, Any]:
        return await self.windows.end(name)

    async def window_listing(self) -> list[dict[str, Any]]:
        """Every window, configured and run-time, and whether it is in force."""
        return await self.windows.listing()

    @property
    def window_timezone(self) -> str:
        """The zone windows' times are written in (``admin_timezone``)."""
        return str(self.windows.tz)

    # -- monitoring ----------------------------------------------------------------------

    def metrics_text(self) -> bytes:
        """The Prometheus exposition of this process's metrics."""
        return self.metrics.render()

    async def recent_alerts(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` alerts (shared by replicas on Redis), newest first."""
        return await self.alerts.recent(limit)

    async def state_reachable(self) -> bool:
        """Whether the state backend answers (False, or an exception, when it does not)."""
        return await self.state.ping()

    # -- the usage log and the course log ------------------------------------------------

    @property
    def usage_store(self) -> UsageStore | None:
        """Where usage rows are read from; None when no usage log is configured."""
        return None if self.usage is None else self.usage.store

    @property
    def usage_interval(self) -> float:
        """Seconds between the usage log's writes (0 without a log)."""
        return 0.0 if self.usage is None else self.usage.interval

    async def flush_usage(self) -> None:
        """Write the rows of requests answered so far, so a read sees them."""
        if self.usage is not None:
            await self.usage.flush()

    @property
    def course_log(self) -> CourseLog:
        """The course log (``wiring.attach_course_log`` gives it its store)."""
        return self.replies.course_log
