"""Framework-free asyncio core of the rsql proxy: upstream pool, limits, cache, usage, pricing."""

from .core import Caller, Engine, EngineSettings, Outcome, Reply
from .errors import BadRequest, ConfigError, ProxyError, RateLimited, UpstreamError
from .settings import Rate, UpstreamSpec, parse_rates, parse_upstreams

__all__ = [
    "BadRequest", "Caller", "ConfigError", "Engine", "EngineSettings", "Outcome", "ProxyError",
    "RateLimited", "Rate", "Reply", "UpstreamError", "UpstreamSpec", "parse_rates", "parse_upstreams",
]
