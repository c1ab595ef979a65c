"""One agent turn: the model calls the kernel's read-only tools over several steps, then answers.

A turn is a chat whose requests carry the tools' definitions (``ToolBox.specs``). An answer that
asks for tools gets their results back as ``tool`` messages and the model is asked again, until
it answers in text, the turn's step limit (requests to the model) or token limit is reached, or
the user stops it. Each request is an ordinary request to the proxy: admitted, limited, billed
and logged like any other (as client ``agent``), and streamed (``ProxyClient.chat`` streams any
request with tools and puts the calls together), so a Stop that closes it mid-way ends it at
the proxy too, billed as a dropped stream. What the tools may do is decided in
:mod:`rsql_magic.agent.tools`: nothing there runs code the model wrote.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rsql_magic.client import ChatResult

# what the step display shows of a tool's arguments, as the model wrote them
ARGUMENTS_SHOWN = 200

ENDED = {
    "": "answered",
    "steps": "the turn's step limit",
    "tokens": "the turn's token limit",
    "stopped": "stopped",
}


class ToolOutcome(Protocol):
    """What a tool call gives back (read-only: a frozen result satisfies it)."""

    @property
    def text(self) -> str: ...

    @property
    def summary(self) -> str: ...

    @property
    def error(self) -> bool: ...


class ToolBox(Protocol):
    """What a turn needs of the tools (:class:`rsql_magic.agent.tools.KernelTools`)."""

    def specs(self) -> list[dict[str, Any]]: ...

    def call(self, name: str, arguments: str | dict[str, Any]) -> ToolOutcome: ...


@dataclass(frozen=True)
class Step:
    """One tool call, as the step display shows it."""

    number: int
    tool: str
    arguments: str  # as the model sent them, cut to ARGUMENTS_SHOWN
    summary: str
    chars: int  # the size of the result the model got back
    seconds: float
    error: bool
    result: str  # the whole result, as the model got it


@dataclass
class Turn:
    """A finished turn: its answer, its steps and every request it made."""

    answer: str = ""
    steps: list[Step] = field(default_factory=list)
    requests: list[ChatResult] = field(default_factory=list)
    ended: str = ""  # a key of ENDED

    @property
    def tokens(self) -> int:
        return sum(_tokens(r) for r in self.requests)

    def counted(self) -> str:
        """What the turn did, for its footer: "no tool calls, 1 request", and how it ended
        when it did not answer."""
        done = f"{_count(len(self.steps), 'tool call')}, {_count(len(self.requests), 'request')}"
        return f"{done} · ended by {ENDED[self.ended]}" if self.ended else done

    @property
    def cost_usd(self) -> float | None:
        costs = [r.cost_usd for r in self.requests if r.cost_usd is not None]
        return sum(costs) if costs else None

    def result(self) -> ChatResult:
        """The turn as one answer, for the footer: the last request's model and upstream, the
        whole turn's tokens, cost and time."""
        last = self.requests[-1]
        usage = {
            "prompt_tokens": sum(
                int((r.usage or {}).get("prompt_tokens") or 0) for r in self.requests
            ),
            "completion_tokens": sum(
                int((r.usage or {}).get("completion_tokens") or 0) for r in self.requests
            ),
        }
        return ChatResult(
            text=self.answer,
            model=last.model,
            usage=usage,
            cost_usd=self.cost_usd,
            cache_hit=all(r.cache_hit for r in self.requests),
            latency_s=sum(r.latency_s for r in self.requests),
            upstream=last.upstream,
            request_id=last.request_id,
            fallback=last.fallback,
        )


# one request to the model with the tools: Route.chat, bound to the cell's settings
Ask = Callable[[list[dict[str, Any]], list[dict[str, Any]]], ChatResult]


def run_turn(
    ask: Ask,
    messages: list[dict[str, Any]],
    tools: ToolBox,
    *,
    max_steps: int,
    max_tokens: int,
    on_step: Callable[[Step], None] | None = None,
    stopped: Callable[[], bool] = lambda: False,
    turn: Turn | None = None,
) -> Turn:
    """Ask, run the tools the answer calls for, ask again: at most `max_steps` requests and
    `max_tokens` tokens (prompt and answer, over the turn's requests), or until `stopped()`.
    `messages` is left as it was; errors of the requests (a ProxyError, an interrupt) reach
    the caller, and `turn`, when given, holds what was done and spent until then."""
    convo = list(messages)
    specs = tools.specs()
    turn = Turn() if turn is None else turn
    while True:
        if stopped():
            turn.ended = "stopped"
            break
        res = ask(convo, specs)
        turn.requests.append(res)
        turn.answer = res.text
        if not res.tool_calls:
            break
        if len(turn.requests) >= max_steps:
            turn.ended = "steps"
            break
        if turn.tokens >= max_tokens:
            turn.ended = "tokens"
            break
        convo.append(
            {"role": "assistant", "content": res.text or None, "tool_calls": res.tool_calls}
        )
        for call in res.tool_calls:
            if stopped():
                turn.ended = "stopped"
                return turn
            convo.append(_run_call(call, tools, turn, on_step))
    return turn


def _run_call(
    call: dict[str, Any], tools: ToolBox, turn: Turn, on_step: Callable[[Step], None] | None
) -> dict[str, Any]:
    """Run one tool call; the ``tool`` message with its result."""
    given = call.get("function")
    fn: dict[str, Any] = given if isinstance(given, dict) else {}
    name = str(fn.get("name") or "")
    arguments = fn.get("arguments")
    if not isinstance(arguments, (str, dict)):
        arguments = "" if arguments is None else json.dumps(arguments)
    t0 = time.monotonic()
    outcome = tools.call(name, arguments)
    shown = arguments if isinstance(arguments, str) else json.dumps(arguments)
    step = Step(
        number=len(turn.steps) + 1,
        tool=name[:80],
        arguments=shown[:ARGUMENTS_SHOWN] + ("…" if len(shown) > ARGUMENTS_SHOWN else ""),
        summary=outcome.summary,
        chars=len(outcome.text),
        seconds=time.monotonic() - t0,
        error=outcome.error,
        result=outcome.text,
    )
    turn.steps.append(step)
    if on_step is not None:
        on_step(step)
    return {"role": "tool", "tool_call_id": str(call.get("id") or ""), "content": outcome.text}


def _tokens(res: ChatResult) -> int:
    usage = res.usage or {}
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool):
        return total
    parts = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
    return sum(p for p in parts if isinstance(p, int) and not isinstance(p, bool))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{'no' if n == 0 else n} {noun}s"
