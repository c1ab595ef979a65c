"""``c.RSQLProxy.*``: the configuration both hosts read (names are a contract)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import partial
from typing import Any

from traitlets import Bool, Dict, Float, Integer, List, Unicode

from ..engine import (
    EngineSettings,
    LimitSettings,
    UserRules,
    parse_overrides,
    parse_rates,
)
from ..engine.admission.hosted_tools import parse_hosted_tools
from ..engine.admission.window_specs import parse_windows, zone
from ..engine.privacy.redact import parse_context_policy, parse_redact_patterns
from ..engine.upstreams.specs import (
    DEFAULT_LOCAL_MODEL,
    parse_budget_usd,
)
from .bounds import BOUNDS
from .courses import CourseLogSettings
from .declared import trait
from .inline import InlineCompletionSettings
from .mcp import MCPSettings, parse_mcp_settings
from .monitoring import MonitoringSettings
from .problems import (
    ConfigProblems,
    Problems,
    database_url_problem,
    state_url_problem,
    upstream_specs,
)
from .requests import RequestSettings

LOCAL_MODEL = DEFAULT_LOCAL_MODEL
# every default is written once, in the engine's settings: a setting the engine takes as it is
# is declared there whole and its trait made from it (``trait``); the others read their default
ENGINE = EngineSettings(upstreams=())
LIMITS = LimitSettings()
USER = UserRules()
# A number's range is its declaration's (``setting(..., bound)``, or on a trait of its own,
# ``.tag(config=True, bound=">= 0")``), checked by ``range_problems`` (the traits check only the
# types); ``engine=True`` marks a setting copied as it is into the EngineSettings field of the
# same name (``engine_settings``), so a setting, its bound and its way to the engine are written
# once, where it is declared.


class RSQLProxy(MonitoringSettings, RequestSettings, InlineCompletionSettings, CourseLogSettings):
    """The shared LLM proxy: upstream keys, limits, budgets, cache and usage log."""

    upstreams = List(
        Dict(),
        help="""Provider keys to spread load over. Each is a dict:
        {"name": "groq-a1", "base_url": "https://api.groq.com/openai/v1",
         "api_key_env": "GROQ_KEY_A1", "account": "groq-org-a",
         "models": ["llama-3.1-8b-instant"], "limits": ["30/minute", "14400/day"],
         "token_limits": ["6000/minute"]}.
        Upstreams sharing an "account" share its limits. "provider" is "openai" (any
        OpenAI-compatible API, the default), "azure" (with "api_version"), "anthropic", "gemini"
        or "llama_cpp" ({"name": "local", "provider": "llama_cpp"} runs SmolLM2-135M in a process
        of its own, beside the proxy, and serves that model's name only). Without "models" a
        hosted upstream serves what its GET /models lists, and nothing until it has answered.
        "models" may map public names to the provider's own: {"gpt-4o-mini": "my-deployment"}.
        A self-hosted server sets "max_in_flight". Empty: the local model is used.""",
    ).tag(config=True)
    default_model = Unicode(ENGINE.default_model, help="Model used when a request names none.").tag(
        config=True
    )
    max_wait_seconds = trait(EngineSettings, "max_wait_seconds", engine=True)
    upstream_timeout_seconds = trait(EngineSettings, "upstream_timeout_seconds", engine=True)
    default_cooldown_seconds = trait(EngineSettings, "default_cooldown_seconds", engine=True)
    breaker_threshold = trait(EngineSettings, "breaker_threshold", engine=True)
    breaker_seconds = trait(EngineSettings, "breaker_seconds", engine=True)
    health_check_seconds = trait(EngineSettings, "health_check_seconds", engine=True)
    default_max_tokens = trait(EngineSettings, "default_max_tokens", engine=True)
    admin_users = List(Unicode(), help="Users allowed on the admin endpoints.").tag(config=True)
    admin_groups = List(Unicode(), help="Groups whose members are admins.").tag(config=True)
    required_scope = Unicode(
        "",
        help="""Hub service only: a scope every caller's token must hold, e.g. "custom:rsql:use"
        (define it in c.JupyterHub.custom_scopes and grant it through a role).""",
    ).tag(config=True)

    # -- per-user and global limits ---------------------------------------------------------
    user_limits = List(
        Unicode(),
        help="""Request limits per user, e.g. ["10/minute", "100/hour", "500/day"]. Windows of one
        day count per UTC date and reset at midnight UTC; shorter ones are moving windows.""",
    ).tag(config=True)
    user_concurrency = Integer(
        USER.concurrency, help="Requests one user may have in flight at once; 0: no limit."
    ).tag(config=True, bound=">= 0")
    user_daily_budget_usd = Float(
        USER.daily_budget_usd,
        allow_none=True,
        help="USD one user may spend per UTC day; None: no budget.",
    ).tag(config=True)
    global_concurrency = Integer(
        LIMITS.global_concurrency, help="Requests in flight at once for everyone; 0: no limit."
    ).tag(config=True, bound=">= 0")
    global_daily_budget_usd = Float(
        LIMITS.global_daily_budget_usd,
        allow_none=True,
        help="USD everyone together may spend per UTC day; None: no budget.",
    ).tag(config=True)
    limit_overrides = Dict(
        help="""Per user or group: {"user:alice": {"user_limits": ["60/minute"]},
        "group:staff": {"user_concurrency": 4, "user_daily_budget_usd": 20}}. Group overrides apply
        in the order given (a later group's value wins), then the user's own. Entitlements are
        fields too: "models" (model names or fnmatch patterns the user may call; a user in several
        groups may call what any of them allows; the user's own list replaces the groups'),
        "default_model" (what a request naming no model gets, e.g. %%ask) and "sql_default_model"
        (%%sql_ai's; default: default_model). With no "models" anywhere every model is allowed.
        The editor's completions: "completions" (false: off), "completion_user_limits" and
        "completion_user_concurrency" (their own rate class, as the settings of those names).""",
    ).tag(config=True)
    allowed_models = List(
        Unicode(),
        help="""Models every user may call (names or fnmatch patterns, e.g. ["llama-3.1-8b*"]), unless a
        group or user entry of limit_overrides names its own "models". Empty: every served model.""",
    ).tag(config=True)
    policy_windows: List[Any] = List(
        help="""Times when a group (or everyone, "groups": ["*"]) is put into a mode: "off" (no
        assistant), "local-only" (only the local llama_cpp model), "custom" (its own "models",
        "default_model" and "user_daily_budget_usd") or "tutor" (its "instruction" first in every
        request, agent tools off, completions of names only; see docs/admins/courses.md).
        One-off: {"name": "exam", "groups": ["students"], "start": "2026-12-01T09:00", "end":
        "2026-12-01T11:00", "mode": "off",
        "message": "No assistant during the exam"}; weekly: "weekly": {"days": ["mon", "wed"],
        "start": "14:00", "end": "16:00", "timezone": "Europe/Berlin"} in place of start and end;
        standing: "always": true.
        Times without an offset are read in admin_timezone. Admins start and end windows at run
        time with `rsql-proxy admin window ...` or the dashboard (shared by replicas on Redis).""",
    ).tag(config=True)
    admin_timezone = trait(EngineSettings, "admin_timezone", engine=True)
    notebook_names = trait(EngineSettings, "notebook_names", engine=True)
    lease_seconds = Float(
        LIMITS.lease_seconds,
        help="A concurrency slot expires on its own after this long (a crashed process).",
    ).tag(config=True, bound="> 0")
    unpriced_models = trait(EngineSettings, "unpriced_models", engine=True)

    # -- what upstreams learn of the caller -------------------------------------------------------
    forward_user = trait(EngineSettings, "forward_user", engine=True)
    user_id_secret = Unicode(
        "",
        help="""Key of the "hash" pseudonyms. Empty: read from user_id_secret_file, created with a
        random key on first start. Set the same value on every replica (or point them all at
        one file) so a user keeps one pseudonym.""",
    ).tag(config=True)
    user_id_secret_file = Unicode(
        "",
        help="""File holding the pseudonym key when user_id_secret is empty (default: user-id.secret
        next to the default SQLite usage log).""",
    ).tag(config=True)

    # -- cache ----------------------------------------------------------------------------------
    cache_max_entries = trait(EngineSettings, "cache_max_entries", engine=True)
    cache_max_bytes = trait(EngineSettings, "cache_max_bytes", engine=True)
    cache_ttl_seconds = trait(EngineSettings, "cache_ttl_seconds", engine=True)
    cache_hits_count = trait(EngineSettings, "cache_hits_count", engine=True)

    # -- usage log --------------------------------------------------------------------------------
    database_url = Unicode(
        "",
        help="""Where the usage log goes: sqlite:///path/usage.sqlite (default: rsql/usage.sqlite in
        the Jupyter data dir, or ./rsql_usage.sqlite for the hub service) or postgresql://...""",
    ).tag(config=True)
    log_prompts = trait(EngineSettings, "log_prompts", engine=True)
    usage_spool_dir = Unicode(
        "",
        help="""A local folder where every usage row is journaled before it goes to the database,
        so rows survive a database outage and a crashed process; they are written once the
        database answers again (at most once each: rows carry their request id). Default:
        rsql/usage-spool in the Jupyter data dir, or ./rsql_usage_spool for the hub service.""",
    ).tag(config=True)
    usage_spool_max_bytes = Integer(
        256 * 2**20,
        help="""Most bytes the usage spool may hold while the database is unreachable; past it,
        new rows are kept in memory only and a warning is logged once per outage.""",
    ).tag(config=True, bound="positive")

    # -- shared state for replicas --------------------------------------------------------------
    state_url = Unicode(
        "",
        help="""redis://host:6379/0 moves limit windows, leases, budgets, upstream windows,
        cooldowns and breakers to Redis, so replicas share them. Empty: in-process memory.""",
    ).tag(config=True)
    state_prefix = Unicode("rsql:", help="Prefix of every Redis key the proxy writes.").tag(
        config=True
    )
    fail_open = Bool(
        False,
        help="""When Redis is unreachable: False refuses requests with 503 (budgets stay safe);
        True admits them without per-user limits. Either way it is logged once per outage and
        shown in GET status.""",
    ).tag(config=True)
    retention_days = trait(EngineSettings, "retention_days", engine=True)

    # read by the handlers (the host writes the stream), not the engine: no EngineSettings copy
    stream_write_timeout_seconds = Float(
        30.0,
        help="""How long a streamed answer waits for its client to take the next part. A client
        that reads nothing for this long is cut off, and what its request holds (its concurrency
        lease, the key's slot, a self-hosted server's place, its budget reservation) is given back;
        it is charged what the provider generated, as for any dropped stream.""",
    ).tag(config=True, bound="> 0")
    stream_max_seconds = Float(
        3600.0,
        help="""The longest a streamed answer may take from its first byte to its end, however
        steadily the client reads: the bound on how long one stream can hold what it holds.""",
    ).tag(config=True, bound="> 0")

    ai_environment = Bool(
        False,
        help="""Point the AI tools users run in this server's kernels and terminals (the OpenAI and
        Anthropic SDKs, Codex, Claude Code, LangChain, jupyter-ai) at this proxy: every base-URL
        variable the common clients read (OPENAI_BASE_URL, OPENAI_API_BASE, ANTHROPIC_BASE_URL,
        ANTHROPIC_API_URL, ANTHROPIC_API_BASE) and OPENAI_API_KEY / ANTHROPIC_API_KEY set to
        this server's own token (never a provider key; Jupyter Server has no narrower token, so
        whoever holds it can use this server), each family only where the user set none of its
        variables. Sets nothing on a hub: configure_jupyterhub(..., ai_tools=True) gives users'
        tools a key for the proxy alone.""",
    ).tag(config=True)

    freeze_startup_objects = Bool(
        True,
        help="""In a Jupyter server (the server extension): once the server runs, hand what its
        start made (modules, classes, every extension's settings: hundreds of thousands of
        objects that live as long as the server) to Python's collector as permanent (gc.freeze).
        Otherwise each full collection walks all of them again, and the whole server (its
        pages, its kernels' messages, this proxy) stands still for 100 ms or more each time;
        completions at every pause in the editor make such collections come every few seconds.
        rsql-proxy does this always. False leaves the server's collector as Python set it.""",
    ).tag(config=True)

    # -- prompt caches: a conversation kept on the account its cache is on --------------------
    prompt_cache_seconds = trait(EngineSettings, "prompt_cache_seconds", engine=True)

    # -- the Responses API's stored responses -----------------------------------------------------
    responses_ttl_seconds = trait(EngineSettings, "responses_ttl_seconds", engine=True)
    responses_per_user = trait(EngineSettings, "responses_per_user", engine=True)
    responses_per_user_bytes = trait(EngineSettings, "responses_per_user_bytes", engine=True)

    # -- hosted tools: the tools a provider runs (web search, code, file search, ...) ------------
    hosted_tools = Dict(
        help="""The tools a provider runs and bills by the call, and the built-in tools only its own
        API expresses, per kind (web_search, web_fetch, file_search, code_interpreter,
        image_generation, mcp, computer_use, shell, apply_patch, text_editor, memory,
        tool_search): {"web_search": {"offered": True, "groups": ["staff"], "price_per_call":
        0.025, "max_calls": 10, "content_tokens": 8000, "if_not_run": "drop"}}, and for
        code_interpreter "container_prices" ({"4g": 0.12}: USD a container by its memory_limit,
        None to refuse a size; OpenAI's published table by default). A tool runs only when it
        is offered to the caller (every user without "groups") and the request can reach a
        provider that runs it (on the Responses and Messages APIs, an upstream that speaks
        them); it is reserved at admission as the most it can cost (its calls within the cap the
        provider is told, at price_per_call or the container's price, and content_tokens a call
        as prompt: what a search or fetch pulls in) and charged as the provider reports it, each
        call at price_per_call where set, else at what its provider bills on the model that ran
        it where that is less (a web search $0.01 at Anthropic and at OpenAI, but for its
        web_search_preview on non-reasoning models).
        Otherwise it is left out of the request and named in the answer's x-rsql-dropped header
        ("drop", the default: Codex and Claude Code work unchanged), or refused with a 400
        ("refuse"). The same rule holds on chat completions (Groq's browser_search,
        code_interpreter and mcp; web_search_options). A kind not named here is not offered.""",
    ).tag(config=True)

    # -- shutdown -------------------------------------------------------------------------------
    shutdown_grace_seconds = Float(
        30.0,
        help="""On SIGTERM (or SIGINT), how long the hub service lets answers and streams in flight
        finish after it stops accepting; those still running then end with an error event, their
        leases are released and the usage log is flushed before the process exits.""",
    ).tag(config=True, bound=">= 0")

    # -- agents: agent mode and MCP ----------------------------------------------------------------
    agent_mode = Bool(
        USER.agent,
        help="""Whether users may use agent mode (%%ask --agent, the chat panel's Agent switch) and
        the tools at {proxy}mcp. Per group or user: "agent" in limit_overrides
        ({"group:intro": {"agent": False}}); for a span of time: a policy window's "agent".""",
    ).tag(config=True)
    mcp_connections = Dict(
        help="""Databases served to users' MCP clients (Claude Code, jupyter-ai, any agent) at
        {proxy}mcp: search_schema, describe_table and run_sql, through %%sql_ai's read-only guard
        and walls. {"dw": {"url": "postgresql://mcp@db/warehouse", "role": "readonly_analyst",
        "groups": ["analysts"]}, "demo": "sqlite:////srv/data/demo.db"}. Fields: url (sqlite:///,
        duckdb:/// or postgresql://; opened read-only), role (PostgreSQL: required, the role every
        statement runs as), groups (who may use it; none: everyone), max_rows (20),
        timeout_seconds (10), redact_columns (globs whose values are withheld, on top of
        context_policy's), allow_functions, description. Empty: no MCP endpoint.""",
    ).tag(config=True)
    mcp_user_limits = List(
        ["30/minute", "1000/day"],
        help="""Tool calls one user may make at {proxy}mcp, in the notation of user_limits; a call
        past a limit is refused as a tool error saying when to retry.""",
    ).tag(config=True)
    mcp_user_concurrency = Integer(
        2, help="Tool calls of one user that may run at once at {proxy}mcp."
    ).tag(config=True)
    mcp_workers = Integer(
        4,
        help="""Threads that run tool calls in each proxy process (a call waits for one); with
        mcp_user_concurrency below it, no one user can hold them all.""",
    ).tag(config=True)

    # -- privacy ------------------------------------------------------------------------------
    context_policy = Dict(
        help="""What the kernel side may put into a prompt, delivered to it with GET me:
        {"sample_rows": True, "value_stats": True, "redact_columns": ["*email*", "student_id"]}
        (sample rows of frames and tables; value ranges and example values; columns, by name or
        glob, whose values are never sent). Unknown keys stop start-up.""",
    ).tag(config=True)
    redact_patterns: List[Any] = List(
        help="""Personal data masked in every request before it goes upstream, for every client:
        built-in "email", "phone", "card" (Luhn-checked), "iban" (mod-97-checked), "ipv4", and
        custom {"name": "student_id", "regex": "S\\d{7}"}. Matches become typed placeholders
        (<email-1>), mapped back in the answer for the user (not for SQL clients, not inside
        ```sql blocks). Pattern-based: no guarantee for free text.""",
    ).tag(config=True)
    redact_max_chars = trait(EngineSettings, "redact_max_chars", engine=True)
    usage_drain_seconds = trait(EngineSettings, "usage_drain_seconds", engine=True)
    fallback_model = trait(EngineSettings, "fallback_model", engine=True)
    fallback_on = List(
        Unicode(),
        default_value=list(ENGINE.fallback_on),
        help="""When fallback_model answers: "capacity" (no upstream key could answer) and/or
        "budget" (the daily budget is spent; the fallback must then be free, like the local model).""",
    ).tag(config=True)

    def mcp_settings(self) -> MCPSettings:
        """The MCP endpoint's settings; raises ConfigError naming the field."""
        return parse_mcp_settings(
            dict(self.mcp_connections),
            list(self.mcp_user_limits),
            self.mcp_user_concurrency,
            self.mcp_workers,
        )

    def engine_settings(
        self, env: Mapping[str, str] | None = None, log: logging.Logger | None = None
    ) -> EngineSettings:
        """Validate everything; raises ConfigProblems (a ConfigError) naming, one line each, every
        setting and upstream that is wrong, not only the first."""
        env = os.environ if env is None else env
        problems = Problems()
        problems.run(self.mcp_settings, None)  # a bad one stops start-up and --check-config too
        problems.run(self.course_log_specs, None)  # so does a bad course log
        raw = list(self.upstreams)
        default_model = self.default_model
        if not raw:
            raw = [{"name": "local", "provider": "llama_cpp", "models": [LOCAL_MODEL]}]
            default_model = default_model or LOCAL_MODEL
            (log or logging.getLogger("rsql")).warning(
                "rsql proxy: no upstreams configured, answering with the local SmolLM2-135M model "
                "(answers will be weak); configure c.RSQLProxy.upstreams with a provider key, "
                "see 'Configuring the proxy' in the documentation"
            )
        before = len(problems)
        specs = problems.run(lambda: upstream_specs(raw, env), ())
        # what names an upstream or a model is checked against the upstreams once they parse
        specs_ok = len(problems) == before
        problems.extend(self.range_problems())
        if specs_ok and default_model and not any(s.may_serve(default_model) for s in specs):
            problems.append(
                f"RSQLProxy.default_model {default_model!r} is served by no upstream; "
                f"upstream models: {sorted({m for s in specs for m in s.models})}"
            )
        capped = [s.name for s in specs if s.max_in_flight]
        if capped and not self.user_concurrency:  # a self-hosted server's slots are everyone's
            (log or logging.getLogger("rsql")).warning(
                "rsql proxy: upstreams %s take %s requests at a time and RSQLProxy.user_concurrency is 0: one "
                "user's parallel requests can fill them for everyone; set user_concurrency (e.g. 2)",
                ", ".join(capped),
                "+".join(str(s.max_in_flight) for s in specs if s.max_in_flight),
            )
        for name in ("user_daily_budget_usd", "global_daily_budget_usd"):
            problems.run(
                partial(parse_budget_usd, getattr(self, name), where=f"RSQLProxy.{name}"), 0.0
            )
        if self.unpriced_models not in ("deny", "free"):
            problems.append(
                f'RSQLProxy.unpriced_models must be "deny" or "free", got {self.unpriced_models!r}'
            )
        if self.forward_user not in ("hash", "name", "none"):
            problems.append(
                f'RSQLProxy.forward_user must be "hash", "name" or "none", got {self.forward_user!r}'
            )
        # a URL is shown with its password masked, however malformed (issue 73)
        problems.extend(p for p in (state_url_problem(self.state_url),) if p)
        problems.extend(p for p in (database_url_problem(self.database_url),) if p)
        request_limits = self.request_limits()  # their ranges: range_problems
        patterns = problems.run(lambda: parse_redact_patterns(self.redact_patterns), ())
        context_policy = problems.run(lambda: parse_context_policy(self.context_policy), {})
        fallback_on = tuple(self.fallback_on)
        for reason in fallback_on:
            if reason not in ("capacity", "budget"):
                problems.append(
                    f'RSQLProxy.fallback_on: unknown reason {reason!r}; use "capacity" and/or "budget"'
                )
        spec = next((u for u in specs if u.name == self.fallback_model), None)
        if specs_ok and self.fallback_model and spec is None:
            problems.append(
                f"RSQLProxy.fallback_model {self.fallback_model!r} names no upstream; upstreams: "
                + ", ".join(u.name for u in specs)
            )
        if spec is not None and "budget" in fallback_on and not spec.local:
            # a fallback past a spent budget must itself cost nothing the budget should see
            problems.append(
                f"RSQLProxy.fallback_on includes 'budget', but fallback_model {spec.name!r} is not "
                "the local (llama_cpp) model; only a free model may answer past a spent budget"
            )
        overrides = problems.run(lambda: parse_overrides(self.limit_overrides), {})
        served = [m for s in specs for m in s.models]
        for who, values in overrides.items() if specs_ok else ():
            for name in ("default_model", "sql_default_model"):
                model = values.get(name)
                if model is not None and not any(s.may_serve(model) for s in specs):
                    problems.append(
                        f"RSQLProxy.limit_overrides[{who!r}][{name!r}]: {model!r} is served by no "
                        f"upstream; upstream models: {sorted(set(served))}"
                    )
        tz = problems.run(lambda: zone(self.admin_timezone), None)
        # the upstreams did not parse: the windows are judged all the same, but whether one
        # is local (a local-only window's need) waits for them
        local_models = [m for s in specs if s.local for m in s.models] if specs_ok else ["?"]
        windows = ENGINE.policy_windows
        if tz is not None:
            windows = problems.run(
                lambda: parse_windows(list(self.policy_windows), tz=tz, local_models=local_models),
                windows,
            )
        completion_rates, completion_concurrency = problems.run(
            self.completion_limits, (LIMITS.completion_limits, LIMITS.completion_concurrency)
        )
        user_limits = problems.run(
            lambda: parse_rates(self.user_limits, where="RSQLProxy.user_limits"), ()
        )
        alerts = problems.run(self.alert_settings, ENGINE.alerts)
        inline = (
            problems.run(lambda: self.inline_settings(specs), ENGINE.inline) if specs_ok else None
        )
        hosted_tools = problems.run(lambda: parse_hosted_tools(self.hosted_tools), {})
        if problems:
            raise ConfigProblems(problems)
        assert inline is not None  # specs parsed, or there would be a problem
        limits = LimitSettings(
            user=UserRules(
                limits=user_limits,
                concurrency=self.user_concurrency,
                daily_budget_usd=self.user_daily_budget_usd,
                models=tuple(self.allowed_models) or None,
                agent=self.agent_mode,
                completions=self.inline_completions,
            ),
            global_concurrency=self.global_concurrency,
            global_daily_budget_usd=self.global_daily_budget_usd,
            overrides=overrides,
            lease_seconds=self.lease_seconds,
            completion_limits=completion_rates,
            completion_concurrency=completion_concurrency,
        )
        return EngineSettings(
            **{name: getattr(self, name) for name in self.trait_names(engine=True)},
            upstreams=specs,
            default_model=default_model,
            limits=limits,
            request_limits=request_limits,
            user_id_secret=self.user_id_secret.encode(),
            redact_patterns=patterns,
            context_policy=context_policy,
            fallback_on=fallback_on,
            alerts=alerts,
            policy_windows=windows,
            inline=inline,
            hosted_tools=hosted_tools,
        )

    def range_problems(self) -> list[str]:
        """Each number outside the range its trait declares (``bound``), one line each."""
        return [
            f"RSQLProxy.{name} must be {trait.metadata['bound']}, got {getattr(self, name)}"
            for name, trait in sorted(self.traits(bound=lambda b: b is not None).items())
            if not BOUNDS[trait.metadata["bound"]](getattr(self, name))
        ]
