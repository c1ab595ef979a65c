"""Framework-free asyncio core of the rsql proxy: upstream pool, limits, cache, usage, pricing."""

from .core import Engine
from .errors import BadRequest, ConfigError, ProxyError, RateLimited, UpstreamError
from .limiter import LimitSettings, UserPolicy, parse_overrides
from .options import EngineSettings
from .records import Caller, Outcome, Reply
from .settings import Rate, UpstreamSpec, parse_rates, parse_upstreams

__all__ = [
    "BadRequest", "Caller", "ConfigError", "Engine", "EngineSettings", "LimitSettings", "Outcome",
    "ProxyError", "RateLimited", "Rate", "Reply", "UpstreamError", "UpstreamSpec", "UserPolicy",
    "parse_overrides", "parse_rates", "parse_upstreams",
]
