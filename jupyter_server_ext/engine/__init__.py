"""Framework-free asyncio core of the rsql proxy.

Its top level is the walk of one request (``core``, ``request_state``, ``failover``, ``replies``);
the rooms below it hold what each step uses: ``upstreams`` (keys and their rotation),
``admission`` (windows, entitlements, limits and budgets), ``bodies`` (requests, streams,
cache), ``privacy`` (redaction and map-back), ``accounting`` (prices and the usage log) and
``monitoring`` (metrics, alerts, tracing). docs/architecture.md draws the layers."""

from .admission.limiter import LimitSettings, UserRules, parse_overrides
from .core import Engine
from .errors import BadRequest, ConfigError, EngineError, RateLimited, UpstreamError
from .interface import Caller, Outcome, Reply
from .settings import EngineSettings
from .upstreams.specs import Rate, UpstreamSpec, parse_rates, parse_upstreams
from .upstreams.transport.http11 import EachWithin, within

__all__ = [
    "BadRequest",
    "Caller",
    "ConfigError",
    "EachWithin",
    "Engine",
    "EngineSettings",
    "LimitSettings",
    "Outcome",
    "EngineError",
    "RateLimited",
    "Rate",
    "Reply",
    "UpstreamError",
    "UpstreamSpec",
    "UserRules",
    "parse_overrides",
    "parse_rates",
    "parse_upstreams",
    "within",
]
