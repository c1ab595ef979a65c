"""A cell the agent proposed (``propose_cell``) and the view the user accepts or rejects it in.

:class:`Proposal` is the cell; :class:`ProposalView` shows it as one MIME bundle (the frontend
extension's ``PROPOSAL_MIME``, an ipywidget view with Accept and Reject, sanitized HTML, text).
Nothing here runs the cell: Accept puts it below the current one for the user to run. Every view
draws, and Accept inserts, the same text (:func:`shown_code`): hidden characters as escapes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rsql_common.hidden_characters import HIDDEN, escaped
from rsql_magic.sanitize import clean_html
from rsql_magic.session.cells import Provenance
from rsql_magic.session.notebook import in_execute_request

if TYPE_CHECKING:
    from rsql_magic.session import Session

__all__ = ["PROPOSAL_MIME", "Proposal", "ProposalView", "shown_code"]

# a proposed cell for the frontend extension (frontend/src/proposal/): {"code", "language",
# "title", "provenance"}: who wrote it, which Accept writes into the cell's metadata
PROPOSAL_MIME = "application/vnd.rsql.proposal+json"


def shown_code(code: str) -> tuple[str, int]:
    """`code` as every view of a proposal draws it and Accept inserts it, and how many hidden
    characters it held: line endings as newlines, each control, invisible or bidi character
    (:mod:`rsql_common.hidden_characters`) as its escape (``\\u202e``).

    A right-to-left override or an isolate inside a string makes code read differently from
    how it runs (Trojan Source); escaped, what the user reads is what runs. Escapes rather than
    a refusal: in a Python or R string the escape is the same character again, so a cell that
    strips direction marks from a column on purpose still does once accepted, and shows it.
    """
    code = code.replace("\r\n", "\n").replace("\r", "\n")
    return escaped(code), len(HIDDEN.findall(code))


@dataclass
class Proposal:
    """A cell the assistant proposed (``propose_cell``)."""

    code: str
    language: str  # "python", "sql" or "r"
    accepted: bool = False
    # the model and request whose answer proposed it (the cell's mark once accepted)
    provenance: Provenance = Provenance("agent")


class ProposalView:
    """A proposed cell with Accept and Reject, never run here.

    Shown as one MIME bundle (:attr:`bundle`): ``application/vnd.rsql.proposal+json`` for the
    frontend extension (``frontend/``: its Accept inserts the cell below, the one way to insert
    from a click), this ipywidget view for frontends without it (VS Code: Accept offers the code
    to copy), sanitized HTML for static renderers and text. :attr:`widget` carries the same
    bundle, for the chat panel that embeds it. The code is text everywhere (escaped, then
    sanitized, in the HTML views), its hidden characters written as escapes in every view and
    in what Accept inserts (:func:`shown_code`; the title says how many)."""

    def __init__(self, session: Session, proposal: Proposal, cell: str, number: int) -> None:
        import ipywidgets as W

        cell, hidden = shown_code(cell)
        self.session, self.proposal, self.cell = session, proposal, cell
        self.decided = ""  # "", "accepted" or "rejected"
        title = f"Proposed cell {number} ({proposal.language})"
        if hidden:  # why the escapes are there
            title += f" · {hidden} hidden character{'s' if hidden > 1 else ''} shown as escapes"
        html_view = clean_html(
            f"<div><b>{html.escape(title)}</b> · it runs only if you accept it and then run it"
            "</div><pre class='rsql-proposed-code' style='white-space:pre-wrap'>"
            f"{html.escape(cell)}</pre>"
        )
        self.code = W.HTML(html_view)
        self.accept_btn = W.Button(description="Accept", icon="check", button_style="success")
        self.accept_btn.tooltip = "Put this cell below (it does not run)"
        self.reject_btn = W.Button(description="Reject", icon="times")
        self.note = W.HTML("")
        # the fallback when the frontend cannot take a cell now: a text area's value is text
        self.copy_area = W.Textarea(value="", layout=W.Layout(width="100%", display="none"))
        self.accept_btn.on_click(lambda _b: self.accept())
        self.reject_btn.on_click(lambda _b: self.reject())
        self.box = W.VBox(
            [self.code, W.HBox([self.accept_btn, self.reject_btn]), self.note, self.copy_area]
        )
        self.box.add_class("rsql-proposal")
        # the cell as the kernel prepared it (%%R / %%sql on top when those magics are loaded):
        # the extension inserts exactly this
        self.bundle: dict[str, Any] = {
            PROPOSAL_MIME: {
                "code": cell,
                "language": proposal.language,
                "title": title,
                "provenance": proposal.provenance.as_json(),
            },
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2,
                "version_minor": 0,
                "model_id": self.box.model_id,
            },
            "text/html": html_view,
            "text/plain": f"{title}:\n{cell}",
        }
        # an Output widget whose one output is the bundle (set as state, not captured from a
        # running cell: the chat panel shows proposals from its worker's hand-off)
        self.widget = W.Output()
        self.widget.outputs = (
            {"output_type": "display_data", "data": self.bundle, "metadata": {}},
        )
        self.widget.add_class("rsql-proposal-output")

    def say(self, text: str) -> None:
        self.note.value = clean_html(
            f"<span style='font-size:85%;opacity:.8'>{html.escape(text)}</span>"
        )

    def _decide(self, what: str) -> bool:
        if self.decided:
            return False  # one decision per proposal
        self.decided = what
        self.accept_btn.disabled = self.reject_btn.disabled = True
        return True

    def accept(self) -> bool:
        """Put the cell below; True when the frontend took it. It is never executed here."""
        if not self._decide("accepted"):
            return False
        self.proposal.accepted = True
        # ipykernel delivers set_next_input only with a running cell's reply; from a click
        # (a comm message) it would arrive with the next cell's, in the wrong place
        if in_execute_request(self.session.shell):
            if self.session.cells.insert_cell(
                self.cell,
                self.proposal.language,
                title="Accepted cell",
                provenance=self.proposal.provenance,
            ):
                self.say("Accepted: the cell is below. It has not run; run it when ready.")
                return True
            self.say("Accepted (batch run: shown in the output, not inserted).")
            return False
        self.copy_area.value = self.cell
        self.copy_area.layout.display = ""
        self.say(
            "Accepted. The notebook takes new cells only while a cell runs, so copy this into "
            "a new cell below (Ctrl/Cmd+A, Ctrl/Cmd+C). Nothing has run."
        )
        return False

    def reject(self) -> bool:
        if not self._decide("rejected"):
            return False
        self.say("Rejected: nothing was inserted and nothing ran.")
        return True
