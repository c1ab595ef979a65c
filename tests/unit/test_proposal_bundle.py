"""What the kernel sends for a proposed cell: one MIME bundle that the frontend extension
renders (``application/vnd.rsql.proposal+json``: Accept inserts, never runs), with the ipywidget
view for frontends without it, sanitized HTML and text; the chat panel's widget carries the
same bundle. The browser side: tests/e2e/test_proposal_browser.py."""

from __future__ import annotations

from typing import Any

import pytest

from rsql_magic.agent import tools as tools_mod
from rsql_magic.agent.proposal import PROPOSAL_MIME
from rsql_magic.agent.tools import KernelTools
from rsql_magic.session import Session

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
