"""Agent mode's proposed cell in a real browser: JupyterLab 4 and Notebook 7, headless Chromium.

The frontend extension (``frontend/``, built by ``make setup`` and linked into the venv) renders
``application/vnd.rsql.proposal+json``: Accept inserts the code as a new cell below the cell
that holds the proposal, and nothing runs it; Reject inserts nothing. Each proposed code writes a
file when run, so "it has not run" is a file that does not exist. A proposal saved in someone
else's notebook (untrusted) shows as text with Accept off. The control case switches the
extension off: the ipywidget view alone cannot insert a cell (a click is no running cell), so
the same Accept leaves the notebook as it was.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.helpers.browser import (
    CELLS,
    notebook_address,
    notebook_page,
    run_cell,
    running_lab,
    write_notebook,
)
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.tool_calls import tool_call

pytestmark = pytest.mark.slow

EXTENSION = "@rsql-assistant/jupyterlab"

# cells that make proposals straight through the public tools: one shown in the cell's output,
# one inside an ipywidgets Output (as the chat panel embeds ProposalView.widget)
TOOLS_SETUP = """\
%load_ext rsql_magic
from IPython.display import display
from rsql_magic.agent.tools import KernelTools
from rsql_magic.session import Session
session = Session.of(get_ipython())
in_output = KernelTools(session)
in_panel = KernelTools(session, show=lambda view: display(view.widget))"""


def _writes(path: Path, text: str) -> str:
    """Python code that writes `text` to `path`: run, it leaves a trace."""
    return f"open({str(path)!r}, 'w').write({text!r})"


@contextmanager
def _lab_without_the_extension(
    tmp_path: Path, provider: FakeProvider
) -> Iterator[tuple[str, str, Path]]:
    """A lab of its own for the control case (the other tests share the module's
    `shared_lab`), with what `jupyter labextension disable` writes, for this lab only."""
    page_config = tmp_path / "config" / "labconfig" / "page_config.json"
    page_config.parent.mkdir(parents=True)
    page_config.write_text(json.dumps({"disabledExtensions": {EXTENSION: True}}))
    with running_lab(tmp_path, provider) as started:
        yield started


def _run(page: Any, index: int, *, wait_for: str = "") -> Any:
    """Run cell `index` in place (:func:`run_cell`), then wait for `wait_for` in it."""
    cell = run_cell(page, index)
    if wait_for:
        cell.locator(wait_for).first.wait_for(timeout=60_000)
    return cell


def _saved(page: Any, path: Path, cells: int) -> Any:
    """Save from the browser and read the file back: the notebook exactly as the frontend
    holds it (sources, execution counts, outputs)."""
    page.locator(CELLS).first.locator(".jp-InputPrompt").click()  # focus the notebook
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while True:
        try:
            nb = nbformat.read(path, as_version=4)
        except nbformat.reader.NotJSONError:  # read while the server was writing it
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
            continue
        if len(nb.cells) == cells or time.monotonic() > deadline:
            return nb
        time.sleep(0.3)


def _not_run(cell: Any, trace: Path) -> None:
    assert cell.cell_type == "code"
    assert cell.execution_count is None and cell.outputs == []
    time.sleep(1.5)  # a run, had one started, would have written by now
    assert not trace.exists(), f"{trace} exists: the proposed code ran"


@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_accept_inserts_the_proposed_cell_below_and_never_runs_it(
    chromium_browser: Any,
    frontend: str,
    shared_lab: tuple[str, str, Path],
    fresh_provider: FakeProvider,
    tmp_path: Path,
) -> None:
    """%%ask --agent against the fake provider, whose scripted model calls propose_cell."""
    trace = tmp_path / "ran-accepted.txt"
    code = _writes(trace, "it ran")
    fresh_provider.script(
        tool_call("propose_cell", {"code": code, "language": "python"}), "I proposed a cell."
    )
    url, token, root = shared_lab
    notebook = f"agent-{frontend}.ipynb"
    # a question of this test's own: the lab's proxy caches answers at temperature 0
    ask = f"%%ask --agent\nWrite the file for me ({frontend})."
    cells = ["%load_ext rsql_magic", ask, "'after'"]
    write_notebook(root, notebook, cells)
    address = notebook_address(url, token, notebook, frontend)
    with notebook_page(chromium_browser, address, f"proposal-{frontend}") as page:
        _run(page, 0)
        asked = _run(page, 1, wait_for=".rsql-proposal-view")
        view = asked.locator(".rsql-proposal-view")
        assert view.locator(".rsql-proposal-code").text_content() == code
        assert not trace.exists()
        # the 'after' cell made the active one, then a click that moves no focus: inserted below
        # the active cell (the fallback) it would land after 'after'; below the proposal's own
        # cell, found from the button, it lands before it
        page.locator(CELLS).nth(2).locator(".cm-content").click()
        view.locator(".rsql-proposal-accept").dispatch_event("click")
        view.locator(".rsql-proposal-note", has_text="Inserted below; it has not run").wait_for()
        assert view.locator(".rsql-proposal-accept").is_disabled()
        assert page.locator(CELLS).count() == 4
        nb = _saved(page, root / notebook, 4)
    assert [c.source for c in nb.cells] == [*cells[:2], code, cells[2]]
    _not_run(nb.cells[2], trace)
    assert nb.cells[1].execution_count is not None  # the cell that asked did run


def test_reject_inserts_nothing_and_markup_in_the_code_is_text_that_never_runs(
    chromium_browser: Any,
    shared_lab: tuple[str, str, Path],
    fresh_provider: FakeProvider,
    tmp_path: Path,
) -> None:
    rejected_trace, hostile_trace = tmp_path / "ran-rejected.txt", tmp_path / "ran-hostile.txt"
    rejected = _writes(rejected_trace, "it ran")
    markup = '<img src=x onerror="window.rsqlPwned=1"><script>window.rsqlPwned=2</script>'
    hostile = _writes(hostile_trace, markup) + "  # <b>accept me</b>"
    cells = [
        TOOLS_SETUP,
        f"in_output.call('propose_cell', {{'code': {rejected!r}, 'language': 'python'}}).summary",
        f"in_panel.call('propose_cell', {{'code': {hostile!r}, 'language': 'python'}}).summary",
        "'end'",
    ]
    url, token, root = shared_lab
    write_notebook(root, "tools.ipynb", cells)
    with notebook_page(
        chromium_browser, notebook_address(url, token, "tools.ipynb"), "proposal-tools"
    ) as page:
        _run(page, 0)
        first = _run(page, 1, wait_for=".rsql-proposal-view").locator(".rsql-proposal-view")
        first.locator(".rsql-proposal-reject").click()
        first.locator(".rsql-proposal-note", has_text="Rejected; nothing inserted").wait_for()
        assert first.locator(".rsql-proposal-accept").is_disabled()
        # too late: nothing, even with the button made clickable again (a disabled button gets
        # no click from Chromium, so its own guard is what is shown)
        first.locator(".rsql-proposal-accept").evaluate("b => { b.disabled = false; b.click(); }")
        # inside an ipywidgets Output, as in the chat panel
        second = _run(page, 2, wait_for=".widget-output .rsql-proposal-view")
        view = second.locator(".rsql-proposal-view")
        assert view.locator(".rsql-proposal-code").text_content() == hostile
        assert second.locator(".jp-OutputArea img, .jp-OutputArea script").count() == 0
        assert view.locator("b").count() == 1  # the title's, not the code's
        view.locator(".rsql-proposal-accept").click()
        view.locator(".rsql-proposal-note", has_text="Inserted below").wait_for()
        assert page.evaluate("() => window.rsqlPwned") is None
        nb = _saved(page, root / "tools.ipynb", 5)
    assert [c.source for c in nb.cells] == [*cells[:3], hostile, cells[3]]
    _not_run(nb.cells[3], hostile_trace)
    assert not rejected_trace.exists()


def test_control_without_the_extension_accept_inserts_no_cell(
    chromium_browser: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """The same proposal with the extension switched off: only the ipywidget view shows, and
    its Accept (a widget message, not a running cell) can only offer the code to copy."""
    trace = tmp_path / "ran-control.txt"
    code = _writes(trace, "it ran")
    cells = [
        TOOLS_SETUP,
        f"in_output.call('propose_cell', {{'code': {code!r}, 'language': 'python'}}).summary",
    ]
    with _lab_without_the_extension(tmp_path, fresh_provider) as (url, token, root):
        write_notebook(root, "control.ipynb", cells)
        address = f"{url}lab/tree/control.ipynb?token={token}"
        with notebook_page(chromium_browser, address, "proposal-control") as page:
            _run(page, 0)
            cell = _run(page, 1, wait_for=".rsql-proposal")
            assert cell.locator(".rsql-proposal-view").count() == 0
            cell.locator(".rsql-proposal button", has_text="Accept").click()
            cell.locator(".rsql-proposal textarea").wait_for(state="visible", timeout=15_000)
            assert page.locator(CELLS).count() == 2
    assert not trace.exists()


def test_a_proposal_saved_in_someone_elses_notebook_shows_as_text_with_accept_off(
    chromium_browser: Any,
    shared_lab: tuple[str, str, Path],
    fresh_provider: FakeProvider,
    tmp_path: Path,
) -> None:
    """A notebook file from someone else, carrying a proposal output (unsigned, so untrusted):
    shown as text, and Accept inserts nothing even when its button is forced."""
    trace = tmp_path / "ran-foreign.txt"
    markup = '<img src=x onerror="window.rsqlPwned=1"><script>window.rsqlPwned=2</script>'
    code = _writes(trace, markup)
    proposal = {"code": code, "language": "python", "title": f"Run me {markup}"}
    output = nbformat.v4.new_output(
        "display_data",
        data={"application/vnd.rsql.proposal+json": proposal, "text/plain": code},
    )
    url, token, root = shared_lab
    write_notebook(root, "foreign.ipynb", ["'their cell'"])
    nb = nbformat.read(root / "foreign.ipynb", as_version=4)
    nb.cells[0].outputs = [output]
    nbformat.write(nb, root / "foreign.ipynb")  # unsigned: not trusted by this user
    address = notebook_address(url, token, "foreign.ipynb")
    with notebook_page(chromium_browser, address, "proposal-foreign") as page:
        view = page.locator(".rsql-proposal-view")
        view.wait_for(timeout=30_000)
        assert view.locator(".rsql-proposal-code").text_content() == code
        assert markup in (view.locator(".rsql-proposal-title").text_content() or "")
        assert page.locator(".jp-OutputArea img, .jp-OutputArea script").count() == 0
        assert view.locator(".rsql-proposal-accept").is_disabled()
        assert "not trusted" in (view.locator(".rsql-proposal-note").text_content() or "")
        # made clickable: a disabled button gets no click from Chromium, so the renderer's own
        # guard (an untrusted output inserts nothing) is what this shows
        view.locator(".rsql-proposal-accept").evaluate("b => { b.disabled = false; b.click(); }")
        time.sleep(1)
        assert page.locator(CELLS).count() == 1
        assert page.evaluate("() => window.rsqlPwned") is None
    assert not trace.exists()


def test_bidi_and_invisible_characters_show_as_escapes_and_accept_inserts_what_shows(
    chromium_browser: Any,
    shared_lab: tuple[str, str, Path],
    fresh_provider: FakeProvider,
    tmp_path: Path,
) -> None:
    """Issue 53, finding 9 (Trojan Source): a proposal from the kernel's tools, and a bundle
    that never went through them (an older kernel's, a notebook file's), each holding a
    right-to-left override, isolates, a zero-width space and an escape sequence. The drawn code
    holds none of them, only their escapes, and Accept inserts exactly what is drawn."""
    # drawn as is: `access` is compared with "user" and the rest is a comment; run: the
    # override and isolates sit inside the string, so every access level passes the check
    trojan = (
        'access = "user"\nif access != "user\u202e \u2066# admins only\u2069 \u2066":\n'
        "    print('granted')  # \u200b\x1b[2K\n"
    )
    hidden = "\u202e\u2066\u2069\u200b\x1b"
    raw = {"code": trojan, "language": "python", "title": "Proposed \u202ecell"}
    cells = [
        TOOLS_SETUP,
        f"in_output.call('propose_cell', {{'code': {trojan!r}, 'language': 'python'}}).summary",
        f"display({{'application/vnd.rsql.proposal+json': {raw!r}, 'text/plain': 'x'}}, raw=True)",
        "'end'",
    ]
    url, token, root = shared_lab
    write_notebook(root, "trojan.ipynb", cells)
    with notebook_page(
        chromium_browser, notebook_address(url, token, "trojan.ipynb"), "proposal-bidi"
    ) as page:
        _run(page, 0)
        _run(page, 1, wait_for=".rsql-proposal-view")
        _run(page, 2, wait_for=".rsql-proposal-view")
        views = page.locator(".rsql-proposal-view")
        drawn = [views.nth(i).locator(".rsql-proposal-code").text_content() or "" for i in (0, 1)]
        titles = [views.nth(i).locator(".rsql-proposal-title").text_content() or "" for i in (0, 1)]
        for i in (0, 1):
            views.nth(i).locator(".rsql-proposal-accept").click()
            views.nth(i).locator(".rsql-proposal-note", has_text="Inserted below").wait_for()
        nb = _saved(page, root / "trojan.ipynb", 6)
    for text in [*drawn, *titles]:
        assert not [c for c in hidden if c in text], f"drawn with a hidden character: {text!r}"
    assert all("\\u202e" in code and "\\u2066" in code and "\\x1b" in code for code in drawn)
    # each accepted cell is below its proposal, and is exactly the code that was drawn
    assert [nb.cells[2].source, nb.cells[4].source] == drawn
    assert [c.source for c in nb.cells[:2]] == cells[:2] and nb.cells[5].source == cells[3]
