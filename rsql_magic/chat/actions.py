"""What an answer's buttons in the chat panel do: Copy code, Insert cell, Run SQL and the
query cell it offers after a run (:class:`AnswerActions`, a base of the panel).

Insert, and Insert query cell, put the code in a new cell below the chat, marked as the
assistant's (``rsql.provenance``, :class:`~rsql_magic.session.Provenance`): from a running
cell as ``%%ask --insert`` does, from a click through the frontend extension
(:class:`~rsql_magic.session.cells.CellChannel`: a click runs no cell, and a payload
set then would ride on the next cell's reply, in the wrong place); without the extension
(VS Code, a lab with it off) the code is shown ready to copy. Nothing here runs a cell. In a
course's tutor mode SQL from an answer does not run: no Run SQL button, and a call is refused.
"""

from __future__ import annotations

import threading
from typing import Any

from rsql_magic.client import ProxyClient
from rsql_magic.errors import ProxyError, SqlAIError, TutorAnswer
from rsql_magic.operations import Route, SqlOperation, SqlRequest
from rsql_magic.session import Course, Provenance, Session
from rsql_magic.session.notebook import in_execute_request

from .sources import connection_name
from .text import error_text
from .widgets import ChatWidgets, Turn, error_html, sql_error_html, sql_result_html

__all__ = ["AnswerActions"]

SELECT_NOTE = "Select all (Ctrl/Cmd+A) and copy (Ctrl/Cmd+C)."


class AnswerActions(ChatWidgets):
    """The answers' buttons over the panel's widgets; the panel gives the session, the turns,
    the client, the model and the course as GET me said (see the module docstring)."""

    session: Session
    shell: Any
    turns: list[Turn]
    course: Course
    last_frame: Any
    home_cell: str | None  # the id of the cell that opened the panel: cells go below it

    def client(self) -> ProxyClient:
        raise NotImplementedError  # the panel's

    @property
    def model(self) -> str | None:
        raise NotImplementedError  # the panel's

    def refresh_usage(self) -> None:
        raise NotImplementedError  # the panel's

    def _ns(self) -> dict[str, Any]:
        return getattr(self.shell, "user_ns", {}) if self.shell is not None else {}

    def _lang(self) -> str:
        return "sql" if self.sql.value else ("r" if self.r_box.value else "python")

    def _turn(self, turn: Turn | int) -> Turn:
        return self.turns[turn] if isinstance(turn, int) else turn

    def in_tutor_mode(self, turn: Turn | None = None) -> bool:
        """Tutor mode is in force (GET me said so), or `turn`'s answer came as the tutor's."""
        answered = turn is not None and turn.result is not None and turn.result.mode == "tutor"
        return self.course.tutor is not None or answered

    def _add_actions(self, turn: Turn) -> None:
        if not turn.code_blocks:
            return
        # in tutor mode SQL from an answer does not run: no Run SQL button
        sql = turn.has_sql_to_run and not self.in_tutor_mode(turn)
        buttons = self.add_actions(turn, self.cell_code(turn), sql=sql)
        buttons["copy"].on_copy(lambda copied, reason: self._on_copy(turn, copied, reason))
        buttons["insert"].on_click(lambda _b: self.insert_code(turn))
        if "run" in buttons:
            buttons["run"].on_click(lambda _b: self.run_sql(turn))

    def cell_code(self, turn: Turn | int = -1) -> str:
        """The answer's first code block as a cell: ``%%R`` / ``%%sql`` when those are loaded."""
        found = self.session.cells.cell_code(self._turn(turn).answer, self._lang())
        return found[1] if found else ""

    def _on_copy(self, turn: Turn, copied: bool | None, reason: str) -> None:
        if copied is None:  # a click that ran no clipboard code: copying is up to the user
            self.show_code(turn)
        elif copied:
            self.open_code(turn, None, "Copied to the clipboard.", select=False)
        else:
            self.open_code(
                turn,
                None,
                f"The clipboard is not available here ({reason or 'refused'}): "
                "the code is selected, copy it with Ctrl+C (Cmd+C on a Mac).",
            )

    def show_code(self, turn: Turn | int = -1, note: str = "") -> Any:
        """Show the code in the turn's text area, selected and ready to copy."""
        t = self._turn(turn)
        self.open_code(t, self.cell_code(t), note or SELECT_NOTE)
        return t.code_area

    def insert_code(self, turn: Turn | int = -1) -> bool:
        """Put the answer's code into a new cell below the chat, marked as the assistant's.
        From a running cell (``%ask_chat --insert``) as ``%%ask --insert`` does; from a click,
        through the frontend extension (no cell runs then); without the extension the code is
        shown ready to copy. True when the cell was inserted or handed to the frontend."""
        if not self.turns:
            return False
        t = self._turn(turn)
        found = self.session.cells.cell_code(t.answer, self._lang())
        if found is None:
            self.set_status("This answer has no code block.", "warn")
            return False
        lang, code = found
        return self._insert(t, code, lang, Provenance.of("chat", t.result))

    def _insert(self, t: Turn, code: str, lang: str, provenance: Provenance) -> bool:
        cells = self.session.cells
        if in_execute_request(self.shell):
            if cells.insert_cell(code, lang, provenance=provenance):
                self.set_status("Code inserted as a new cell below.")
                return True
            self.set_status("Batch run: the code is shown in the cell's output.")
            return False

        def done(inserted: bool, why: str) -> None:
            if inserted:
                self.set_status("Code inserted as a new cell below the chat. It has not run.")
            else:
                self.open_code(t, code, f"The notebook did not take the cell ({why}): copy it.")

        if cells.insert_from_click(code, provenance, done, below=self.home_cell):
            self.set_status(
                "Inserting the code as a new cell below the chat… (nothing after a page reload? "
                "open the chat again with %ask_chat)"
            )
            return True
        self.open_code(
            t,
            code,
            "This notebook cannot take a cell from a click (its rsql-assistant extension is not "
            "there): run %ask_chat --insert in a cell, or copy the code from here. " + SELECT_NOTE,
        )
        return False

    def run_sql(self, turn: Turn | int = -1) -> Any:
        """Run the answer's SQL through %%sql_ai's runner: parse, qualify against the schema,
        read-only guard, execute; failures go back to the model (client kind ``sql``) up to
        ``SqlAIMagics.max_retries`` times. Shows the DataFrame in the panel; returns it."""
        t = self._turn(turn)
        # the button shows only then; a call from code is held to the same rule
        if not t.has_sql_to_run:
            self.set_status(
                "This answer has no SQL block to run: the first SQL it shows must be fenced "
                "with backticks (```sql).",
                "warn",
            )
            return None
        if self.in_tutor_mode(t):
            self.set_status(
                "Tutor mode: SQL from the assistant does not run here. Fill in what it left "
                "for you and run it yourself.",
                "warn",
            )
            return None
        session = self.session
        out = self.add_result(t)
        try:
            chosen = session.sql_runner.choose_connection(connection_name(self.sql.value))
            db, conn_expr = chosen.db, chosen.conn_expr
        except (SqlAIError, TypeError) as e:
            out.value = error_html(getattr(e, "message", str(e)))
            return None
        operation = SqlOperation(session)
        try:
            # the answer already in the chat is the first attempt; the retries are SQL to run,
            # asked as an SQL client, into which the proxy maps no redacted value back
            route = Route(self.client(), session.config.is_batch())
            res = operation.ask(
                SqlRequest(
                    t.question,
                    db,
                    model=self.model,
                    route=route,
                    first_answer=t.answer,
                    context_values=False,
                )
            )
        except SqlAIError as e:
            t.sql_result = e
            out.value = sql_error_html(e)
            return None
        except TutorAnswer:  # a tutor window began meanwhile: nothing ran
            out.value = error_html("Tutor mode: the assistant's SQL does not run here.")
            return None
        except ProxyError as e:
            t.sql_result = e
            out.value = error_html(error_text(e))
            return None
        t.sql_result = res
        self.last_frame = res.frame
        self._ns()["_chat_df"] = res.frame
        out.value = sql_result_html(res, chosen, session.config.sql.display_rows)
        # the query that ran, as a cell of its own: the answer's that worked (a retry's)
        answered = operation.calls[-1] if operation.calls else t.result
        query = session.sql_runner.emitted_code(res.sql, conn_expr, "_chat_df")
        self.add_query_button(t).on_click(
            lambda _b: self._insert(t, query, "python", Provenance.of("chat_sql", answered))
        )
        if operation.calls:
            threading.Thread(target=self.refresh_usage, daemon=True).start()
        return res.frame
