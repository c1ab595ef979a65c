"""The engine's settings, validated by the host's configuration layer before they get here.

Every proxy default is written here once. A setting the engine takes as it is configured is
declared here whole (``rsql_common.settings.setting``: its type, default, help and range), as
the request bounds are in ``bodies.request.RequestLimits`` and the alerts' in
``monitoring.alerts.AlertSettings``; the ``c.RSQLProxy`` trait is made from the field
(``jupyter_server_ext.config.declared.trait``), so a new one is its field here and the one line
in ``config/proxy.py`` that places it in the settings reference. Settings the configuration
parses first (upstreams, limits, windows) keep their trait there, with the default read here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rsql_common.settings import setting

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

    model: str = setting(
        "",
        """The model that writes inline completions: a fast, cheap one (or the local model).
        Empty: each user's default model. Users must be allowed it (allowed_models, "models" in
        limit_overrides); for others completions are off, and the editor's status item says so.""",
    )
    fim: bool = setting(
        False,
        """Ask the completion model to fill in the middle: v1/completions with the text after
        the cursor as `suffix` (OpenAI-compatible servers whose completion endpoint takes it, such
        as Ollama's and DeepSeek's). False: a chat request with the cell and a cursor mark.""",
    )
    max_tokens: int = setting(
        64,
        "Most tokens one inline completion may generate (and reserves against the budget).",
        "from 1 to 4096",
    )


@dataclass
class EngineSettings:
    upstreams: tuple[UpstreamSpec, ...]
    default_model: str = ""
    max_wait_seconds: float = setting(
        10.0,
        "How long a request may wait in line for upstream capacity before a 429 (one "
        "that joins a line longer than this is refused at once, with the wait as Retry-After).",
        ">= 0",
    )
    upstream_timeout_seconds: float = setting(
        60.0,
        "Time allowed for an upstream's answer (streaming: between events).",
        ">= 0",
    )
    default_cooldown_seconds: float = setting(
        5.0,
        "Cooldown of an (account, model) after a 429 that names no wait.",
        ">= 0",
    )
    breaker_threshold: int = setting(
        3,
        "Failures in a row (5xx, timeouts, connection errors) that open a key's breaker.",
        ">= 1",
    )
    breaker_seconds: float = setting(
        15.0,
        "How long an open breaker keeps a key out before one probe (doubles each time).",
        ">= 0",
    )
    health_check_seconds: float = setting(
        60.0,
        "Interval of the health check that re-enables rejected keys; 0 turns it off.",
        ">= 0",
    )
    default_max_tokens: int = setting(
        512,
        """Completion tokens reserved for a request that sets no max_tokens; while a budget
        applies, such a request is also capped there (sent upstream as max_completion_tokens).""",
        ">= 1",
    )
    limits: LimitSettings = field(default_factory=LimitSettings)
    cache_max_entries: int = setting(
        1000,
        "Cached answers kept at most; 0 turns the cache off.",
        ">= 0",
    )
    cache_max_bytes: int = setting(
        64 * 2**20,
        "Bytes of cached answers kept at most.",
        ">= 0",
    )
    cache_ttl_seconds: float = setting(
        3600.0,
        "How long a cached answer stays valid.",
        ">= 0",
    )
    cache_hits_count: bool = setting(
        False,
        "Whether a cache hit counts against the user's limits.",
    )
    log_prompts: bool = setting(
        False,
        "Store prompt text in the usage log.",
    )
    retention_days: float = setting(
        90.0,
        "Usage rows older than this are pruned; 0 keeps all.",
        ">= 0",
    )
    # where the usage log journals rows its store has not taken yet ("": in memory only)
    usage_spool_dir: str = ""
    usage_spool_max_bytes: int = 256 * 2**20
    request_limits: RequestLimits = field(default_factory=RequestLimits)
    unpriced_models: str = setting(
        "deny",
        """A model with no known price (neither in the upstream's "prices" nor in the built-in
        table) while a budget applies to the caller: "deny" refuses it with a 403 naming the model,
        so no budget can be escaped; "free" lets it cost 0. Without any budget it is always served.
        The local llama_cpp model is always free.""",
    )
    forward_user: str = setting(
        "hash",
        """The `user` field upstreams receive, for their abuse tracking: "hash" (default) a
        stable pseudonym of the caller, a keyed hash of the user name (rsql-<32 hex>); "name" the
        user name itself; "none" no `user` at all. A `user` the caller sent is always replaced.""",
    )
    # key of the pseudonyms; empty: a random one for this process (stable only until restart)
    user_id_secret: bytes = b""
    # privacy: what is masked before a request goes upstream, and what the kernel may send
    redact_patterns: tuple[Pattern, ...] = ()
    redact_max_chars: int = setting(
        200_000,
        """While redact_patterns is set: the most characters of text one request (or one
        POST redact) may hold; a longer one is refused with a 413 (code too_much_to_redact).
        Scanning costs CPU in proportion to the text, so this bounds the work one request asks for.""",
        ">= 1",
    )
    usage_drain_seconds: float = setting(
        30.0,
        """How long an answer whose client left is read on, for the usage the provider bills
        (it bills every token it generated, read or not). When no usage comes in that time, the
        prompt and one token per streamed chunk are charged. 0: charge that estimate at once.
        Until then the request keeps its user's concurrency slot (user_concurrency).""",
        ">= 0",
    )
    context_policy: dict[str, Any] = field(default_factory=lambda: dict(CONTEXT_POLICY_DEFAULTS))
    fallback_model: str = setting(
        "",
        """An upstream name (e.g. "local", the llama_cpp model) that answers when every key
        for the requested model is cooling, disabled or failing, or (see fallback_on) when the
        user's budget is spent. Answers say so in the X-RSQL-Fallback header. "": no fallback.""",
    )
    fallback_on: tuple[str, ...] = ("capacity",)  # "capacity", "budget"
    alerts: AlertSettings = field(default_factory=AlertSettings)
    otel: bool = setting(
        False,
        """OpenTelemetry spans per request (admission, cache, each upstream attempt), continuing
        the caller's traceparent; needs the `otel` extra. Exporter settings come from the standard
        OTEL_* environment variables (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, ...).""",
    )
    # the admin's policy windows (engine/admission/policy_windows.py)
    policy_windows: tuple[PolicyWindow, ...] = ()
    admin_timezone: str = setting(
        "UTC",
        """The IANA time zone (e.g. "Europe/Berlin") in which window times without an offset are
        read and in which users and admins are shown them, beside UTC.""",
    )
    notebook_names: bool = setting(
        False,
        """The usage log names the notebook each request came from by its path (True) or by a
        keyed hash of it, nb-<16 hex> (False, the default: file names can say more than admins need
        to see). Users still see their own notebook's spend with %ask_cost either way.""",
    )
    # stored responses of the Responses API (engine/apis/responses/stored.py)
    responses_ttl_seconds: float = setting(
        7 * 86400.0,
        """How long a response made through v1/responses is kept for previous_response_id and
        GET v1/responses/{id} (only its owner can read it). The provider keeps nothing: every
        upstream gets the whole conversation.""",
        "> 0",
    )
    responses_per_user: int = setting(
        200,
        "Most stored responses kept of one user's at once; the oldest go first.",
        ">= 1",
    )
    responses_per_user_bytes: int = setting(
        32 * 2**20,
        """Most bytes of one user's stored responses kept at once (conversations included);
        the oldest go first.""",
        ">= 1",
    )
    # the key choice's prompt-cache affinity (upstreams/affinity.py, prompt_cache.py)
    prompt_cache_seconds: float = setting(
        300.0,
        """How long a conversation keeps to the account that served it last (where the
        provider's prompt cache holds its prefix) after its last request: the provider's own
        cache life (Anthropic's and OpenAI's 5 minutes, renewed by each hit). A request that
        marks a one-hour cache write keeps it an hour, one with OpenAI's prompt_cache_retention
        "24h" a day. 0 turns the preference off: every request goes to the key with the most
        headroom.""",
        ">= 0",
    )
    # the editor's inline completions: model, fill-in-the-middle, length (apis/inline)
    inline: InlineSettings = field(default_factory=InlineSettings)
    # hosted tools, per kind: offered to whom, at what price a call (admission/hosted_tools.py)
    hosted_tools: dict[str, HostedTool] = field(default_factory=dict)
