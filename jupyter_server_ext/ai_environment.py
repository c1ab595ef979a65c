"""The environment that points a user's AI tools at the proxy: a base URL and a key per family of
clients, the OpenAI one and the Anthropic one. The key is a token of the user's for the proxy,
never a provider key: on a hub a token minted per server that opens the proxy alone
(``hub.py``), in a personal server the server's own token (Jupyter Server has no narrower one).

Every base-URL variable the common clients read is set, not only the SDKs' own: a client that
reads the key but not the URL would send the key to the provider's own host (issue 53).

- OpenAI: ``OPENAI_BASE_URL`` (the openai SDK 1.x, Codex, the Agents SDK, LiteLLM),
  ``OPENAI_API_BASE`` (openai 0.x, LangChain's ``ChatOpenAI``, LlamaIndex, LiteLLM, Aider); the
  key ``OPENAI_API_KEY``.
- Anthropic: ``ANTHROPIC_BASE_URL`` (the Anthropic SDKs, Claude Code, LiteLLM),
  ``ANTHROPIC_API_URL`` (LangChain's ``ChatAnthropic``, read before the other),
  ``ANTHROPIC_API_BASE`` (older LiteLLM); the key ``ANTHROPIC_API_KEY``.

A family is set only when the user set none of its variables (its URLs, its key, and for
Anthropic Claude Code's ``ANTHROPIC_AUTH_TOKEN``): a user who brings their own key or endpoint
keeps all of theirs (a key of theirs must never be sent to the proxy, nor the proxy's token to
someone else's endpoint). On a hub "the user" includes the admin's own ``c.Spawner.environment``.

With the Anthropic family goes the context window Claude Code is to plan with
(``CLAUDE_CODE_MAX_CONTEXT_TOKENS``): for a model name it does not know (a gateway's own name,
``course-model``) it otherwise assumes a window of a million tokens, warns on every start, and
lets a conversation grow past what the model takes (and what the user's budget pays for) before
it compacts. It reads one variable for every such model, so it is told the smallest window the
configuration states among them (`claude_code_window`). Codex reads its window only from its
own configuration (``model_context_window``): nothing in the environment can tell it.

With the Anthropic family too: ``CLAUDE_CODE_ATTRIBUTION_HEADER=0``. Claude Code otherwise
opens every request's system text with a line of its own (``x-anthropic-billing-header:
cc_version=<version>.<a hash of the session's first message>; ...``): it differs from one
session to the next, and as the first thing of the prompt it keeps every new session from
reading its tools and instructions (some 10,000 tokens) from the prompt cache the last one
wrote. The line attributes use to a claude.ai login or project, which a proxy's key has not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar


@dataclass(frozen=True)
class Family:
    """The variables one family of clients reads."""

    urls: tuple[str, ...]  # every base-URL variable, all set to the same URL
    key: str
    suffix: str  # what this family's base URL adds to the proxy's root
    also_theirs: tuple[str, ...] = ()  # other variables that mean the user set this family up

    @property
    def names(self) -> tuple[str, ...]:
        """Every variable whose presence leaves the family to the user."""
        return (*self.urls, self.key, *self.also_theirs)


# the OpenAI SDKs add /chat/completions to their base URL, the Anthropic ones /v1/messages to
# the API root
OPENAI = Family(urls=("OPENAI_BASE_URL", "OPENAI_API_BASE"), key="OPENAI_API_KEY", suffix="/v1")
ANTHROPIC = Family(
    urls=("ANTHROPIC_BASE_URL", "ANTHROPIC_API_URL", "ANTHROPIC_API_BASE"),
    key="ANTHROPIC_API_KEY",
    suffix="",
    also_theirs=("ANTHROPIC_AUTH_TOKEN",),
)
FAMILIES = (OPENAI, ANTHROPIC)
# The OpenAI Agents SDK exports traces to OpenAI's own servers with OPENAI_API_KEY, whatever the
# base URL: with the family set here that key is the user's token for the proxy, a credential
# that must not leave the hub. Set with the OpenAI family, unless the user chose otherwise.
NO_TRACE_EXPORT = "OPENAI_AGENTS_DISABLE_TRACING"

# What Claude Code plans with for a model it does not know (its documented setting for a gateway's
# or a custom model id: "Correct the window for a gateway or custom model ID" in its model
# configuration docs). A user who set it keeps theirs, in the environment or in the env block of
# their own ~/.claude/settings.json, which Claude Code applies over the environment.
CLAUDE_CODE_WINDOW = "CLAUDE_CODE_MAX_CONTEXT_TOKENS"
# One request of Claude Code's holds its own prompt and tools (about 15K tokens) and room for a
# 32,000-token answer; told a window of 16K it refuses to send anything ("Prompt is too long",
# 2.1.330), and below this it has no room left to work in. A model that small cannot run it
# whatever it is told, so its window is left out rather than imposed on the models that can.
SMALLEST_WINDOW = 65_536
# Claude Code's own setting for its attribution line ("... CLAUDE_CODE_ATTRIBUTION_HEADER is not
# 0", its settings help): off, its sessions share one cacheable prefix
CLAUDE_CODE_ATTRIBUTION = "CLAUDE_CODE_ATTRIBUTION_HEADER"

Token = TypeVar("Token")


class ServedUpstream(Protocol):
    """What `served_windows` reads of an upstream (the engine's ``UpstreamSpec``)."""

    @property
    def models(self) -> tuple[str, ...]: ...

    @property
    def n_ctx(self) -> int: ...

    @property
    def local(self) -> bool: ...

    @property
    def context_windows(self) -> Mapping[str, int]: ...


def served_windows(upstreams: Iterable[ServedUpstream]) -> dict[str, int]:
    """Public model name -> the tokens its context window holds, as the proxy's configuration
    states it: the local model's ``n_ctx``, and each upstream's ``context_windows`` (the admin's
    per-model windows). A model several upstreams serve gets the smallest they state; a model
    none states a window for is left out."""
    out: dict[str, int] = {}
    for upstream in upstreams:
        stated: dict[str, int] = (
            dict.fromkeys(upstream.models, upstream.n_ctx) if upstream.local else {}
        )
        stated.update(upstream.context_windows)  # the admin's own figures
        for model, tokens in stated.items():
            if model != "*" and isinstance(tokens, int) and tokens > 0:
                out[model] = min(tokens, out.get(model, tokens))
    return out


def claude_code_window(windows: Mapping[str, int]) -> int | None:
    """The one window Claude Code is told for every model it does not know: the smallest of
    those `windows` of models it does not know by their names, leaving out the ones too small to
    run it (``SMALLEST_WINDOW``); None when none is known. Too small a window only compacts
    early; too large lets a request run past what the model takes, and that one fails."""
    fitting = [
        tokens
        for model, tokens in windows.items()
        if not _claude_knows(model) and tokens >= SMALLEST_WINDOW
    ]
    return min(fitting) if fitting else None


def _claude_knows(model: str) -> bool:
    """Whether Claude Code uses its own window for `model` whatever the variable says: its own
    ids (``claude-...``) and names asking for the 1M window (``...[1m]``), in any casing."""
    name = model.strip().lower()
    return name.startswith("claude-") or "[1m]" in name


def ai_environment(
    proxy_url: str,
    token: Token,
    environ: Mapping[str, object],
    windows: Mapping[str, int] | None = None,
) -> dict[str, str | Token]:
    """The variables to add to `environ` so tools reach the proxy at `proxy_url` with `token`;
    nothing for a family of which `environ` already holds any variable, or without a token.

    `token` is the value itself, or on a hub the callable JupyterHub calls per spawned server.
    `windows`: the public models' context windows (`served_windows`), for Claude Code's."""
    if not token:
        return {}
    root = proxy_url.rstrip("/")
    out: dict[str, str | Token] = {}
    for family in FAMILIES:
        if any(name in environ for name in family.names):
            continue
        for name in family.urls:
            out[name] = root + family.suffix
        out[family.key] = token
    if OPENAI.key in out and NO_TRACE_EXPORT not in environ:
        out[NO_TRACE_EXPORT] = "1"
    if ANTHROPIC.key in out and CLAUDE_CODE_ATTRIBUTION not in environ:
        out[CLAUDE_CODE_ATTRIBUTION] = "0"
    window = claude_code_window(windows or {})
    if ANTHROPIC.key in out and window is not None and CLAUDE_CODE_WINDOW not in environ:
        out[CLAUDE_CODE_WINDOW] = str(window)
    return out
