"""Hosted tools: the tools a provider runs itself and bills by the call (web search, file search,
a code container, image generation, its MCP connector), and the built-in tools a client runs
that only a provider's own API can express (a computer, a shell, a patch tool). Governed, not
refused (``c.RSQLProxy.hosted_tools``): per kind, whether it is offered and to which groups, at
what price a call, how many calls one request may make, and what happens when it is not run
for a request (not offered to the caller, or the upstream cannot run it): dropped and named in
the answer's ``x-rsql-dropped`` header (the default, so a tool such as Codex, which offers web
search, works unchanged), or refused with a 400 that says where the admin changes it.

One rule on every API. On the Responses and Messages APIs a hosted tool is run only by an
upstream that speaks the API (``apis.native``; the edge decides, ``apis.translated``); on chat
completions, any tool type but a function or a free-form one is a provider's (Groq runs its
browser search, code and remote MCP servers there: ``HostedTools.govern_chat``). What one runs
is reserved at admission as the most it can cost (``reserve``: its calls within the cap the
provider is told, at its price or its container's by size, and ``content_tokens`` a call as
prompt), and charged from what the provider reports, read with each API's usage
(``apis.responses.usage.calls_in_output``, ``apis.messages.usage.calls_in_usage``, a chat
answer's ``executed_tools``: ``bodies.usage.ChatUsage``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..errors import BadRequest, ConfigError, Problems

# USD a call, as the providers publish them (their API pricing pages), the dearest path of each
# where a kind has several, so a default never reserves less than a provider may bill (a call is
# charged what its provider bills where its API says that is less: ``call_price``): OpenAI's
# web search $10 a thousand calls ($25 on the preview non-reasoning path); file search $2.50 a
# thousand; a code container by its memory (``CONTAINER_PRICES``; Anthropic's code execution
# $0.05 an hour of container, charged as one hour); Anthropic's web search $10 a thousand; an
# image of gpt-image-1 at high quality about $0.25. Tools billed by their tokens alone (web
# fetch, MCP, and the tools a client runs) cost nothing more a call.
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
# What one call may pull into the prompt, billed there as input: search results (OpenAI bills
# a search on its mini models as a fixed block of 8,000 input tokens; Anthropic counts results
# as input, uncapped), a fetched page (Anthropic's web fetch, told this cap as its
# ``max_content_tokens``, which holds for text; a fetched PDF is billed by its pages, which a
# request's fetched documents are reserved for: ``parsing``), a file search's chunks (OpenAI's
# defaults: 20 results of 800-token chunks) and an MCP server's answer (the provider caps none:
# as much as a fetched page, unless the admin says). Reserved as prompt per call.
DEFAULT_CONTENT_TOKENS: dict[str, int] = {
    "web_search": 8_000,
    "web_fetch": 25_000,
    "file_search": 16_000,
    "mcp": 25_000,
}
# OpenAI's code interpreter, USD a container session (20 minutes) by its ``memory_limit``, as
# its pricing page lists them; a size not priced here is refused (``container_price``)
CONTAINER_PRICES: dict[str, float] = {"1g": 0.03, "4g": 0.12, "16g": 0.48, "64g": 1.92}
_FIELDS = (
    "offered",
    "groups",
    "price_per_call",
    "max_calls",
    "if_not_run",
    "content_tokens",
    "container_prices",
)
MAX_CONTENT_TOKENS = 2_000_000  # past the largest context window any provider offers


@dataclass(frozen=True)
class HostedTool:
    """What the admin says of one kind."""

    offered: bool = False
    groups: tuple[str, ...] | None = None  # None: every user; else these groups only
    price_per_call: float = 0.0
    max_calls: int = 10  # calls one request may make: reserved, and capped where the API can
    if_not_run: str = "drop"  # "drop" (named in x-rsql-dropped) or "refuse" (a 400)
    content_tokens: int = 0  # what one call may pull into the prompt, reserved as prompt
    # a code container's price by its memory_limit (code_interpreter only); None: refused
    container_prices: tuple[tuple[str, float | None], ...] = ()
    # the admin set price_per_call (a contract's rate): every call is charged it; else a call
    # is charged what its provider publishes where that is less (``Replies.hosted_cost``)
    own_price: bool = False

    def offered_to(self, groups: tuple[str, ...]) -> bool:
        return self.offered and (self.groups is None or bool(set(self.groups) & set(groups)))


def default_tool(kind: str) -> HostedTool:
    """A kind as it is when the admin says nothing of a field: its published prices."""
    return HostedTool(
        price_per_call=DEFAULT_PRICES.get(kind, 0.0),
        content_tokens=DEFAULT_CONTENT_TOKENS.get(kind, 0),
        container_prices=tuple(CONTAINER_PRICES.items()) if kind == "code_interpreter" else (),
    )


def _near(name: str, names: tuple[str, ...]) -> str:
    near = difflib.get_close_matches(str(name), names, n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def parse_hosted_tools(raw: Any) -> dict[str, HostedTool]:
    """``c.RSQLProxy.hosted_tools``, checked: ConfigProblems naming every kind or field that is
    wrong (with the nearest known name for a misspelling)."""
    where = "RSQLProxy.hosted_tools"
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{where}: expected a dict like {{"web_search": {{"offered": True}}}}')
    problems = Problems()
    tools = {
        kind: problems.run(partial(_tool, kind, values, where), None)
        for kind, values in raw.items()
    }
    problems.refuse()
    return {kind: tool for kind, tool in tools.items() if tool is not None}


def _tool(kind: Any, values: Any, where: str) -> HostedTool:
    """One kind's settings; raises ConfigProblems naming each wrong field."""
    here = f"{where}[{kind!r}]"
    if kind not in KINDS:
        raise ConfigError(f"{here}: unknown kind{_near(kind, KINDS)}; kinds: {', '.join(KINDS)}")
    if not isinstance(values, Mapping):
        raise ConfigError(f"{here}: expected a dict of {', '.join(_FIELDS)}")
    problems = Problems()
    for name in values:
        if name not in _FIELDS:
            problems.append(
                f"{here}: unknown field {name!r}{_near(name, _FIELDS)}; fields: {', '.join(_FIELDS)}"
            )
    default = default_tool(kind)
    offered = values.get("offered", False)
    if not isinstance(offered, bool):
        problems.append(f"{here}['offered']: true or false, got {offered!r}")
    groups = values.get("groups")
    if groups is not None and (
        not isinstance(groups, list | tuple) or not all(isinstance(g, str) and g for g in groups)
    ):
        problems.append(f"{here}['groups']: a list of group names, got {groups!r}")
    price = values.get("price_per_call", default.price_per_call)
    if not _usd(price):
        problems.append(f"{here}['price_per_call']: USD from 0 to 100, got {price!r}")
    most = values.get("max_calls", 10)
    if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= 1000:
        problems.append(f"{here}['max_calls']: an integer from 1 to 1000, got {most!r}")
    otherwise = values.get("if_not_run", "drop")
    if otherwise not in ("drop", "refuse"):
        problems.append(f'{here}[\'if_not_run\']: "drop" or "refuse", got {otherwise!r}')
    content = values.get("content_tokens", default.content_tokens)
    if (
        isinstance(content, bool)
        or not isinstance(content, int)
        or not 0 <= content <= MAX_CONTENT_TOKENS
    ):
        problems.append(
            f"{here}['content_tokens']: tokens from 0 to {MAX_CONTENT_TOKENS:,}, got {content!r}"
        )
    containers = dict(default.container_prices)
    if "container_prices" in values:
        own = partial(_container_prices, kind, values["container_prices"], here)
        containers.update(problems.run(own, {}))
    problems.refuse()
    return HostedTool(
        offered,
        tuple(groups) if groups is not None else None,
        float(price),
        most,
        otherwise,
        content,
        tuple(containers.items()),
        "price_per_call" in values,
    )


def _usd(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= 100


def _container_prices(kind: str, raw: Any, here: str) -> dict[str, float | None]:
    """The admin's container prices, over the published ones: a size priced, or None to refuse
    it."""
    where = f"{here}['container_prices']"
    if kind != "code_interpreter":
        raise ConfigError(f"{where}: only code_interpreter runs in a container")
    if not isinstance(raw, Mapping):
        raise ConfigError(f'{where}: expected a dict like {{"4g": 0.12}} (USD a container)')
    problems = Problems()  # every size that is wrong
    out: dict[str, float | None] = {}
    for size, price in raw.items():
        if not isinstance(size, str) or not size:
            problems.append(f"{where}: a size is a memory_limit like '4g', got {size!r}")
        elif price is not None and not _usd(price):
            problems.append(f"{where}[{size!r}]: USD from 0 to 100, or None, got {price!r}")
        else:
            out[size] = None if price is None else float(price)
    problems.refuse()
    return out


class HostedTools:
    """The admin's hosted tools, and the decision for one request's tool."""

    def __init__(self, tools: Mapping[str, HostedTool]) -> None:
        self.tools = dict(tools)

    def of(self, kind: str) -> HostedTool:
        return self.tools.get(kind) or default_tool(kind)

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

    def govern_chat(
        self, body: dict[str, Any], found: list[tuple[str, int]], groups: tuple[str, ...]
    ) -> tuple[dict[str, Any], list[str]]:
        """A chat completion's hosted tools (`found`: ``chat_hosted_tools``) as the admin says:
        each offered to the caller goes on (the provider runs it or refuses it; reserved and
        charged as on every API), the rest left out of the body (their kinds returned, for
        ``x-rsql-dropped``) or refused. The one rule the Responses and Messages edges keep."""
        tools = list(body.get("tools") or [])
        out, gone, dropped = dict(body), set(), []
        for kind, i in found:
            if self.runs(kind, groups, upstream_runs=True):
                continue
            where = f"tools[{i}]" if i >= 0 else "web_search_options"
            refusal = self.not_run(kind, where, groups, upstream_runs=True)
            if refusal is not None:
                raise refusal
            dropped.append(kind)
            if i >= 0:
                gone.add(i)
            else:
                out.pop("web_search_options", None)
        kept = [t for j, t in enumerate(tools) if j not in gone]
        if gone and not kept and len(dropped) == len(found):
            raise only_hosted(dropped)
        if gone:
            if kept:
                out["tools"] = kept
            else:
                out.pop("tools", None)
                out.pop("tool_choice", None)
                out.pop("parallel_tool_calls", None)
        return out, dropped


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


@dataclass(frozen=True)
class Use:
    """One hosted tool a request runs: its kind, the calls the provider lets it make (its cap
    there, or the admin's ``max_calls`` where the API cannot say one), a call's price (a
    container's, for a code interpreter) and the tokens a call may pull into the prompt."""

    kind: str
    calls: int
    usd: float
    tokens: int


@dataclass(frozen=True)
class Reservation:
    """What a request's hosted tools may cost at most: USD, and prompt tokens; and each kind's
    price a call for this request, which its settlement charges."""

    usd: float = 0.0
    tokens: int = 0
    prices: tuple[tuple[str, float], ...] = ()


def reserve(uses: list[Use], shared_cap: int | None = None) -> Reservation:
    """The most `uses` may cost. `shared_cap`: one cap on every built-in tool's calls together
    (the Responses API's ``max_tool_calls``): any kind may spend all of it, so it is reserved
    at the dearest kind's price and content; else each kind at its own calls."""
    if not uses:
        return Reservation()
    # a kind named twice (two code interpreters of different sizes) is charged at its dearest:
    # an answer's container calls do not say which tool's size they ran at
    dearest: dict[str, float] = {}
    for u in uses:
        dearest[u.kind] = max(dearest.get(u.kind, 0.0), u.usd)
    prices = tuple(dearest.items())
    if shared_cap is not None:
        return Reservation(
            shared_cap * max(u.usd for u in uses), shared_cap * max(u.tokens for u in uses), prices
        )
    return Reservation(
        sum(u.calls * u.usd for u in uses), sum(u.calls * u.tokens for u in uses), prices
    )


def container_price(tool: HostedTool, spec: Any, where: str) -> float:
    """What one container of a code interpreter tool costs (`spec`: the tool's ``container``);
    ``BadRequest`` naming the field for a size the admin has not priced, or a container named
    by id: a container belongs to the provider account every user of a key shares (its files
    too), and one made elsewhere has no price here."""
    if isinstance(spec, str):
        raise BadRequest(
            f"{where}.container: a container by id is not offered through this proxy (containers "
            'belong to the provider account that every user of this hub shares); send {"type": '
            '"auto"} and each request runs in its own',
            code="hosted_tool_not_priced",
            extra={"param": f"{where}.container"},
        )
    size = spec.get("memory_limit", "1g") if isinstance(spec, Mapping) else "1g"
    prices = dict(tool.container_prices)
    price = prices.get(size) if isinstance(size, str) else None
    if price is None:
        priced = ", ".join(repr(k) for k, v in prices.items() if v is not None) or "none"
        shown = json.dumps(size)[:20]
        raise BadRequest(
            f"{where}.container.memory_limit {shown} has no price on this hub (priced: "
            f"{priced}); ask for a priced size, or ask your hub admin "
            "(c.RSQLProxy.hosted_tools['code_interpreter']['container_prices'])",
            code="hosted_tool_not_priced",
            extra={"param": f"{where}.container.memory_limit"},
        )
    return price
