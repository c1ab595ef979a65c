"""The engine's settings, validated by the host's configuration layer before they get here.

Every proxy default is written here once: ``jupyter_server_ext.config.proxy`` declares each
``c.RSQLProxy`` trait with the default it reads from these dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .admission.hosted_tools import HostedTool
from .admission.limiter import LimitSettings
from .admission.window_specs import PolicyWindow
from .bodies.request import RequestLimits
from .monitoring.alerts import AlertSettings
from .privacy.redact import CONTEXT_POLICY_DEFAULTS, Pattern
from .upstreams.specs import UpstreamSpec


@dataclass(frozen=True)
class InlineSettings:
    """The admin's settings of the editor's inline completions (``c.RSQLProxy.completion_*``),
    which their edge reads (``apis.inline.edge``)."""

    model: str = ""  # "": the caller's default model
    fim: bool = False  # the model fills in the middle through v1/completions with `suffix`
    max_tokens: int = 64


@dataclass
class EngineSettings:
    upstreams: tuple[UpstreamSpec, ...]
    default_model: str = ""
    max_wait_seconds: float = 10.0
    upstream_timeout_seconds: float = 60.0
    default_cooldown_seconds: float = 5.0
    breaker_threshold: int = 3
    breaker_seconds: float = 15.0
    health_check_seconds: float = 60.0
    default_max_tokens: int = 512
    limits: LimitSettings = field(default_factory=LimitSettings)
    cache_max_entries: int = 1000
    cache_max_bytes: int = 64 * 2**20
    cache_ttl_seconds: float = 3600.0
    cache_hits_count: bool = False  # does a cache hit use the user's quota?
    log_prompts: bool = False
    retention_days: float = 90.0
    # where the usage log journals rows its store has not taken yet ("": in memory only)
    usage_spool_dir: str = ""
    usage_spool_max_bytes: int = 256 * 2**20
    request_limits: RequestLimits = field(default_factory=RequestLimits)
    unpriced_models: str = "deny"  # while a budget applies: "deny" (refuse) or "free" (cost 0)
    forward_user: str = "hash"  # the `user` upstreams see: "hash" (a pseudonym), "name", "none"
    # key of the pseudonyms; empty: a random one for this process (stable only until restart)
    user_id_secret: bytes = b""
    # privacy: what is masked before a request goes upstream, and what the kernel may send
    redact_patterns: tuple[Pattern, ...] = ()
    redact_max_chars: int = 200_000  # the most text one request may hold while redaction is on
    # how long an answer whose client left is read on, for the usage the provider bills
    usage_drain_seconds: float = 30.0
    context_policy: dict[str, Any] = field(default_factory=lambda: dict(CONTEXT_POLICY_DEFAULTS))
    fallback_model: str = ""  # an upstream name; "" turns the fallback off
    fallback_on: tuple[str, ...] = ("capacity",)  # "capacity", "budget"
    alerts: AlertSettings = field(default_factory=AlertSettings)
    otel: bool = False  # OpenTelemetry spans per request (needs the `otel` extra)
    # the admin's policy windows (engine/admission/policy_windows.py) and the zone their times are shown in
    policy_windows: tuple[PolicyWindow, ...] = ()
    admin_timezone: str = "UTC"
    # the usage log keeps notebook paths as they are (True) or as keyed hashes (False)
    notebook_names: bool = False
    # stored responses of the Responses API (engine/apis/responses/stored.py): how long, and how
    # many of one user's (and how many bytes of them) at most; the oldest go first
    responses_ttl_seconds: float = 7 * 86400.0
    responses_per_user: int = 200
    responses_per_user_bytes: int = 32 * 2**20
    # how long a conversation stays on the account its prompt cache is on after its last
    # request, when the request does not say (a one-hour cache mark: an hour; OpenAI's
    # prompt_cache_retention "24h": a day): Anthropic's and OpenAI's 5 minutes (prompt_cache)
    prompt_cache_seconds: float = 300.0
    # the editor's inline completions: model, fill-in-the-middle, length (apis/inline)
    inline: InlineSettings = field(default_factory=InlineSettings)
    # hosted tools, per kind: offered to whom, at what price a call (admission/hosted_tools.py)
    hosted_tools: dict[str, HostedTool] = field(default_factory=dict)
