"""The chat panel: plain ipywidgets 8, so it works in JupyterLab 4 and Notebook 7 with no JS build.

Threads. ipywidgets callbacks (clicks, the input box) run on the kernel's main thread, the
thread that also runs cells. Context is collected there (R through rpy2 must stay on the main
thread, and a cell cannot change a frame mid-collection), then the answer streams in a worker
thread that updates the widgets (ipykernel sends widget state from any thread). The main thread
is free meanwhile, so the Stop click arrives: it sets a flag and shuts the HTTP connection's
socket down, which ends the read in the worker and tells the proxy the client is gone (the proxy
then cancels the upstream call and frees the user's concurrency slot).

Enter. ipywidgets 8's Text sends a ``submit`` event on Enter and, with
``continuous_update=False``, the value on Enter *or on blur*. Sending on every value change
would also send when the user merely clicks elsewhere, so the panel sends on ``submit``: the
value update that Chrome sends right after the keypress is awaited briefly (it is the fresh
text), else the already-synced value is sent.
"""

from __future__ import annotations

import html
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as W

from rsql_magic import render
from rsql_magic.client import ChatResult, ProxyClient, ProxyError
from rsql_magic.context import build_context, estimate_tokens
from rsql_magic.context.frames import find_frames
from rsql_magic.privacy import ContextPolicy, context_report, effective_policy, preview, remember_me
from rsql_magic.prompt import build_messages
from rsql_magic.sanitize import clean_html, plain_text

__all__ = ["ChatPanel", "Turn", "usage_line", "rate_limit_text"]

# connection objects the SQL picker offers, by the module their type comes from
_CONN_MODULES = ("sqlite3", "duckdb", "_duckdb", "sqlalchemy", "psycopg", "psycopg2", "sql.connection")
JUPYSQL = "%jupysql"
FRAMES = "%frames"
_SUBMIT_GRACE_S = 0.3  # how long a submit waits for its trailing value update

try:  # the words that make %%ask include the last error; same rule here
    from rsql_magic.magics import _ERROR_WORDS
except ImportError:  # pragma: no cover - magics is always there in this distribution
    _ERROR_WORDS = re.compile(r"\b(error|fail\w*|exception|traceback|wrong|broken)\b", re.I)


class _Stopped(Exception):
    """Raised inside the stream's delta callback once Stop was pressed."""


@dataclass
class Turn:
    """One question and its answer, with the widgets that show them."""

    question: str
    box: Any
    answer_html: Any
    footer: Any
    actions: Any
    extra: Any
    answer: str = ""
    result: ChatResult | None = None
    state: str = "streaming"  # streaming, done, stopped, error
    error: ProxyError | Exception | None = None
    code_area: Any = None
    code_note: Any = None
    buttons: dict[str, Any] = field(default_factory=dict)
    sql_result: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def code_blocks(self) -> list[tuple[str, str]]:
        return render.extract_code(self.answer)

    def first_code(self, lang: str | None = None) -> tuple[str, str] | None:
        blocks = render.extract_code(self.answer, lang)
        if lang:
            blocks = [b for b in blocks if b[0] in render._LANG_ALIASES.get(lang, {lang})]
        return blocks[0] if blocks else None


def _when(stamp: Any) -> str:
    """``2026-11-22T09:40:59Z`` -> ``09:40:59 UTC`` (the date only when it is not today)."""
    import datetime as dt

    text = str(stamp)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    except ValueError:
        return text
    today = dt.datetime.now(dt.timezone.utc).date()
    return t.strftime("%H:%M:%S UTC" if t.date() == today else "%Y-%m-%d %H:%M UTC")


def rate_limit_text(e: ProxyError) -> str:
    """One line for a 429: which limit, when it resets, when to retry."""
    parts = [f"Rate limited: {e.limit or 'a limit'} reached"]
    if e.reset:
        parts.append(f"resets {e.reset}" if str(e.reset).startswith("in ")
                     else f"resets at {_when(e.reset)}")
    if e.retry_after is not None:
        parts.append(f"retry in {e.retry_after:g} s")
    return "; ".join(parts) + ". The input stays open: ask again after the reset."


def usage_line(me: dict[str, Any]) -> str:
    """``alice · requests left: 58 of 60/minute, 990 of 1000/day · budget left: $4.90 of $5.00``."""
    parts: list[str] = []
    who = me.get("user")
    if who:
        parts.append(str(who))
    limits = [x for x in me.get("limits") or [] if isinstance(x, dict)]
    if limits:
        shown = []
        for lim in limits:
            s = f"{lim.get('remaining', '?')} of {lim.get('limit', '?')}"
            if lim.get("remaining") == 0 and lim.get("resets_at"):
                s += f" (resets {_when(lim['resets_at'])})"
            shown.append(s)
        parts.append("requests left: " + ", ".join(shown))
    elif "limits" in me:
        parts.append("requests: no limit")
    budget = me.get("budget")
    if isinstance(budget, dict) and budget.get("daily_usd") is not None:
        parts.append(
            f"budget left: ${float(budget.get('remaining_usd') or 0):.2f} of "
            f"${float(budget['daily_usd']):.2f} today"
        )
    elif "budget" in me:
        parts.append("budget: none set")
    return " · ".join(parts)


# Every HTML widget value built from text (answers, errors, footers, status, usage, results)
# goes through clean_html, also when the text was escaped: ipywidgets sets it as innerHTML,
# so one place that forgot to escape would run script.
def _md(text: str) -> str:
    """Model Markdown -> sanitized HTML for the panel; ipywidgets' HTML sets a 28 px line height
    for one-line labels, which spreads paragraphs apart: reset it for prose."""
    return clean_html(
        f"<div class='rsql-md' style='line-height:1.45'>{render.markdown_to_html(text)}</div>")


def _abort_response(resp: Any) -> None:
    """End a streaming HTTP response from another thread.

    ``shutdown`` wakes a ``recv`` blocked in the worker (a plain ``close`` from another
    thread does not reliably) and sends FIN, so the proxy sees the client go away.
    """
    sock = None
    try:
        sock = resp.fp.raw._sock  # http.client.HTTPResponse -> BufferedReader -> SocketIO
    except AttributeError:
        pass
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _in_execute_request(shell: Any) -> bool:
    """True while the kernel handles a cell (where ``set_next_input`` reaches the frontend).

    A payload set during a widget callback (a ``comm_msg``) is not sent anywhere by ipykernel
    until the *next* cell's reply, where it would insert the code in the wrong place.
    """
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return shell is not None  # terminal IPython honours set_next_input
    try:
        parent = kernel.get_parent("shell") or {}
    except Exception:
        return False
    return (parent.get("header") or {}).get("msg_type") == "execute_request"


class ChatPanel:
    """The chat panel. Display it (it has a mimebundle) or show ``panel.widget``.

    Settings (proxy, model, context budget, frame sampling, temperature) come from the
    ``RSQLMagic`` instance when ``%load_ext rsql_magic`` ran, so one ``%config RSQLMagic.*``
    serves the magics and the chat; otherwise its defaults and the usual proxy discovery.
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
        if shell is None:
            from IPython import get_ipython

            shell = get_ipython()
        self.shell = shell
        self._client_override = client
        self._model = model
        self.turns: list[Turn] = []
        self.history: list[dict[str, str]] = []  # completed user / assistant messages
        self.last_messages: list[dict[str, str]] | None = None
        self.last_me: dict[str, Any] | None = None
        self.last_frame: Any = None
        self.dropped_messages = 0
        self.last_policy: ContextPolicy | None = None
        self.last_context: Any = None
        ask = self._ask()
        budget = int(getattr(ask, "context_tokens", 3000))
        self.context_tokens = budget
        # history gets its own share of the same size: the context stays as %%ask sends it
        self.history_tokens = int(history_tokens if history_tokens is not None else budget)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._busy = False
        self._resp: Any = None
        self._thread: threading.Thread | None = None
        self._armed = False
        self._clearing = False
        self._build()
        self.refresh_sources()
        if frames:
            self.frames.value = tuple(f for f in frames if f in self.frames.options)
        if sql:
            values = [v for _, v in self.sql.options]
            key = {"jupysql": JUPYSQL, "frames": FRAMES}.get(sql, sql)
            if key in values:
                self.sql.value = key
        if include_r is not None and not self.r_box.disabled:
            self.r_box.value = bool(include_r)
        if refresh_usage:
            threading.Thread(target=self.refresh_usage, daemon=True).start()

    # -- settings shared with %%ask / %%sql_ai ---------------------------------------------

    def _magic(self, name: str) -> Any | None:
        registry = getattr(getattr(self.shell, "magics_manager", None), "registry", {})
        return registry.get(name)

    def _ask(self) -> Any | None:
        return self._magic("RSQLMagic")

    def _sqlm(self) -> Any:
        m = self._magic("SqlAIMagics")
        if m is None:
            from rsql_magic.sql.magics import SqlAIMagics

            m = SqlAIMagics(shell=self.shell)
        return m

    def client(self) -> ProxyClient:
        """A fresh client per request: the stream's response is tracked per instance."""
        if self._client_override is not None:
            c = self._client_override
            return ProxyClient(c.base_url, c.token, description=c.description, engine=c.engine,
                               timeout=c.timeout)
        ask = self._ask()
        if ask is not None and hasattr(ask, "client"):
            return ask.client()
        return ProxyClient.discover()

    @property
    def model(self) -> str | None:
        import os

        ask = self._ask()
        return self._model or getattr(ask, "model", None) or os.environ.get("RSQL_MODEL") or None

    @property
    def busy(self) -> bool:
        return self._busy

    # -- widgets ---------------------------------------------------------------------------

    def _build(self) -> None:
        self.title = W.HTML("<b>rsql chat</b>")
        self.usage = W.HTML("<span style='opacity:.7'>usage: …</span>")
        self.new_btn = W.Button(description="New chat", icon="plus", layout=W.Layout(width="auto"))
        self.new_btn.on_click(lambda _b: self.new_chat())
        header = W.HBox(
            [self.title, self.usage, self.new_btn],
            layout=W.Layout(justify_content="space-between", align_items="center"),
        )
        self.frames = W.SelectMultiple(
            options=[], rows=3, description="DataFrames",
            tooltip="None selected: those named in the question, else the most recent",
            layout=W.Layout(width="260px"),
        )
        self.no_data = W.Checkbox(False, description="schemas only", indent=False,
                                  layout=W.Layout(width="auto"))
        self.r_box = W.Checkbox(False, description="R session", indent=False,
                                layout=W.Layout(width="auto"))
        self.sql = W.Dropdown(options=[("none", "")], value="", description="SQL",
                              layout=W.Layout(width="260px"))
        self.refresh_btn = W.Button(icon="refresh", tooltip="Re-scan the notebook's variables",
                                    layout=W.Layout(width="36px"))
        self.refresh_btn.on_click(lambda _b: self.refresh_sources())
        # what leaves the kernel, after the context policy and the proxy's redaction
        self.context_btn = W.ToggleButton(False, description="Show context", icon="eye",
                                          tooltip="What the next question would send, and what "
                                          "is withheld", layout=W.Layout(width="auto"))
        self.context_btn.observe(self._on_context_toggle, "value")
        self.context_view = W.HTML("", layout=W.Layout(display="none", max_height="320px",
                                                       overflow_y="auto"))
        self.context_view.add_class("rsql-context")
        toggles = W.HBox(
            [self.frames, W.VBox([self.no_data, self.r_box]), self.sql, self.refresh_btn,
             self.context_btn],
            layout=W.Layout(align_items="flex-start", flex_flow="row wrap"),
        )
        self.log = W.VBox([], layout=W.Layout(max_height="520px", overflow_y="auto"))
        self.status = W.HTML("")
        self.input = W.Text(
            value="",
            placeholder="Ask about your data… (Enter sends)",
            continuous_update=False,
            layout=W.Layout(flex="1 1 auto", width="auto"),
        )
        self.input.on_msg(self._on_input_msg)
        self.input.observe(self._on_value, "value")
        self.send_btn = W.Button(description="Send", button_style="primary",
                                 layout=W.Layout(width="auto"))
        self.send_btn.on_click(lambda _b: self.send())
        self.stop_btn = W.Button(description="Stop", button_style="danger", icon="stop",
                                 layout=W.Layout(width="auto", display="none"))
        self.stop_btn.on_click(lambda _b: self.stop())
        inp = W.HBox([self.input, self.send_btn, self.stop_btn])
        self.widget = W.VBox(
            [header, toggles, self.context_view, self.log, self.status, inp],
            layout=W.Layout(border="1px solid #ccc", padding="6px", width="100%"),
        )
        self.widget.add_class("rsql-chat")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _set_status(self, text: str, kind: str = "info") -> None:
        color = {"error": "#b00020", "warn": "#8a5a00"}.get(kind, "inherit")
        self.status.value = clean_html(
            f"<div class='rsql-status rsql-{kind}' style='color:{color}'>{html.escape(text)}</div>"
        ) if text else ""

    # -- context sources -------------------------------------------------------------------

    def _ns(self) -> dict[str, Any]:
        return getattr(self.shell, "user_ns", {}) if self.shell is not None else {}

    def sql_connections(self) -> list[tuple[str, str]]:
        """``(label, value)`` for the SQL picker: connection variables, JupySQL's, frames."""
        from rsql_magic.sql.connections import jupysql_current, resolve

        out: list[tuple[str, str]] = []
        for name, obj in list(self._ns().items()):
            if name.startswith("_") or isinstance(obj, type):
                continue
            mod = type(obj).__module__ or ""
            if not mod.startswith(_CONN_MODULES):
                continue
            try:
                db = resolve(obj)
            except Exception:
                continue
            out.append((f"{name} ({db.dialect})", name))
        try:
            if jupysql_current() is not None:
                out.append(("JupySQL current connection", JUPYSQL))
        except Exception:
            pass
        if find_frames(self._ns()):
            out.append(("DataFrames (DuckDB)", FRAMES))
        return out

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
        from rsql_magic.context.rsession import r_session_exists

        loaded = getattr(getattr(self.shell, "extension_manager", None), "loaded", set())
        has_r = "rpy2.ipython" in loaded or r_session_exists()
        self.r_box.disabled = not has_r
        if not has_r:
            self.r_box.value = False
        self.r_box.description = "R session" if has_r else "R session (none)"

    def _sql_source(self) -> tuple[str, Any] | None:
        v = self.sql.value
        if not v or v == FRAMES:  # frames are described by the frame collector already
            return None
        if v == JUPYSQL:
            return ("JupySQL current connection", None)
        ns = self._ns()
        return (v, ns[v]) if v in ns else None

    # -- messages --------------------------------------------------------------------------

    def policy(self, client: ProxyClient | None) -> tuple[ContextPolicy, list[str]]:
        """The context policy in force: the admin's (from the proxy's ``me``) merged with
        ``RSQLMagic.context_policy``, as %%ask applies it; "schemas only" adds to it."""
        ask = self._ask()
        local = getattr(ask, "context_policy", None) or None
        return effective_policy(client, local)

    def build_messages(
        self, question: str, client: ProxyClient | None = None
    ) -> tuple[list[dict[str, str]], list[str]]:
        """What one turn sends: the system prompt with the live context (as %%ask builds it,
        under its budget and the context policy), the history trimmed to ``history_tokens``
        (oldest first), the question. ``client``: the proxy whose admin policy applies
        (default: the panel's)."""
        if client is None:
            try:
                client = self.client()
            except ProxyError as e:
                client = ProxyClient(description="no proxy", unavailable=e)
        pol, pnotes = self.policy(client)
        self.last_policy = pol
        ask = self._ask()
        ns = self._ns()
        sql = self._sql_source()
        lang = "sql" if self.sql.value else ("r" if self.r_box.value else "python")
        selected = list(self.frames.value) or None
        last_err = None
        if ask is not None and _ERROR_WORDS.search(question):
            try:
                last_err = ask._last_error()
            except Exception:
                last_err = None
        ctx = build_context(
            question=question,
            ns=ns,
            frames=selected,
            recent_frames=getattr(ask, "_recent", None),
            include_r=bool(self.r_box.value),
            sql=sql,
            last_error=last_err,
            no_data=bool(self.no_data.value),
            budget_tokens=self.context_tokens,
            # with R or SQL chosen, frames only when picked (as %%ask does with --r / --sql)
            max_frames=0 if (self.r_box.value or sql) and not selected
            else int(getattr(ask, "max_frames", 3)),
            head_rows=int(getattr(ask, "head_rows", 5)),
            stats_sample=int(getattr(ask, "stats_sample", 10_000)),
            policy=pol,
        )
        self.last_context = ctx
        base = build_messages(question, ctx.render(), lang)
        system, user = base[0], base[1]
        with self._lock:
            history = list(self.history)
        # drop whole exchanges, oldest first, until the history fits its budget
        dropped = 0
        while history and sum(estimate_tokens(m["content"]) for m in history) > self.history_tokens:
            history = history[2:]
            dropped += 2
        self.dropped_messages = dropped
        notes = pnotes + list(ctx.notes)
        if dropped:
            notes.append(f"{dropped} earlier messages left out (history budget "
                         f"{self.history_tokens} tokens)")
        return [system, *history, user], notes

    # -- input -----------------------------------------------------------------------------

    def _on_input_msg(self, _widget: Any, content: dict, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("event") != "submit":
            return
        self._armed = True
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
        self._armed = False
        if self.input.value.strip():
            self.send()

    def send(self, question: str | None = None) -> bool:
        """Send ``question`` (default: the input box). Returns False when nothing was sent."""
        q = (self.input.value if question is None else question).strip()
        if not q:
            return False
        if self._busy:
            self._set_status("An answer is still streaming: wait for it or press Stop.", "warn")
            return False
        self._clearing = True
        try:
            self.input.value = ""
        finally:
            self._clearing = False
        self.refresh_sources()
        try:
            client = self.client()
            messages, notes = self.build_messages(q, client)
        except ProxyError as e:
            self._set_status(f"rsql: {e}", "error")
            return False
        turn = self._add_turn(q)
        turn.notes = notes
        self.last_messages = messages
        self._set_status("; ".join(notes), "warn" if notes else "info")
        self._busy = True
        self._stop.clear()
        self.stop_btn.layout.display = ""
        self._thread = threading.Thread(
            target=self._stream, args=(turn, client, messages), name="rsql-chat-stream", daemon=True
        )
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop the streaming answer: flag it, and end the HTTP response now."""
        if not self._busy:
            return
        self._set_status("Stopping…")  # before the abort: the worker then says "Stopped."
        self._stop.set()
        resp = self._resp
        if resp is not None:
            _abort_response(resp)

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until the current answer is finished (for scripts and tests)."""
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    def new_chat(self) -> None:
        """Forget the conversation (a streaming answer is stopped first)."""
        if self._busy:
            self.stop()
            self.wait(10)
        with self._lock:
            self.history.clear()
        self.turns.clear()
        self.log.children = ()
        self._set_status("")

    # -- one answer ------------------------------------------------------------------------

    def _add_turn(self, question: str) -> Turn:
        q = W.HTML(clean_html(
            "<div style='background:rgba(100,130,200,.12);border-radius:6px;padding:4px 8px;"
            f"margin:4px 0'><b>You:</b> {html.escape(question)}</div>"
        ))
        answer = W.HTML("<i style='opacity:.6'>…</i>")
        answer.add_class("rsql-answer")
        footer = W.HTML("")
        actions = W.HBox([], layout=W.Layout(display="none"))
        extra = W.VBox([])
        box = W.VBox([q, answer, footer, actions, extra])
        turn = Turn(question, box, answer, footer, actions, extra)
        self.turns.append(turn)
        self.log.children = (*self.log.children, box)
        return turn

    def _stream(self, turn: Turn, client: ProxyClient, messages: list[dict[str, str]]) -> None:
        buf: list[str] = []
        last = [0.0]

        def on_delta(piece: str) -> None:
            if self._stop.is_set():
                raise _Stopped
            buf.append(piece)
            now = time.monotonic()
            if now - last[0] > 0.1:  # ~10 widget updates a second is plenty
                last[0] = now
                turn.answer = "".join(buf)
                turn.answer_html.value = _md(turn.answer + " ▍")

        def keep_response(resp: Any) -> None:
            # stop() ends the stream from the main thread by closing this response
            self._resp = resp
            if self._stop.is_set():
                _abort_response(resp)

        ask = self._ask()
        try:
            res = client.chat(
                messages,
                model=self.model,
                client_kind="chat",
                stream=True,
                on_delta=on_delta,
                temperature=getattr(ask, "temperature", 0.0),
                max_tokens=getattr(ask, "max_tokens", None),
                on_response=keep_response,
            )
        except _Stopped:
            self._finish_stopped(turn, buf)
        except ProxyError as e:
            if self._stop.is_set():
                self._finish_stopped(turn, buf)
            else:
                self._finish_error(turn, buf, e)
        except Exception as e:  # never let a worker die silently: show it in the panel
            if self._stop.is_set():
                self._finish_stopped(turn, buf)
            else:
                self._finish_error(turn, buf, e)
        else:
            self._finish_done(turn, res)
        finally:
            self._resp = None
            self._busy = False
            self.stop_btn.layout.display = "none"
        self.refresh_usage()

    def _finish_done(self, turn: Turn, res: ChatResult) -> None:
        turn.result = res
        turn.answer = res.text
        turn.state = "done"
        turn.answer_html.value = _md(res.text)
        turn.footer.value = clean_html(
            f"<div style='font-size:85%;opacity:.7'>{html.escape(render.footer(res))}</div>"
        )
        with self._lock:
            self.history += [
                {"role": "user", "content": turn.question},
                {"role": "assistant", "content": res.text},
            ]
        self._add_actions(turn)
        if not turn.notes:
            self._set_status("")

    def _finish_stopped(self, turn: Turn, buf: list[str]) -> None:
        turn.answer = "".join(buf)
        turn.state = "stopped"
        turn.answer_html.value = _md(turn.answer or "")
        turn.footer.value = "<div style='font-size:85%;opacity:.7'>stopped</div>"
        self._set_status("Stopped.")
        if turn.code_blocks:
            self._add_actions(turn)

    def _finish_error(self, turn: Turn, buf: list[str], e: Exception) -> None:
        turn.answer = "".join(buf)
        turn.state = "error"
        turn.error = e
        if isinstance(e, ProxyError) and e.status == 429:
            text = rate_limit_text(e)
        elif isinstance(e, ProxyError):
            text = f"rsql: {e}"
        else:
            text = f"rsql: {type(e).__name__}: {e}"
        turn.answer_html.value = (
            (_md(turn.answer) if turn.answer else "")
            + clean_html(f"<div class='rsql-error' style='color:#b00020'>{html.escape(text)}</div>")
        )
        self._set_status(text, "error")

    def refresh_usage(self) -> None:
        """The usage line from ``GET me`` (runs in a worker thread: it is an HTTP call)."""
        try:
            client_used = self.client()
            me = client_used.me()
        except ProxyError as e:
            self.usage.value = clean_html(
                f"<span style='opacity:.7'>usage unavailable ({html.escape(str(e)[:120])})</span>")
            return
        except Exception as e:
            self.usage.value = clean_html(
                f"<span style='opacity:.7'>usage unavailable ({html.escape(type(e).__name__)})</span>")
            return
        self.last_me = me if isinstance(me, dict) else None
        remember_me(client_used, me)  # the admin's policy comes with it: keep it fresh
        line = usage_line(me) if isinstance(me, dict) else ""
        self.usage.value = clean_html(
            f"<span class='rsql-usage' style='opacity:.8'>{html.escape(line)}</span>")

    # -- the context view ------------------------------------------------------------------

    def context_text(self, question: str | None = None) -> str:
        """What a question would send (default: the input box's, else the last one asked):
        the same report as ``%%ask --show-context``. Nothing goes to the model."""
        q = (question if question is not None else self.input.value).strip()
        if not q:
            q = self.turns[-1].question if self.turns else "(your next question)"
        try:
            client = self.client()
        except ProxyError as e:
            client = ProxyClient(description="no proxy", unavailable=e)
        messages, notes = self.build_messages(q, client)
        pv = preview(client, messages)
        ctx = self.last_context
        head = f"Context for: {q}" + (f"\nnotes: {'; '.join(notes)}" if notes else "")
        return context_report(messages, ctx, self.last_policy or ContextPolicy(), pv,
                              header=head, no_data=bool(self.no_data.value))

    def show_context(self, show: bool = True) -> str:
        """Open (or close) the context view; returns the text shown."""
        if not show:
            self.context_view.layout.display = "none"
            self.context_view.value = ""
            return ""
        self.refresh_sources()
        text = self.context_text()
        # frame values and database names are in there: escaped, then sanitized
        self.context_view.value = clean_html(
            "<pre class='rsql-context-text' style='white-space:pre-wrap;font-size:85%'>"
            f"{html.escape(plain_text(text))}</pre>")
        self.context_view.layout.display = ""
        return text

    def _on_context_toggle(self, change: dict) -> None:
        try:
            self.show_context(bool(change.get("new")))
        except Exception as e:  # a callback must not die silently
            self._set_status(f"rsql: context view failed: {type(e).__name__}: {e}", "error")

    # -- per-answer actions ----------------------------------------------------------------

    def _add_actions(self, turn: Turn) -> None:
        if not turn.code_blocks:
            return
        copy = W.Button(description="Copy code", icon="copy", layout=W.Layout(width="auto"))
        insert = W.Button(description="Insert cell", icon="plus-square", layout=W.Layout(width="auto"))
        copy.on_click(lambda _b: self.show_code(turn))
        insert.on_click(lambda _b: self.insert_code(turn))
        buttons = {"copy": copy, "insert": insert}
        if turn.first_code("sql") is not None:
            run = W.Button(description="Run SQL", icon="play", button_style="success",
                           layout=W.Layout(width="auto"))
            run.on_click(lambda _b: self.run_sql(turn))
            buttons["run"] = run
        turn.buttons = buttons
        turn.actions.children = tuple(buttons.values())
        turn.actions.layout.display = ""

    def cell_code(self, turn: Turn) -> str:
        """The answer's first code block as a cell: ``%%R`` / ``%%sql`` when those are loaded."""
        pref = "sql" if self.sql.value else ("r" if self.r_box.value else "python")
        blocks = render.extract_code(turn.answer, pref)
        if not blocks:
            return ""
        lang, code = blocks[0]
        loaded = getattr(getattr(self.shell, "extension_manager", None), "loaded", set())
        if lang in render._LANG_ALIASES["r"] and "rpy2.ipython" in loaded:
            return "%%R\n" + code
        if lang in render._LANG_ALIASES["sql"] and "sql" in loaded:
            return "%%sql\n" + code
        return code

    def show_code(self, turn: Turn | int = -1, note: str = "") -> Any:
        """Show the code in a text area, selected-and-copy ready (no JavaScript needed)."""
        t = self.turns[turn] if isinstance(turn, int) else turn
        code = self.cell_code(t)
        if t.code_area is None:
            lines = code.count("\n") + 1
            t.code_area = W.Textarea(value=code, rows=min(max(lines, 2), 20),
                                     layout=W.Layout(width="100%"))
            t.code_area.add_class("rsql-code")
            t.code_note = W.HTML("")
            t.extra.children = (*t.extra.children, t.code_area, t.code_note)
        else:
            t.code_area.value = code
        t.code_note.value = clean_html(
            f"<span style='font-size:85%;opacity:.8'>{html.escape(note or 'Select all (Ctrl/Cmd+A) and copy (Ctrl/Cmd+C).')}</span>"
        )
        return t.code_area

    def insert_code(self, turn: Turn | int = -1) -> bool:
        """Put the answer's code into a new cell below the running one, where the frontend can
        take it (a cell's execute request: ``%ask_chat --insert``). From a button click there is
        no such request, so the code is shown ready to copy instead. True when inserted."""
        if not self.turns:
            return False
        t = self.turns[turn] if isinstance(turn, int) else turn
        code = self.cell_code(t)
        if not code:
            self._set_status("This answer has no code block.", "warn")
            return False
        ask = self._ask()
        batch = bool(ask.is_batch()) if ask is not None and hasattr(ask, "is_batch") else False
        if _in_execute_request(self.shell) and not batch:
            self.shell.set_next_input(code, replace=False)
            self._set_status("Code inserted as a new cell below.")
            return True
        self.show_code(
            t,
            "The frontend only takes new cells from a running cell: run %ask_chat --insert in a "
            "cell to get this code below it, or copy it from here.",
        )
        return False

    def run_sql(self, turn: Turn | int = -1) -> Any:
        """Run the answer's SQL through %%sql_ai's loop: parse, qualify against the schema,
        read-only guard, execute; failures go back to the model (client kind ``chat``) up to
        ``SqlAIMagics.max_retries`` times. Shows the DataFrame in the panel; returns it."""
        from rsql_magic.context.sql_schema import capture_schema
        from rsql_magic.sql.loop import SqlAIError, dialect_label, run_question

        t = self.turns[turn] if isinstance(turn, int) else turn
        if t.first_code("sql") is None:
            self._set_status("This answer has no SQL block.", "warn")
            return None
        sqlm = self._sqlm()
        choice = self.sql.value
        name = {JUPYSQL: None, FRAMES: "frames", "": None}.get(choice, choice)
        out = W.HTML("")
        t.extra.children = (*t.extra.children, out)
        try:
            db, _expr = sqlm.resolve_connection(name)
        except (SqlAIError, TypeError) as e:
            msg = getattr(e, "message", str(e))
            out.value = clean_html(
                f"<div class='rsql-error' style='color:#b00020'>{html.escape(msg)}</div>")
            return None
        client = self.client()
        calls: list[ChatResult] = []
        first = [True]

        def complete(messages: list[dict[str, str]]) -> str:
            if first[0]:  # the answer already in the chat is the first attempt
                first[0] = False
                return t.answer
            res = client.chat(messages, model=self.model, client_kind="chat", temperature=0)
            calls.append(res)
            return res.text

        try:
            res = run_question(
                t.question,
                db,
                complete,
                schema=capture_schema(db),
                max_retries=int(getattr(sqlm, "max_retries", 3)),
                max_rows=int(getattr(sqlm, "max_rows", 100_000)),
                timeout_s=float(getattr(sqlm, "timeout", 60.0)) or None,
                budget_chars=int(getattr(sqlm, "schema_chars", 6000)),
                # the user's allowlist additions and PostgreSQL role, as %%sql_ai applies them
                policy=sqlm.policy(),
            )
        except SqlAIError as e:
            t.sql_result = e
            lines = [e.message] + ([f"Last SQL:\n{e.sql}"] if e.sql else [])
            out.value = clean_html(
                "<div class='rsql-error' style='color:#b00020'><b>Not run.</b> "
                f"<pre style='white-space:pre-wrap'>{html.escape(chr(10).join(lines))}</pre></div>"
            )
            return None
        except ProxyError as e:
            t.sql_result = e
            text = rate_limit_text(e) if e.status == 429 else f"rsql: {e}"
            out.value = clean_html(
                f"<div class='rsql-error' style='color:#b00020'>{html.escape(text)}</div>")
            return None
        t.sql_result = res
        frame = res.frame
        self.last_frame = frame
        ns = self._ns()
        ns["_chat_df"] = frame
        info = [f"{dialect_label(res.dialect)} on {db.label}"]
        fixes = [a.stage for a in res.attempts if a.stage != "ok"]
        if fixes:
            info.append(f"{len(res.attempts)} attempts; fixed: {', '.join(fixes)}")
        info += res.notes
        rows = int(getattr(sqlm, "display_rows", 10))
        if frame is not None:
            info.append(f"{len(frame):,} rows × {frame.shape[1]} columns; in _chat_df")
        # values and column names come from the database: escaped (pandas' default, said
        # explicitly) and then sanitized with the rest
        table = (frame.head(rows).to_html(index=False, border=0, escape=True)
                 if frame is not None else "")
        if frame is not None and len(frame) > rows:
            table += f"<div style='opacity:.7'>({rows} of {len(frame):,} rows shown)</div>"
        out.value = _md(render.code_block(res.sql, "sql")) + clean_html(
            f"<div style='font-size:85%;opacity:.8'>{html.escape(' · '.join(info))}</div>"
            f"<div class='rsql-frame'>{table}</div>"
        )
        if calls:
            threading.Thread(target=self.refresh_usage, daemon=True).start()
        return frame
