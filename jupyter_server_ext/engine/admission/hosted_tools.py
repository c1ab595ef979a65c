"""Hosted tools: the tools a provider runs itself and bills by the call (web search, file search,
a code container, image generation, its MCP connector), and the built-in tools a client runs
that only a provider's own API can express (a computer, a shell, a patch tool). Governed, not
refused (``c.RSQLProxy.hosted_tools``): per kind, whether it is offered and to which groups, at
what price a call, how many calls one request may make, and what happens when it is not run
for a request (not offered to the caller, or the upstream cannot run it): dropped and named in
the answer's ``x-rsql-dropped`` header (the default, so a tool such as Codex, which offers web
search, works unchanged), or refused with a 400 that says where the admin changes it.

A hosted tool is run only by an upstream that speaks the request's API (``apis.native``): its
calls are reserved at admission (``max_calls`` x ``price_per_call``), capped at the provider
where its API can say so (``max_tool_calls``, ``max_uses``), and charged from what the provider
reports (``web_search_call`` items, ``server_tool_use`` counts).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest, ConfigError
from ..formats.hosted_kinds import kind_of

# USD a call, as the providers publish them (their API pricing pages), the dearest path of each
# where a kind has several, so a default never charges less than a provider may bill: OpenAI's
# web search $10 a thousand calls ($25 on the preview non-reasoning path); file search $2.50 a
# thousand; a code interpreter container $0.03 a session at 1 GB, Anthropic's code execution
# $0.05 an hour of container (a larger container is the admin's to price); Anthropic's web
# search $10 a thousand; an image of gpt-image-1 at high quality about $0.25. Tools billed by
# their tokens alone (web fetch, MCP, and the tools a client runs) cost nothing more a call.
DEFAULT_PRICES: dict[str, float] = {
    "web_search": 0.025,
    "web_fetch": 0.0,
    "file_search": 0.0025,
    "code_interpreter": 0.05,
    "image_generation": 0.25,
    "mcp": 0.0,
    "computer_use": 0.0,
    "shell": 0.0,
    "apply_patch": 0.0,
    "text_editor": 0.0,
    "memory": 0.0,
    "tool_search": 0.0,
}
KINDS = tuple(DEFAULT_PRICES)
_FIELDS = ("offered", "groups", "price_per_call", "max_calls", "if_not_run")


@dataclass(frozen=True)
class HostedTool:
    """What the admin says of one kind."""

    offered: bool = False
    groups: tuple[str, ...] | None = None  # None: every user; else these groups only
    price_per_call: float = 0.0
    max_calls: int = 10  # calls one request may make: reserved, and capped where the API can
    if_not_run: str = "drop"  # "drop" (named in x-rsql-dropped) or "refuse" (a 400)

    def offered_to(self, groups: tuple[str, ...]) -> bool:
        return self.offered and (self.groups is None or bool(set(self.groups) & set(groups)))


def parse_hosted_tools(raw: Any) -> dict[str, HostedTool]:
    """``c.RSQLProxy.hosted_tools``, checked: ConfigError naming the kind or field (with the
    nearest known name for a misspelling)."""
    where = "RSQLProxy.hosted_tools"
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{where}: expected a dict like {{"web_search": {{"offered": True}}}}')
    out: dict[str, HostedTool] = {}
    for kind, values in raw.items():
        here = f"{where}[{kind!r}]"
        if kind not in KINDS:
            near = difflib.get_close_matches(str(kind), KINDS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{here}: unknown kind{hint}; kinds: {', '.join(KINDS)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{here}: expected a dict of {', '.join(_FIELDS)}")
        for name in values:
            if name not in _FIELDS:
                near = difflib.get_close_matches(str(name), _FIELDS, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ConfigError(
                    f"{here}: unknown field {name!r}{hint}; fields: {', '.join(_FIELDS)}"
                )
        offered = values.get("offered", False)
        if not isinstance(offered, bool):
            raise ConfigError(f"{here}['offered']: true or false, got {offered!r}")
        groups = values.get("groups")
        if groups is not None and (
            not isinstance(groups, list | tuple)
            or not all(isinstance(g, str) and g for g in groups)
        ):
            raise ConfigError(f"{here}['groups']: a list of group names, got {groups!r}")
        price = values.get("price_per_call", DEFAULT_PRICES[kind])
        if isinstance(price, bool) or not isinstance(price, int | float) or not 0 <= price <= 100:
            raise ConfigError(f"{here}['price_per_call']: USD from 0 to 100, got {price!r}")
        most = values.get("max_calls", 10)
        if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= 1000:
            raise ConfigError(f"{here}['max_calls']: an integer from 1 to 1000, got {most!r}")
        otherwise = values.get("if_not_run", "drop")
        if otherwise not in ("drop", "refuse"):
            raise ConfigError(f'{here}[\'if_not_run\']: "drop" or "refuse", got {otherwise!r}')
        out[kind] = HostedTool(
            offered, tuple(groups) if groups is not None else None, float(price), most, otherwise
        )
    return out


class HostedTools:
    """The admin's hosted tools, and the decision for one request's tool."""

    def __init__(self, tools: Mapping[str, HostedTool]) -> None:
        self.tools = dict(tools)

    def of(self, kind: str) -> HostedTool:
        return self.tools.get(kind) or HostedTool(price_per_call=DEFAULT_PRICES.get(kind, 0.0))

    def price(self, kind: str) -> float:
        """USD a call of `kind` is charged."""
        return self.of(kind).price_per_call

    def runs(self, kind: str, groups: tuple[str, ...], upstream_runs: bool) -> bool:
        """Whether a tool of `kind` goes to the provider for a caller in `groups`: offered to
        them, and the upstream speaks the API that runs it."""
        return upstream_runs and self.of(kind).offered_to(groups)

    def not_run(
        self, kind: str, where: str, groups: tuple[str, ...], upstream_runs: bool
    ) -> BadRequest | None:
        """The 400 for a tool that is not run and the admin refuses then; None: it is dropped."""
        tool = self.of(kind)
        if tool.if_not_run != "refuse":
            return None
        if not tool.offered_to(groups):
            why = f"the hosted tool {kind!r} is not offered to you on this hub"
        else:
            why = (
                f"the hosted tool {kind!r} cannot run on this model's upstream (only one that "
                "speaks the provider's own API runs it)"
            )
        return BadRequest(
            f"{where}: {why}; leave it out, or ask your hub admin (c.RSQLProxy.hosted_tools"
            f"[{kind!r}])",
            code="hosted_tool_not_run",
            extra={"param": where},
        )


def only_hosted(kinds: list[str]) -> BadRequest:
    """The 400 for a request whose only tools are hosted tools, none of which runs for it: left
    out, the model would answer as if it had used them (Claude Code shows such an answer as its
    search's results), so it is refused whatever ``if_not_run`` says."""
    names = ", ".join(dict.fromkeys(kinds))
    return BadRequest(
        f"tools: this request's only tools are hosted tools that do not run for you here "
        f"({names}), and an answer without them would pass for theirs; ask without them, or ask "
        "your hub admin (c.RSQLProxy.hosted_tools)",
        code="hosted_tool_not_run",
        extra={"param": "tools"},
    )


def reserve_usd(tools: Mapping[str, HostedTool], kinds: list[str]) -> float:
    """What a request's hosted tools may cost at most: each kind's ``max_calls`` at its price
    (the tools left in a request sent on are those it runs)."""
    hosted = HostedTools(tools)
    return sum(hosted.of(k).max_calls * hosted.price(k) for k in dict.fromkeys(kinds))


# a Responses output item of a hosted tool's call -> its kind
CALL_ITEMS = {
    "web_search_call": "web_search",
    "file_search_call": "file_search",
    "code_interpreter_call": "code_interpreter",
    "image_generation_call": "image_generation",
    "mcp_call": "mcp",
    "computer_call": "computer_use",
    "local_shell_call": "shell",
    "shell_call": "shell",
    "apply_patch_call": "apply_patch",
}


def calls_in_output(output: Any) -> dict[str, int]:
    """The hosted tools' calls a Response's ``output`` items say were made, by kind."""
    calls: dict[str, int] = {}
    for item in output if isinstance(output, list) else []:
        kind = CALL_ITEMS.get(str(item.get("type"))) if isinstance(item, dict) else None
        if kind is not None:
            calls[kind] = calls.get(kind, 0) + 1
    return calls


def calls_in_usage(server_tool_use: Any) -> dict[str, int]:
    """The hosted tools' calls an Anthropic usage's ``server_tool_use`` counts, by kind
    (``web_search_requests``, ``web_fetch_requests``, ...)."""
    calls: dict[str, int] = {}
    if isinstance(server_tool_use, Mapping):
        for name, n in server_tool_use.items():
            if (
                isinstance(n, int)
                and not isinstance(n, bool)
                and n > 0
                and name.endswith("_requests")
            ):
                kind = kind_of(name.removesuffix("_requests"))
                calls[kind] = calls.get(kind, 0) + n
    return calls
