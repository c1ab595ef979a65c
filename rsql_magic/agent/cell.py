"""``%%ask --agent`` in a cell: the turn's steps shown as they happen, then its answer.

Each step is a line: the tool, its arguments as the model wrote them, what came back (its
summary and size) and how long it took. Everything on that line is the model's text or comes
from the user's data, so it is shown through the same sanitizer as an answer, as code spans.
The whole results stay on the magic (``RSQLMagic.last_turn``) for a look afterwards.

The notebook's interrupt (the stop button) is the turn's Stop: it ends the request in flight
(the proxy charges it by the dropped-stream rule) and the turn, and the cell shows what was
done and spent until then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from IPython.display import display as _display

from rsql_magic import render

from .loop import Step, Turn


def display(bundle: dict[str, Any], **kw: Any) -> Any:
    """IPython's display, typed (IPython has no annotations); every bundle here is made safe
    by render first."""
    return _display(bundle, **kw)  # type: ignore[no-untyped-call]  # IPython has no annotations


def step_line(step: Step) -> str:
    """One step as a Markdown list item (hostile text inside code spans, one line)."""
    took = f"{step.seconds * 1000:.0f} ms" if step.seconds < 1 else f"{step.seconds:.1f} s"
    mark = "⚠ " if step.error else ""
    return (
        f"{step.number}. {mark}`{_span(step.tool)}` `{_span(step.arguments)}` → "
        f"{render.table_cell(step.summary)} ({step.chars:,} chars, {took})"
    )


def _span(text: str) -> str:
    """Text for inside a code span: one line, no backtick to close it early."""
    return render.table_cell(text).replace("`", "ʼ") or " "


class StepsView:
    """The steps of a turn, in one display that grows as they come."""

    def __init__(self, model: str) -> None:
        self.lines = [f"**rsql agent** · {render.table_cell(model or 'the default model')}"]
        self.handle: Any = display(render.markdown_bundle(self.lines[0]), raw=True, display_id=True)

    def add(self, step: Step) -> None:
        self.lines.append(step_line(step))
        self.show()

    def end(self, turn: Turn) -> None:
        done = turn.counted()
        self.lines.append(f"\n*{render.table_cell(done)}*")
        self.show()

    def show(self) -> None:
        md = "\n".join(self.lines)
        if self.handle is not None:
            self.handle.update(render.markdown_bundle(md), raw=True)


# runs one turn: each step handed to the callable given as it returns, `Turn` filled as it goes
RunTurn = Callable[[Callable[[Step], None], Turn], Any]


def run_agent_cell(
    run: RunTurn, *, model: str, render_mode: str, no_answer: Callable[[Turn], None]
) -> Turn:
    """Run one turn in the cell (`run`: the agent turn operation's, with the cell's step
    display), showing its steps, then its answer with a footer that counts the whole turn.
    `no_answer` gives a turn its step limit ended an answer that says so. A refusal by the
    proxy reaches the caller as the ProxyError it is."""
    view = StepsView(model)
    turn = Turn()  # filled as the turn goes: what was done and spent, also if it is stopped
    try:
        run(view.add, turn)
    except KeyboardInterrupt:  # the notebook's stop button: the turn ends here
        turn.ended = "stopped"
        view.end(turn)
        if turn.requests:
            display(render.mimebundle("", turn.result(), mode=render_mode), raw=True)
        return turn
    view.end(turn)
    no_answer(turn)
    display(render.mimebundle(turn.answer, turn.result(), mode=render_mode), raw=True)
    return turn
