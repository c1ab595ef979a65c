"""What the kernel sends for a proposed cell: one MIME bundle that the frontend extension
renders (``application/vnd.rsql.proposal+json``: Accept inserts, never runs), with the ipywidget
view for frontends without it, sanitized HTML and text; the chat panel's widget carries the
same bundle. The browser side: tests/e2e/test_proposal_browser.py."""

from __future__ import annotations

import re
from typing import Any

import pytest

from rsql_common.hidden_characters import HIDDEN_RANGES
from rsql_magic.agent import tools as tools_mod
from rsql_magic.agent.proposal import PROPOSAL_MIME
from rsql_magic.agent.tools import KernelTools
from rsql_magic.session import Session
from tests.helpers import REPO

MARKUP = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


@pytest.fixture
def shown(shell: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    monkeypatch.setenv("RSQL_BATCH", "0")
    shell.run_line_magic("load_ext", "rsql_magic")
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(tools_mod, "display", lambda obj, **kw: calls.append((obj, kw)))
    monkeypatch.setattr(shell, "set_next_input", lambda *a, **k: pytest.fail("inserted"))
    return calls


def test_a_proposal_is_shown_as_one_bundle_the_extension_reads_first(
    shell: Any, shown: list[tuple[Any, dict[str, Any]]]
) -> None:
    tools = KernelTools(Session.of(shell))
    code = f"x = '{MARKUP}'"
    assert not tools.call("propose_cell", {"code": code, "language": "python"}).error
    ((bundle, kw),) = shown
    assert kw == {"raw": True}  # the bundle itself: a saved notebook keeps the proposal
    assert bundle[PROPOSAL_MIME] == {
        "code": code,
        "language": "python",
        "title": "Proposed cell 1 (python)",
        # who wrote it, for the accepted cell's mark: no turn here, so no model or request
        "provenance": {"kind": "agent", "model": None, "request_id": None},
    }
    view = tools.views[0]
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == view.box.model_id
    assert code in bundle["text/plain"]
    assert "<img" not in bundle["text/html"] and "&lt;img" in bundle["text/html"]


def test_the_chat_panels_widget_carries_the_same_bundle(
    shell: Any, shown: list[tuple[Any, dict[str, Any]]]
) -> None:
    panel: list[Any] = []
    tools = KernelTools(Session.of(shell), show=panel.append)
    tools.call("propose_cell", {"code": "df.head()", "language": "python"})
    (view,) = panel
    assert shown == []  # in the panel, not the cell's output
    ((output,),) = [view.widget.outputs]
    assert output["output_type"] == "display_data" and output["data"] is view.bundle


def test_an_r_proposal_carries_the_r_magic_exactly_when_rpy2s_magics_are_loaded(
    shell: Any, shown: list[tuple[Any, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = KernelTools(Session.of(shell))
    monkeypatch.setattr(shell.extension_manager, "loaded", {"rsql_magic", "rpy2.ipython"})
    tools.call("propose_cell", {"code": "summary(cars)", "language": "r"})
    monkeypatch.setattr(shell.extension_manager, "loaded", {"rsql_magic"})
    tools.call("propose_cell", {"code": "summary(cars)", "language": "r"})
    codes = [bundle[PROPOSAL_MIME]["code"] for bundle, _ in shown]
    assert codes == ["%%R\nsummary(cars)", "summary(cars)"]
    assert [v.cell for v in tools.views] == codes  # what the widget's Accept inserts too


# Trojan Source (CVE-2021-42574): drawn, the line compares `access` with "user" and the rest is
# a comment; run, the right-to-left override and isolates sit inside the string, so the check
# compares with a string no access level is and every user passes it
TROJAN = (
    'access = "user"\nif access != "user\u202e \u2066# admins only\u2069 \u2066":\n    grant()\n'
)
# what else hides in text: a right-to-left mark, a zero-width space, a terminal's "erase line"
# with a carriage return, a tag character (an invisible "A")
HIDDEN = "\u202e\u2066\u2069\u200f\u200b\x1b\r\U000e0041"


def test_hidden_and_bidi_characters_of_a_proposal_show_as_escapes_and_accept_inserts_what_shows(
    shell: Any, shown: list[tuple[Any, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 53, finding 9: the code a user reads in any view of a proposal is the code that
    Accept inserts, and no character in it is invisible or reorders what is drawn."""
    tools = KernelTools(Session.of(shell))
    code = TROJAN + "who = 'Ali\u200fce\u200b'  # \x1b[2K\rfine\U000e0041\n"
    assert not tools.call("propose_cell", {"code": code, "language": "python"}).error
    ((bundle, _),) = shown
    (view,) = tools.views
    proposed = bundle[PROPOSAL_MIME]["code"]
    views = {
        "the extension's code": proposed,
        "text/plain": bundle["text/plain"],
        "text/html": bundle["text/html"],
        "the widget's view": view.code.value,
        "what the widget's Accept inserts": view.cell,
    }
    for name, text in views.items():
        assert not [c for c in HIDDEN if c in text], f"{name} keeps a hidden character"
        assert "\\u202e" in text and "\\u2066" in text and "\\U000e0041" in text, name
    assert view.cell == proposed and bundle["text/plain"].endswith(proposed)
    assert "hidden" in bundle[PROPOSAL_MIME]["title"]  # the title says why the escapes are there
    inserted: list[str] = []
    monkeypatch.setattr(shell, "set_next_input", lambda text, **_: inserted.append(text))
    view.accept()  # the widget's Accept, from a running cell
    assert inserted == [proposed]


def test_a_proposal_that_strips_a_direction_mark_still_strips_it(
    shell: Any, shown: list[tuple[Any, dict[str, Any]]]
) -> None:
    """The escape is the character again in a Python string: a proposal that works with such
    characters on purpose does the same once accepted, and shows what it does."""
    tools = KernelTools(Session.of(shell))
    code = 'name = "Ali\u200fce"\nclean = name.replace("\u200f", "")\n'
    tools.call("propose_cell", {"code": code, "language": "python"})
    (view,) = tools.views
    assert '"Ali\\u200fce"' in view.cell and '.replace("\\u200f", "")' in view.cell
    ran: dict[str, Any] = {}
    exec(view.cell, ran)  # the accepted cell, run by its user
    assert ran["name"] == "Ali\u200fce" and ran["clean"] == "Alice"


def test_the_frontend_shows_the_same_characters_as_escapes_as_the_kernel() -> None:
    """frontend/src/hiddenCharacters.ts draws proposals the kernel never saw (a notebook file):
    its ranges are the project's one list."""
    source = (REPO / "frontend" / "src" / "hiddenCharacters.ts").read_text()
    table = source.split("HIDDEN_RANGES", 1)[1].split("];", 1)[0]
    pairs = re.findall(r"\[\s*0x([0-9a-fA-F]+)\s*,\s*0x([0-9a-fA-F]+)\s*\]", table)
    assert tuple((int(a, 16), int(b, 16)) for a, b in pairs) == HIDDEN_RANGES
