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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar


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

Token = TypeVar("Token")


def ai_environment(
    proxy_url: str, token: Token, environ: Mapping[str, object]
) -> dict[str, str | Token]:
    """The variables to add to `environ` so tools reach the proxy at `proxy_url` with `token`;
    nothing for a family of which `environ` already holds any variable, or without a token.

    `token` is the value itself, or on a hub the callable JupyterHub calls per spawned server."""
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
    return out
