"""The chat panel's widgets and layout: plain ipywidgets 8 (JupyterLab 4, Notebook 7, VS Code,
no JavaScript build), plus the Copy code button (:mod:`.clipboard`).

This module only builds and shows; what a click or a message does is in :mod:`.panel`.

Every HTML value built here from text (answers, errors, footers, status, usage, results) goes
through ``clean_html``, also when the text was escaped: ipywidgets sets it as innerHTML, so one
place that forgot to escape would run script.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as W

from rsql_common.fences import sql_blocks
from rsql_magic import render
from rsql_magic.client import ChatResult
from rsql_magic.errors import SqlAIError
from rsql_magic.sanitize import clean_html
from rsql_magic.session.sql_runner import ConnectionChoice
from rsql_sql.loop import SqlAIResult, dialect_label

from .clipboard import CopyCode

__all__ = [
    "ChatWidgets",
    "Turn",
    "answer_html",
    "context_html",
    "error_html",
    "footer_html",
    "note_html",
    "notice_html",
    "sql_error_html",
    "sql_result_html",
    "usage_html",
]


def answer_html(text: str) -> str:
    """Model Markdown -> sanitized HTML; ipywidgets' HTML sets a 28 px line height for
    one-line labels, which spreads paragraphs apart: reset it for prose."""
    return clean_html(
        f"<div class='rsql-md' style='line-height:1.45'>{render.markdown_to_html(text)}</div>"
    )


def error_html(text: str) -> str:
    return clean_html(f"<div class='rsql-error' style='color:#b00020'>{html.escape(text)}</div>")


def footer_html(text: str) -> str:
    return clean_html(f"<div style='font-size:85%;opacity:.7'>{html.escape(text)}</div>")


def note_html(text: str) -> str:
    return clean_html(f"<span style='font-size:85%;opacity:.8'>{html.escape(text)}</span>")


def notice_html(lines: list[str]) -> str:
    """The course's notices over the log (tutor mode, the course log): plain lines from the
    proxy, escaped; empty when there are none."""
    if not lines:
        return ""
    body = "".join(f"<div>{html.escape(line)}</div>" for line in lines)
    return clean_html(
        "<div class='rsql-course-notice' style='background:rgba(230,160,0,.12);"
        f"border-radius:6px;padding:4px 8px;margin:4px 0'>{body}</div>"
    )


def usage_html(line: str, *, unavailable: bool = False) -> str:
    if unavailable:
        return clean_html(
            f"<span style='opacity:.7'>usage unavailable ({html.escape(line)})</span>"
        )
    return clean_html(f"<span class='rsql-usage' style='opacity:.8'>{html.escape(line)}</span>")


def context_html(text: str) -> str:
    """The context report: frame values and database names are in there, as text."""
    return clean_html(
        "<pre class='rsql-context-text' style='white-space:pre-wrap;font-size:85%'>"
        f"{html.escape(text)}</pre>"
    )


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
    error: Exception | None = None
    code_area: CopyCode | None = None  # the Copy code button, with the code it copies
    code_note: Any = None
    buttons: dict[str, Any] = field(default_factory=dict)
    sql_result: Any = None
    notes: list[str] = field(default_factory=list)
    agent: Any = None  # agent mode: the turn's AgentRun (steps, tools, the loop's record)

    @property
    def code_blocks(self) -> list[tuple[str, str]]:
        return render.extract_code(self.answer)

    def first_code(self, lang: str | None = None) -> tuple[str, str] | None:
        """The first code block (in ``lang`` only, when given)."""
        blocks = render.extract_code(self.answer, lang)
        if lang:
            blocks = [b for b in blocks if render.normalize_lang(b[0]) == lang]
        return blocks[0] if blocks else None

    @property
    def has_sql_to_run(self) -> bool:
        """Whether Run SQL has a block to run: the block ``extract_sql`` takes (its grammar,
        which the proxy reads too and maps no redacted value into) must be the first block the
        answer shows as SQL, so that what runs is what the user sees. Without one,
        ``extract_sql`` would read SQL from the prose, where values are mapped back."""
        taken, shown = sql_blocks(self.answer.strip()), self.first_code("sql")
        return bool(taken) and shown is not None and _words(taken[0].group(2)) == _words(shown[1])


def _words(code: str) -> list[str]:
    # the two grammars indent a block in a list item differently; the words are the same
    return code.split()


class ChatWidgets:
    """The panel's widgets: header, context pickers, context view, the log of turns, the
    status line and the input row. ``widget`` is the whole panel."""

    def __init__(self) -> None:
        self.title = W.HTML("<b>rsql chat</b>")
        self.usage = W.HTML("<span style='opacity:.7'>usage: …</span>")
        # tutor mode and the course log, as GET me says (issue 75): over the log, in plain words
        self.notice = W.HTML("")
        self.new_btn = W.Button(description="New chat", icon="plus", layout=W.Layout(width="auto"))
        header = W.HBox(
            [self.title, self.usage, self.new_btn],
            layout=W.Layout(justify_content="space-between", align_items="center"),
        )
        self.frames = W.SelectMultiple(
            options=[],
            rows=3,
            description="DataFrames",
            tooltip="None selected: those named in the question, else the most recent",
            layout=W.Layout(width="260px"),
        )
        self.no_data = W.Checkbox(
            False, description="schemas only", indent=False, layout=W.Layout(width="auto")
        )
        self.r_box = W.Checkbox(
            False, description="R session", indent=False, layout=W.Layout(width="auto")
        )
        self.sql = W.Dropdown(
            options=[("none", "")], value="", description="SQL", layout=W.Layout(width="260px")
        )
        self.refresh_btn = W.Button(
            icon="refresh",
            tooltip="Re-scan the notebook's variables",
            layout=W.Layout(width="36px"),
        )
        # what leaves the kernel, after the context policy and the proxy's redaction
        self.context_btn = W.ToggleButton(
            False,
            description="Show context",
            icon="eye",
            tooltip="What the next question would send, and what is withheld",
            layout=W.Layout(width="auto"),
        )
        # agent mode: the assistant may call the kernel's read-only tools before it answers
        self.agent_btn = W.ToggleButton(
            False,
            description="Agent",
            icon="wrench",
            tooltip="Let the assistant call read-only tools in this kernel before it answers "
            "(list and describe frames, read-only SQL, the last error, propose a cell)",
            layout=W.Layout(width="auto"),
        )
        self.context_view = W.HTML(
            "", layout=W.Layout(display="none", max_height="320px", overflow="auto")
        )
        self.context_view.add_class("rsql-context")
        toggles = W.HBox(
            [
                self.frames,
                W.VBox([self.no_data, self.r_box]),
                self.sql,
                self.refresh_btn,
                self.context_btn,
                self.agent_btn,
            ],
            layout=W.Layout(align_items="flex-start", flex_flow="row wrap"),
        )
        self.log = W.VBox([], layout=W.Layout(max_height="520px", overflow="auto"))
        self.status = W.HTML("")
        self.input = W.Text(
            value="",
            placeholder="Ask about your data… (Enter sends)",
            continuous_update=False,
            layout=W.Layout(flex="1 1 auto", width="auto"),
        )
        self.send_btn = W.Button(
            description="Send", button_style="primary", layout=W.Layout(width="auto")
        )
        self.stop_btn = W.Button(
            description="Stop",
            button_style="danger",
            icon="stop",
            layout=W.Layout(width="auto", display="none"),
        )
        inp = W.HBox([self.input, self.send_btn, self.stop_btn])
        self.widget = W.VBox(
            [header, self.notice, toggles, self.context_view, self.log, self.status, inp],
            layout=W.Layout(border="1px solid #ccc", padding="6px", width="100%"),
        )
        self.widget.add_class("rsql-chat")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def set_status(self, text: str, kind: str = "info") -> None:
        """The status line under the log: ``kind`` info, warn or error."""
        color = {"error": "#b00020", "warn": "#8a5a00"}.get(kind, "inherit")
        self.status.value = (
            clean_html(
                f"<div class='rsql-status rsql-{kind}' style='color:{color}'>{html.escape(text)}</div>"
            )
            if text
            else ""
        )

    def show_context_text(self, text: str | None) -> None:
        """Open the context view on ``text``, or close it (None)."""
        if text is None:
            self.context_view.layout.display = "none"
            self.context_view.value = ""
            return
        self.context_view.value = context_html(text)
        self.context_view.layout.display = ""

    def add_turn(self, question: str) -> Turn:
        """A new turn at the end of the log: the question, and a placeholder for the answer."""
        q = W.HTML(
            clean_html(
                "<div style='background:rgba(100,130,200,.12);border-radius:6px;padding:4px 8px;"
                f"margin:4px 0'><b>You:</b> {html.escape(question)}</div>"
            )
        )
        answer = W.HTML("<i style='opacity:.6'>…</i>")
        answer.add_class("rsql-answer")
        footer = W.HTML("")
        # wraps, so the Copy code widget's text area can take a line of its own below
        actions = W.HBox([], layout=W.Layout(display="none", flex_flow="row wrap"))
        extra = W.VBox([])
        # full height in the log, which scrolls: a flex item would shrink and clip it
        box = W.VBox([q, answer, footer, actions, extra], layout=W.Layout(flex="0 0 auto"))
        turn = Turn(question, box, answer, footer, actions, extra)
        self.log.children = (*self.log.children, box)
        return turn

    @staticmethod
    def add_steps(turn: Turn, steps: Any) -> None:
        """Put an agent turn's steps box between its question and its answer."""
        first, *rest = turn.box.children
        turn.box.children = (first, steps, *rest)

    def clear_log(self) -> None:
        self.log.children = ()

    @staticmethod
    def add_actions(turn: Turn, code: str, *, sql: bool) -> dict[str, Any]:
        """The answer's buttons under it: Copy code (``code``), Insert cell, and Run SQL when
        ``sql``. Returns them by name (copy, insert, run) for the caller to wire."""
        copy = CopyCode(code, layout=W.Layout(display="contents"))
        copy.add_class("rsql-code-copy")
        turn.code_area = copy
        turn.code_note = W.HTML("")
        insert = W.Button(
            description="Insert cell", icon="plus-square", layout=W.Layout(width="auto")
        )
        buttons: dict[str, Any] = {"copy": copy, "insert": insert}
        if sql:
            buttons["run"] = W.Button(
                description="Run SQL",
                icon="play",
                button_style="success",
                layout=W.Layout(width="auto"),
            )
        turn.buttons = buttons
        turn.actions.children = tuple(buttons.values())
        turn.actions.layout.display = ""
        turn.extra.children = (*turn.extra.children, turn.code_note)
        return buttons

    @staticmethod
    def open_code(turn: Turn, code: str | None, note: str, *, select: bool = True) -> None:
        """Open the turn's code area on ``code`` (None: the code it has) with ``note`` under it."""
        if turn.code_area is None or turn.code_note is None:
            return
        if code is not None:
            turn.code_area.value = code
        turn.code_area.show(select=select)
        turn.code_note.value = note_html(note)

    @staticmethod
    def add_result(turn: Turn) -> Any:
        """A new HTML box under the turn (the result of Run SQL)."""
        out = W.HTML("")
        turn.extra.children = (*turn.extra.children, out)
        return out

    @staticmethod
    def add_query_button(turn: Turn) -> Any:
        """The button beside Run SQL that puts the query that ran into a cell (in the turn's
        row of buttons, once: another run replaces it)."""
        button = W.Button(
            description="Insert query cell",
            icon="plus-square",
            tooltip="A new cell below the chat that runs this query (it does not run now)",
            layout=W.Layout(width="auto"),
        )
        earlier = turn.buttons.get("query")
        turn.buttons["query"] = button
        turn.actions.children = (*(b for b in turn.actions.children if b is not earlier), button)
        return button


def sql_result_html(res: SqlAIResult, chosen: ConnectionChoice, rows: int) -> str:
    """Run SQL's result: which connection it ran on (and why, when none was picked and the
    notebook holds others), the statement that ran, how it went, the first ``rows`` rows."""
    frame = res.frame
    info = [f"{dialect_label(res.dialect)} on {chosen.source}"]
    fixes = [a.stage for a in res.attempts if a.stage != "ok"]
    if fixes:
        info.append(f"{len(res.attempts)} attempts; fixed: {', '.join(fixes)}")
    info += res.notes
    if frame is not None:
        info.append(f"{len(frame):,} rows × {frame.shape[1]} columns; in _chat_df")
    # values and column names come from the database: escaped (pandas' default, said
    # explicitly) and then sanitized with the rest
    table = (
        frame.head(rows).to_html(index=False, border=0, escape=True) if frame is not None else ""
    )
    if frame is not None and len(frame) > rows:
        table += f"<div style='opacity:.7'>({rows} of {len(frame):,} rows shown)</div>"
    why = (
        f"<div class='rsql-source'>{html.escape(chosen.why.replace('`', ''))}</div>"
        if chosen.why
        else ""
    )
    return (
        clean_html(why)
        + answer_html(render.code_block(res.sql, "sql"))
        + clean_html(
            f"<div style='font-size:85%;opacity:.8'>{html.escape(' · '.join(info).replace('`', ''))}</div>"
            f"<div class='rsql-frame'>{table}</div>"
        )
    )


def sql_error_html(e: SqlAIError) -> str:
    """Run SQL refused or failed: why, and the last SQL tried."""
    lines = [e.message] + ([f"Last SQL:\n{e.sql}"] if e.sql else [])
    return clean_html(
        "<div class='rsql-error' style='color:#b00020'><b>Not run.</b> "
        f"<pre style='white-space:pre-wrap'>{html.escape(chr(10).join(lines))}</pre></div>"
    )
