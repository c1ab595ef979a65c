"""The chat panel: what its widgets do.

:mod:`.widgets` builds and shows, :mod:`.stream` streams each answer in a worker thread, and
everything the panel does as %%ask and %%sql_ai do is the kernel's operations
(:mod:`rsql_magic.operations`: Send is asking, Run SQL the SQL question, agent mode an agent
turn) on its :class:`~rsql_magic.session.Session` (settings, the model, the proxy client,
batch runs and the 429 policy, the context, the next cell): one ``%config RSQLMagic.*`` serves
the magics and the chat.

Context is collected on the kernel's main thread, where clicks and the input box's events
arrive (R through rpy2 must stay on the main thread, and a cell cannot change a frame
mid-collection); only the answer streams in the worker.

Agent mode (the Agent switch): the worker runs a whole agent turn (:mod:`.agent`), its
requests in the worker and each tool call handed back to the main thread
(:mod:`.main_thread_calls`).

A course (issue 75): the panel says when tutor mode is in force (with the admin's message) and
when a course log keeps its conversations, over the log; in tutor mode the Agent switch is off
unless the admin allows it, and SQL from an answer does not run. Insert, and Insert query cell
after Run SQL, ask the frontend extension to insert the cell (a click runs no cell), which
marks it as the assistant's (``rsql.provenance``); without the extension the code is shown to
copy.

Enter. ipywidgets 8's Text sends a ``submit`` event on Enter and, with
``continuous_update=False``, the value on Enter *or on blur*. Sending on every value change
would also send when the user merely clicks elsewhere, so the panel sends on ``submit``: the
value update that Chrome sends right after the keypress is awaited briefly (it is the fresh
text), else the already-synced value is sent; a box still empty then waits a few seconds more
for it, since a busy kernel can take the update in late.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rsql_magic.client import ProxyClient
from rsql_magic.context import text_tokens
from rsql_magic.context.frames import find_frames
from rsql_magic.context.named import listing, named_connection, named_frames, shown_name
from rsql_magic.errors import ProxyError, UsageError
from rsql_magic.operations import (
    AgentOperation,
    AgentRequest,
    AskOperation,
    AskRequest,
    ContextChoice,
    Route,
    context_request,
    unreadable_message,
)
from rsql_magic.privacy import ContextPolicy, context_report, preview, remember_me
from rsql_magic.render import footer
from rsql_magic.sanitize import plain_text
from rsql_magic.session import ContextRequest, Course, Session
from rsql_magic.session.config import course_of
from rsql_magic.session.notebook import in_execute_request

from .actions import AnswerActions
from .agent import AgentRun
from .main_thread_calls import MainThreadCalls
from .sources import FRAMES, JUPYSQL, has_r_session, sql_connections, sql_source
from .stream import StreamWorker
from .text import error_text, usage_line
from .widgets import (
    Turn,
    footer_html,
    note_html,
    notice_html,
    usage_html,
)

__all__ = ["ChatPanel"]

_SUBMIT_GRACE_S = 0.3  # how long a submit waits for its trailing value update
# how long a submit whose box is still empty after the grace goes on waiting for that update: a
# busy kernel can take it in later than the grace (seen under load: the question stayed in the
# box, never sent); past this, a value update is a blur, not the Enter's
_SUBMIT_LATE_S = 5.0


def _picker_value(sql: str) -> str:
    """The SQL picker's value for what ``--sql`` names."""
    return {"jupysql": JUPYSQL, "frames": FRAMES}.get(sql, sql)


def _check_preselection(
    shell: Any, frames: list[str] | None, sql: str | None, include_r: bool | None
) -> None:
    """UsageError when ``%ask_chat --df / --sql / --r`` (or ``chat()``'s arguments) name what
    the pickers would not offer, as %%ask's ``--df`` and ``--sql`` do: a panel that silently
    asked without it would answer about something else (issue 77)."""
    ns = shell.user_ns
    if frames:
        named_frames("--df", frames, ns)  # raises, naming the frames there are
    if sql:
        offered = sql_connections(ns)
        if _picker_value(sql) not in [value for _, value in offered]:
            named_connection("--sql", sql, ns)  # raises for a name that is nothing
            raise UsageError(
                f"--sql {shown_name(sql)}: the panel's SQL picker does not offer it; it "
                f"offers {listing([label for label, _ in offered]) or 'nothing here'}"
            )
    if include_r and not has_r_session(shell):
        raise UsageError(
            "--r: there is no R session in this kernel to include (start one first: "
            "%load_ext rpy2.ipython, then an %R cell)"
        )


class ChatPanel(AnswerActions):
    """The chat panel. Display it (it has a mimebundle) or show ``panel.widget``.

    ``model``: the model to ask (default: the session's choice); ``frames``: DataFrame names
    preselected; ``sql``: a connection variable's name (or "jupysql", "frames");
    ``include_r``: tick the R session; ``history_tokens``: the budget for earlier turns
    (default: ``RSQLMagic.context_tokens``, the context's own budget); ``client``: a proxy
    client to use instead of the session's.
    """

    def __init__(
        self,
        shell: Any = None,
        *,
        model: str | None = None,
        frames: list[str] | None = None,
        sql: str | None = None,
        include_r: bool | None = None,
        history_tokens: int | None = None,
        client: ProxyClient | None = None,
        refresh_usage: bool = True,
    ) -> None:
        # what %ask_chat's options name, looked up before anything is built or opened
        _check_preselection(Session.of(shell).shell, frames, sql, include_r)
        super().__init__()
        self.session = Session.of(shell)
        self.shell = self.session.shell
        self._client_override = client
        self._model = model
        self.turns: list[Turn] = []
        self.history: list[dict[str, str]] = []  # completed user / assistant messages
        self.last_messages: list[dict[str, str]] | None = None
        self.last_request: ContextRequest | None = None
        self.last_me: dict[str, Any] | None = None
        self.last_frame: Any = None
        self.dropped_messages = 0
        self.course = Course()  # as GET me said at the last usage refresh
        # where Insert puts cells: below the cell that opened the panel (its id), and the
        # channel to the frontend that inserts them, opened from that running cell
        self.home_cell = (
            self.session.cells.origin().cell if in_execute_request(self.shell) else None
        )
        self.session.cells.channel.open()
        # history gets its own share of the context's size: the context stays as %%ask sends it
        budget = self.session.config.ask.context_tokens
        self.history_tokens = int(history_tokens if history_tokens is not None else budget)
        self._lock = threading.Lock()
        self._armed = 0.0  # until when an Enter waits for its value (0: none pending)
        self._clearing = False
        self.worker = StreamWorker(self._on_finish, self._on_idle)
        # agent mode's tool calls, from the worker to the main thread (the kernel's loop)
        self.main_calls = MainThreadCalls(self._kernel_loop)
        self._wire()
        self.refresh_sources()
        self._preselect(frames, sql, include_r)
        if refresh_usage:
            threading.Thread(target=self.refresh_usage, daemon=True).start()

    def _wire(self) -> None:
        self.new_btn.on_click(lambda _b: self.new_chat())
        self.refresh_btn.on_click(lambda _b: self.refresh_sources())
        self.context_btn.observe(self._on_context_toggle, "value")
        self.input.on_msg(self._on_input_msg)
        self.input.observe(self._on_value, "value")
        self.send_btn.on_click(lambda _b: self.send())
        self.stop_btn.on_click(lambda _b: self.stop())

    def _preselect(self, frames: list[str] | None, sql: str | None, include_r: bool | None) -> None:
        """Tick what ``%ask_chat --df / --sql / --r`` (or ``chat()``'s arguments) name, each
        one checked before the panel was built (:func:`_check_preselection`)."""
        if frames:
            self.frames.value = tuple(frames)
        if sql:
            self.sql.value = _picker_value(sql)
        if include_r is not None and not self.r_box.disabled:
            self.r_box.value = bool(include_r)

    def vanished_picks(self) -> list[str]:
        """What the pickers had chosen and the notebook no longer has (a frame deleted, a
        connection rebound), said before anything is sent: the pickers are re-read at once."""
        ns = self._ns()
        frames = set(find_frames(ns))
        gone = [f"DataFrame {shown_name(f)}" for f in self.frames.value if f not in frames]
        sql = self.sql.value
        if sql and sql not in (JUPYSQL, FRAMES) and sql not in [v for _, v in sql_connections(ns)]:
            gone.append(f"connection {shown_name(sql)}")
        return gone

    # -- the session's settings -------------------------------------------------------------

    def client(self) -> ProxyClient:
        """The proxy client: the one given, else the session's."""
        return self._client_override or self.session.config.client()

    def _client_or_unavailable(self) -> ProxyClient:
        """For building messages: a missing proxy is reported when something is sent."""
        try:
            return self.client()
        except ProxyError as e:
            return ProxyClient(description="no proxy", unavailable=e)

    @property
    def model(self) -> str | None:
        return self.session.config.model(self._model)

    @property
    def busy(self) -> bool:
        return self.worker.busy

    def _kernel_loop(self) -> Any:
        """The main thread's event loop, where ipykernel runs cells and widget messages."""
        return getattr(getattr(self.shell, "kernel", None), "io_loop", None)

    # -- context sources -------------------------------------------------------------------

    def sql_connections(self) -> list[tuple[str, str]]:
        """``(label, value)`` for the SQL picker: connection variables, JupySQL's, frames."""
        return sql_connections(self._ns())

    def refresh_sources(self) -> None:
        """Re-scan frames, connections and the R session, keeping what is still there."""
        names = list(find_frames(self._ns()))
        keep = tuple(v for v in self.frames.value if v in names)
        self.frames.options = names
        self.frames.value = keep
        options = [("none", "")] + self.sql_connections()
        cur = self.sql.value
        self.sql.options = options
        self.sql.value = cur if cur in [v for _, v in options] else ""
        has_r = has_r_session(self.shell)
        self.r_box.disabled = not has_r
        if not has_r:
            self.r_box.value = False
        self.r_box.description = "R session" if has_r else "R session (none)"

    # -- messages --------------------------------------------------------------------------

    def _context_choice(self) -> ContextChoice:
        """The context the panel's pickers choose, as %%ask's options would: each one picked is
        named, so one that cannot be read stops the question (the request's ``unreadable``)."""
        sql = sql_source(self.sql.value, self._ns())
        return ContextChoice(
            frames=tuple(self.frames.value) or None,
            include_r=bool(self.r_box.value),
            r_named=bool(self.r_box.value),
            sql=sql,
            lang=self._lang(),
            no_data=bool(self.no_data.value),
            # with R or SQL chosen, frames only when picked (as %%ask does with --r / --sql)
            named_frames_only=bool(self.r_box.value or sql),
            # typed in a box, not a cell: braces are the question's own text, and no cell
            # precedes it, so only a question about an error brings the last one along
            references=False,
            recent_error=False,
        )

    def chat_messages(
        self, question: str, client: ProxyClient | None = None
    ) -> tuple[list[dict[str, str]], list[str]]:
        """What one turn sends: the system prompt with the live context (the session's context
        request, as %%ask builds it), the history trimmed to ``history_tokens`` (oldest
        first), the question. ``client``: the proxy whose admin policy applies (default: the
        panel's). Returns the messages and the notes for the user."""
        if client is None:
            client = self._client_or_unavailable()
        request = context_request(self.session, question, client, self._context_choice())
        self.last_request = request
        system, user = request.messages[0], request.messages[1]
        with self._lock:
            history = list(self.history)
        # drop whole exchanges, oldest first, until the history fits its budget
        dropped = 0
        while history and sum(text_tokens(m["content"]) for m in history) > self.history_tokens:
            history = history[2:]
            dropped += 2
        self.dropped_messages = dropped
        notes = [*request.unreadable, *request.notes]
        if dropped:
            notes.append(
                f"{dropped} earlier messages left out (history budget {self.history_tokens} tokens)"
            )
        return [system, *history, user], notes

    # -- input -----------------------------------------------------------------------------

    def _on_input_msg(self, _widget: Any, content: dict, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("event") != "submit":
            return
        self._armed = time.monotonic() + _SUBMIT_LATE_S
        loop = getattr(getattr(self.shell, "kernel", None), "io_loop", None)
        if loop is None:
            self._submit_now()
            return
        # the fresh value usually follows the submit event; if none comes, the box's
        # value was already synced (e.g. on blur) and is sent as it is
        loop.call_later(_SUBMIT_GRACE_S, self._submit_now)

    def _on_value(self, change: dict) -> None:
        if self._clearing:
            return
        if self._armed:
            self._submit_now()

    def _submit_now(self) -> None:
        if not self._armed:
            return
        if self.input.value.strip():
            self._armed = 0.0
            self.send()
        elif time.monotonic() >= self._armed:
            self._armed = 0.0  # an Enter on an empty box: nothing to send
        # else the box is empty so far: its value may still come, and is sent then

    def send(self, question: str | None = None) -> bool:
        """Send ``question`` (default: the input box). Returns False when nothing was sent."""
        q = (self.input.value if question is None else question).strip()
        if not q:
            return False
        if self.busy:
            self.set_status("An answer is still streaming: wait for it or press Stop.", "warn")
            return False
        gone = self.vanished_picks()
        self.refresh_sources()
        if gone:  # asked without them, the answer would be about something else
            self.set_status(
                f"Not sent: the context picked is gone from the notebook ({', '.join(gone)}). "
                "Pick again (the pickers are up to date now), or run the cell that defines it.",
                "error",
            )
            return False
        self._clearing = True
        try:
            self.input.value = ""
        finally:
            self._clearing = False
        try:
            # the route: the panel's client, the model checked before anything is collected
            # or sent, the origin taken here, on the kernel's main thread (the answer streams
            # in a worker)
            operation = AskOperation(
                self.session,
                AskRequest(
                    q,
                    model=self._model,
                    client_kind="chat",
                    replayed=False,
                    stream=True,
                    client=self.client(),
                    in_worker=True,
                ),
            )
            messages, notes = self.chat_messages(q, operation.route.client)
            if self.last_request is not None and self.last_request.unreadable:
                raise UsageError(unreadable_message(self.last_request.unreadable))
        except (ProxyError, UsageError) as e:
            self.set_status(f"rsql: {e}", "error")
            self._put_back(q)
            return False
        turn = self.add_turn(q)
        self.turns.append(turn)
        turn.notes = notes
        self.last_messages = messages
        self.set_status("; ".join(notes), "warn" if notes else "info")
        self.stop_btn.layout.display = ""
        if self.agent_btn.value:
            self._start_agent(turn, operation.route, messages, operation.model)
            return True
        self.worker.start(turn, lambda **hooks: operation.send(messages, **hooks))
        return True

    def _put_back(self, question: str) -> None:
        """A question that was not sent goes back into the box, to send again once fixed."""
        if self.input.value:
            return
        self._clearing = True
        try:
            self.input.value = question
        finally:
            self._clearing = False

    def _start_agent(
        self, turn: Turn, route: Route, messages: list[dict[str, str]], model: str | None
    ) -> None:
        """Agent mode: the whole turn in the worker; the tools, made here, run on this (the
        main) thread; its limits are the session's ``agent_max_steps`` / ``agent_max_tokens``."""
        run = AgentRun.start(self.session, route.client, route.batch, model)
        turn.agent = run
        self.add_steps(turn, run.box)
        operation = AgentOperation(
            self.session,
            AgentRequest(
                tuple(messages), route, model=model, instead="Pick another model, or turn Agent off"
            ),
        )
        call = run.call(operation, self.main_calls, lambda: self.worker.stopping)
        self.worker.start(turn, call)

    def stop(self) -> None:
        """Stop the streaming answer: flag it, and end the HTTP response now."""
        if not self.busy:
            return
        self.set_status("Stopping…")  # before the hang-up: the worker then says "Stopped."
        self.worker.stop()

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until the current answer is finished (for scripts and tests). On the main
        thread, an agent turn's tool calls are run meanwhile: the wait blocks the loop that
        would otherwise run them."""
        if threading.current_thread() is not self.main_calls.main:
            return self.worker.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.main_calls.pump()
            left = 0.02 if deadline is None else min(0.02, deadline - time.monotonic())
            if self.worker.wait(max(0.0, left)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def new_chat(self) -> None:
        """Forget the conversation (a streaming answer is stopped first)."""
        if self.busy:
            self.stop()
            self.wait(10)
        with self._lock:
            self.history.clear()
        self.turns.clear()
        self.clear_log()
        self.set_status("")

    def _on_finish(self, turn: Turn) -> None:
        """In the worker, once the turn's answer is complete, stopped or failed."""
        if turn.state == "done":
            with self._lock:
                self.history += [
                    {"role": "user", "content": turn.question},
                    {"role": "assistant", "content": turn.answer},
                ]
            self._add_actions(turn)
            if not turn.notes:
                self.set_status("")
            self._course_note(turn)
        elif turn.state == "stopped":
            self.set_status("Stopped.")  # a stopped answer is no context for later turns
            self._add_actions(turn)
            if turn.agent is not None and turn.agent.record.requests:
                # what the stopped turn did spend, its whole tokens and cost
                spent = footer(turn.agent.record.result())
                turn.footer.value = footer_html(f"stopped · {spent}")
        elif turn.error is not None:
            self.set_status(error_text(turn.error), "error")
        self.stop_btn.layout.display = "none"

    def _course_note(self, turn: Turn) -> None:
        """Under the first answer of the kernel session that a course log keeps: its notice
        (tutor mode is over the log already, and in each footer)."""
        try:
            client = self.client()
        except ProxyError:
            return
        lines = self.session.answer_notices(turn.result, client, tutor=False)
        if lines:
            turn.footer.value += note_html(" ".join(lines))

    def _on_idle(self, _turn: Turn) -> None:
        self.refresh_usage()

    def refresh_usage(self) -> None:
        """The usage line from ``GET me`` (runs in a worker thread: it is an HTTP call)."""
        try:
            client = self.client()
            me = client.me()
        except ProxyError as e:
            self.usage.value = usage_html(str(e)[:120], unavailable=True)
            return
        except Exception as e:  # the usage line must never take the panel down
            self.usage.value = usage_html(type(e).__name__, unavailable=True)
            return
        self.last_me = me if isinstance(me, dict) else None
        remember_me(client, me)  # the admin's policy comes with it: keep it fresh
        # the model this panel asks: its own, the configured one, else the user's default
        model = self.session.config.model(self._model, client=client)
        self.usage.value = usage_html(usage_line(me, model) if isinstance(me, dict) else "")
        self.show_course(course_of(me))

    def show_course(self, course: Course) -> None:
        """Say what the course's rules are (tutor mode with the admin's message, the course
        log's notice) over the log; in tutor mode the Agent switch is off unless allowed."""
        self.course = course
        lines = []
        if course.tutor is not None:
            lines += [course.tutor.line(), f"In tutor mode {course.tutor.details()}."]
        if course.log is not None:
            lines.append(course.log.line())
        self.notice.value = notice_html(lines)
        agent_off = course.tutor is not None and not course.tutor.agent
        if agent_off:
            self.agent_btn.value = False
        self.agent_btn.disabled = agent_off
        self.agent_btn.tooltip = (
            "Agent tools are off in tutor mode (the course's admin decides)"
            if agent_off
            else "Let the assistant call read-only tools in this kernel before it answers "
            "(list and describe frames, read-only SQL, the last error, propose a cell)"
        )

    # -- the context view ------------------------------------------------------------------

    def context_text(self, question: str | None = None) -> str:
        """What a question would send (default: the input box's, else the last one asked):
        the same report as ``%%ask --show-context``. Nothing goes to the model."""
        q = (question if question is not None else self.input.value).strip()
        if not q:
            q = self.turns[-1].question if self.turns else "(your next question)"
        client = self._client_or_unavailable()
        messages, notes = self.chat_messages(q, client)
        request = self.last_request
        head = f"Context for: {q}" + (f"\nnotes: {'; '.join(notes)}" if notes else "")
        return context_report(
            messages,
            request.context if request else None,
            request.policy if request else ContextPolicy(),
            preview(client, messages),
            header=head,
            no_data=bool(self.no_data.value),
        )

    def show_context(self, show: bool = True) -> str:
        """Open (or close) the context view; returns the text shown."""
        if not show:
            self.show_context_text(None)
            return ""
        self.refresh_sources()
        text = self.context_text()
        self.show_context_text(plain_text(text))
        return text

    def _on_context_toggle(self, change: dict) -> None:
        try:
            self.show_context(bool(change.get("new")))
        except Exception as e:  # a callback must not die silently
            self.set_status(f"rsql: context view failed: {type(e).__name__}: {e}", "error")
