"""An agent turn: the model calls read-only tools over several steps, then answers.

What ``%%ask --agent``, the chat panel's agent mode and rsql-eval's agent mode do: one
:class:`AgentRequest` handed to :class:`AgentOperation`, which makes each request of the turn
along the request's route (client ``agent``: a policy window that turns agent mode off refuses
it; ``RSQLMagic``'s sampling), puts the agent's rules after the context (the kernel's tools),
runs :func:`rsql_magic.agent.loop.run_turn` within the turn's step and token limits, says so
when a model cannot call tools, and gives a turn stopped by its step limit an answer that says
why. The tools (the kernel's, handed to the main thread, or rsql-eval's warehouse tools) and
showing the steps are the caller's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rsql_magic.agent.loop import Ask, Step, ToolBox, Turn, run_turn
from rsql_magic.client import ChatResult
from rsql_magic.errors import ProxyError
from rsql_magic.prompt import AGENT
from rsql_magic.session import Route, Session

__all__ = ["AgentOperation", "AgentRequest"]

# a tool-using request the upstream could not take: the words providers use for it
_NO_TOOLS = ("tool", "function call", "function_call")


@dataclass(frozen=True)
class AgentRequest:
    """One agent turn.

    ``messages``: the turn's first messages (the context's system message and the question,
    or rsql-eval's rules and question); ``route``: how its requests go; ``model``: the model
    to ask (None: the proxy's default). ``kernel_rules``: the agent's rules for the kernel's
    tools (:data:`rsql_magic.prompt.AGENT`) go after the first message (rsql-eval's messages
    carry their own). ``max_steps`` and ``max_tokens``: the turn's limits (None:
    ``RSQLMagic.agent_max_steps`` / ``agent_max_tokens``). ``no_cache``: past the proxy's
    answer cache. ``instead``: what the user can do when the model cannot call tools, said
    with the proxy's refusal ("": the refusal as the proxy worded it).
    """

    messages: tuple[dict[str, Any], ...]
    route: Route
    model: str | None = None
    kernel_rules: bool = True
    max_steps: int | None = None
    max_tokens: int | None = None
    no_cache: bool = False
    instead: str = ""


class AgentOperation:
    """One agent turn (see the module docstring)."""

    def __init__(self, session: Session, request: AgentRequest) -> None:
        self.session, self.request = session, request
        settings = session.config.ask
        self.max_steps = request.max_steps or settings.agent_max_steps
        self.max_tokens = request.max_tokens or settings.agent_max_tokens

    def messages(self) -> list[dict[str, Any]]:
        """What the turn starts from: the request's messages, with the kernel's agent rules
        after the first when it asks for them."""
        first = list(self.request.messages)
        if not self.request.kernel_rules:
            return first
        return [*first[:1], {"role": "system", "content": AGENT}, *first[1:]]

    def ask(
        self, convo: list[dict[str, Any]], specs: list[dict[str, Any]], **hooks: Any
    ) -> ChatResult:
        """One request of the turn, with the tools' definitions (``hooks``: streaming and
        connection hooks of :meth:`ProxyClient.chat`)."""
        ask = self.session.config.ask
        return self.request.route.chat(
            self.session,
            convo,
            client_kind="agent",
            model=self.request.model,
            tools=specs,
            no_cache=self.request.no_cache,
            temperature=ask.temperature,
            max_tokens=ask.max_tokens,
            **hooks,
        )

    def run(
        self,
        tools: ToolBox,
        turn: Turn,
        *,
        ask: Ask | None = None,
        on_step: Callable[[Step], None] | None = None,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Turn:
        """Run the turn with `tools`, filling `turn` (what was done and spent stays there when
        a request fails). `ask`: the request as the caller makes it (default: :meth:`ask`);
        `on_step`: each tool call as it returns; `stopped`: the user's Stop. A refusal reaches
        the caller as the ProxyError it is, worded for agent mode when the model cannot call
        tools."""
        try:
            run_turn(
                ask or self.ask,
                self.messages(),
                tools,
                max_steps=self.max_steps,
                max_tokens=self.max_tokens,
                on_step=on_step,
                stopped=stopped,
                turn=turn,
            )
        except ProxyError as e:
            no_tools = any(w in e.message.lower() for w in _NO_TOOLS)
            if self.request.instead and e.status == 400 and no_tools:
                model = self.request.model or "this model"
                e.message = (
                    f"agent mode needs a model that can call tools, and {model} could not: "
                    f"{e.message}. {self.request.instead}."
                )
            raise
        return turn

    def no_answer(self, turn: Turn) -> None:
        """A turn its step limit ended before any answer gets one that says so."""
        if turn.ended == "steps" and not turn.answer:
            turn.answer = (
                f"*(no answer: the model was still calling tools after {self.max_steps} "
                "requests, the turn's step limit `RSQLMagic.agent_max_steps`)*"
            )
