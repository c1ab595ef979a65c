"""The panel's agent mode: one agent turn (:func:`rsql_magic.agent.loop.run_turn`) in the
panel's stream worker, its tools run on the kernel's main thread.

The worker makes the requests (client ``agent``, streamed: the client puts the tool calls
together from the stream's fragments) and hands each tool call to the main thread
(:mod:`.main_thread_calls`); the main thread is where the kernel's tools must run (rpy2,
sqlite3, frames cells change). A tool that cannot run there in time comes back to the model as
an error result; nothing ever runs on the worker.

Every step is shown as it happens: the tool, its arguments as the model wrote them, the
result's summary and size and the time it took, with the whole result folded under it. All of
it is the model's or the data's text: escaped, then sanitized, never live HTML. A proposed
cell shows in the panel (:class:`~rsql_magic.agent.proposal.ProposalView`: text, Accept, Reject;
Accept never runs it). Stop ends the turn at once and the request in flight with it: the
worker's hang-up closes its connection, from the moment it is made, so the proxy sees the
client go and settles the request as a dropped stream (billed for what was streamed). The turn
checks Stop between requests and while a tool waits for the main thread.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as W

from rsql_magic.agent.loop import Step
from rsql_magic.agent.loop import Turn as AgentTurn
from rsql_magic.agent.proposal import ProposalView
from rsql_magic.agent.tools import KernelTools, ToolResult, result_html
from rsql_magic.client import ChatResult
from rsql_magic.errors import StreamStopped
from rsql_magic.operations import AgentOperation
from rsql_magic.sanitize import clean_html

from .main_thread_calls import HandOffFailed, MainThreadCalls
from .stream import AnswerCall

__all__ = ["AgentRun", "MainThreadTools", "step_html"]

_POLL_S = 0.05  # how often a waiting worker looks at Stop


class MainThreadTools:
    """The turn's tools as the loop sees them: each call handed to the main thread."""

    def __init__(
        self, tools: KernelTools, calls: MainThreadCalls, stopped: Callable[[], bool]
    ) -> None:
        self.tools, self.calls, self.stopped = tools, calls, stopped
        self._specs = tools.specs()  # taken on the main thread, with the tools

    def specs(self) -> list[dict[str, Any]]:
        return self._specs

    def call(self, name: str, arguments: str | dict[str, Any]) -> ToolResult:
        try:
            return self.calls.call(lambda: self.tools.call(name, arguments), self.stopped)
        except HandOffFailed as e:
            return ToolResult(f"{name} did not run: {e}", f"not run: {e.reason}", True)


def _unless_stopped(request: Callable[[], ChatResult], stopped: Callable[[], bool]) -> ChatResult:
    """`request()` in a thread of its own, waited for until it returns or Stop comes.

    On Stop the turn ends here at once, whatever the request is doing; the worker's hang-up
    (its ``on_connect``) has closed the request's connection meanwhile, which ends the read in
    that thread and the request at the proxy. A request with no connection to close (the
    in-process engine) runs to its end, within the client's timeout, and its answer is
    dropped."""
    box: list[ChatResult | BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            box.append(request())
        except BaseException as e:  # handed to the worker, raised there
            box.append(e)
        finally:
            done.set()

    threading.Thread(target=run, name="rsql-agent-request", daemon=True).start()
    while not done.wait(_POLL_S):
        if stopped():
            raise StreamStopped
    out = box[0]
    if isinstance(out, BaseException):
        raise out
    return out


def _took(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def step_html(step: Step) -> str:
    """One step's line: hostile text (tool, arguments, summary), escaped then sanitized."""
    mark = "⚠ " if step.error else ""
    return clean_html(
        "<div class='rsql-step' style='font-size:85%'>"
        f"{step.number}. {mark}<code>{html.escape(step.tool)}</code> "
        f"<code>{html.escape(step.arguments)}</code> → {html.escape(step.summary)} "
        f"({step.chars:,} chars, {_took(step.seconds)})</div>"
    )


def _line(text: str) -> str:
    return clean_html(f"<div style='font-size:85%;opacity:.75'>{html.escape(text)}</div>")


@dataclass
class AgentRun:
    """One agent turn in the panel: its tools, its record (the loop's Turn) and its widgets."""

    tools: KernelTools
    box: Any  # the turn's steps: a VBox above the answer
    record: AgentTurn = field(default_factory=AgentTurn)
    steps: list[Any] = field(default_factory=list)  # a widget per step, in order

    @classmethod
    def start(cls, session: Any, client: Any, batch: bool, model: str | None) -> AgentRun:
        """On the main thread: the tools (proposals shown in the panel) and the steps box."""
        box = W.VBox([W.HTML(_line(f"agent · {model or 'the default model'}"))])
        box.add_class("rsql-agent-steps")
        run = cls(KernelTools(session, client=client, batch=batch), box)
        run.tools.show = run.show_proposal
        run.tools.serving(run.record)  # a proposal names the request whose answer made it
        return run

    def show_proposal(self, view: ProposalView) -> None:
        self.box.children = (*self.box.children, view.widget)

    def add_step(self, step: Step) -> None:
        """In the worker, as each tool call returns: its line, its result folded under it."""
        result = ToolResult(step.result, step.summary, step.error)
        fold = W.Accordion(children=[W.HTML(result_html(result))], selected_index=None)
        fold.set_title(0, f"result of step {step.number} ({step.chars:,} chars)")
        line = W.VBox([W.HTML(step_html(step)), fold])
        self.steps.append(line)
        self.box.children = (*self.box.children, line)

    def end(self) -> None:
        turn = self.record
        done = turn.counted()
        self.box.children = (*self.box.children, W.HTML(_line(done)))

    def call(
        self, operation: AgentOperation, calls: MainThreadCalls, stopped: Callable[[], bool]
    ) -> AnswerCall:
        """The worker's call for this turn: runs the whole turn (`operation`'s, each request
        streamed and each tool call handed to the main thread), returns it as one answer (the
        whole turn's tokens and cost); a Stop raises StreamStopped."""
        tools = MainThreadTools(self.tools, calls, stopped)

        def run(*, on_connect: Any, on_response: Any, on_retry: Any, **_hooks: Any) -> ChatResult:
            def one(convo: list[dict[str, Any]], specs: list[dict[str, Any]]) -> ChatResult:
                # streamed, so that Stop's hang-up ends the request at the proxy too
                hooks = {"on_connect": on_connect, "on_response": on_response}
                return _unless_stopped(
                    lambda: operation.ask(convo, specs, stream=True, on_retry=on_retry, **hooks),
                    stopped,
                )

            try:
                operation.run(tools, self.record, ask=one, on_step=self.add_step, stopped=stopped)
            finally:
                if stopped():
                    self.record.ended = "stopped"
                self.end()
            if self.record.ended == "stopped":
                raise StreamStopped
            operation.no_answer(self.record)
            return self.record.result()

        return run
