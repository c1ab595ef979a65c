"""Issue 75 in a real browser: JupyterLab 4 and Notebook 7, headless Chromium.

Cells the assistant writes carry ``rsql.provenance`` (frontend/src/provenance/): %%ask
--insert's (the kernel's payload beside set_next_input), an accepted proposal's, the chat
panel's Insert (the kernel's channel to the frontend), an accepted inline completion's. Each
shows a small mark with a tooltip, keeps its counts as the student edits, and keeps both
through a save and a reload. The status item says tutor mode (a standing tutor window for
everyone in this module's lab, agent tools allowed), and what the admin wrote is text.

One JupyterLab serves the module; each test opens its own notebook (its own kernel) and asks
questions of its own (the lab's proxy caches answers at temperature 0).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.helpers import require
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

MARK = ".rsql-provenance-mark"
STATUS = ".rsql-inline-status"
MARKUP = '<img src=x onerror="window.rsqlPwned=1">'
TUTOR = {
    "name": "lab-tutor",
    "mode": "tutor",
    "groups": ["*"],
    "always": True,
    "agent": True,
    "message": f"Hints only in this lab {MARKUP}",
}
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def lab(provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require("playwright", reason="pip install playwright (driving Debian's chromium; no download)")
    require("chromium", binary=True, reason="apt install chromium")
    tmp = tmp_path_factory.mktemp("provenance-lab")
    with running_lab(tmp, provider, {"policy_windows": [TUTOR]}) as started:
        yield started


def _saved(page: Any, path: Path, check: Any) -> Any:
    """Save from the browser; the file once `check(notebook)` holds of it (the server writes
    it a moment after the keypress)."""
    page.locator(CELLS).first.locator(".jp-InputPrompt").click()
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while True:
        try:
            nb = nbformat.read(path, as_version=4)
            if check(nb):
                return nb
        except (nbformat.reader.NotJSONError, json.JSONDecodeError):
            pass  # read while the server was writing it
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never held what was expected")
        time.sleep(0.3)


def _mark(cell: Any) -> dict[str, Any] | None:
    return (cell.metadata.get("rsql") or {}).get("provenance")


@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_ask_insert_marks_its_cell_counts_the_students_edits_and_keeps_it_through_a_reload(
    chromium_browser: Any, frontend: str, lab: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    url, token, root = lab
    name = f"ask-insert-{frontend}.ipynb"
    code = "totals = sales.groupby('region')\ntotals = totals.revenue.sum()"
    fresh_provider.script(f"A start:\n\n```python\n{code}\n```")
    write_notebook(
        root, name, ["%load_ext rsql_magic", f"%%ask --no-data --insert\ntotals ({frontend})?"]
    )
    with notebook_page(
        chromium_browser, notebook_address(url, token, name, frontend), f"provenance-ask-{frontend}"
    ) as page:
        run_cell(page, 0)
        run_cell(page, 1)
        inserted = page.locator(CELLS).nth(2)
        inserted.locator(MARK).wait_for(timeout=30_000)
        assert inserted.locator(MARK).text_content() == "AI 2/2"
        tip = inserted.locator(MARK).get_attribute("title") or ""
        assert "%%ask --insert" in tip and "fake-small" in tip
        # the student edits one line and adds one: the mark counts them, a moment later
        inserted.locator(".cm-content").click()
        page.keyboard.press("Control+End")
        page.keyboard.type("\nprint(totals)")
        page.wait_for_function(
            f"() => document.querySelectorAll({CELLS!r})[2].querySelector({MARK!r})"
            "?.textContent === 'AI 2/3'",
            timeout=20_000,
        )
        nb = _saved(page, root / name, lambda nb: len(nb.cells) == 3 and _mark(nb.cells[2]))
    mark = _mark(nb.cells[2])
    assert mark["kind"] == "ask" and mark["model"] == "fake-small"
    assert REQUEST_ID.fullmatch(mark["request_id"])
    assert (mark["lines"], mark["assistant_lines"]) == (3, 2)
    # reloaded: the mark is drawn from the file
    with notebook_page(
        chromium_browser,
        notebook_address(url, token, name, frontend),
        f"provenance-reload-{frontend}",
    ) as page:
        page.locator(CELLS).nth(2).locator(MARK).wait_for(timeout=30_000)
        assert page.locator(MARK).count() == 1


def test_an_accepted_proposal_is_marked_with_the_request_whose_answer_proposed_it(
    chromium_browser: Any, lab: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    url, token, root = lab
    code = "summary = sales.describe()"
    fresh_provider.script(
        tool_call("propose_cell", {"code": code, "language": "python"}), "I proposed a cell."
    )
    # the turn's requests, in order: the one that called propose_cell, then the closing one
    ids = (
        "import json\nturn = get_ipython().magics_manager.registry['RSQLMagic'].last_turn\n"
        "print('ids=' + json.dumps([r.request_id for r in turn.requests]))"
    )
    write_notebook(
        root,
        "proposal.ipynb",
        ["%load_ext rsql_magic", "%%ask --agent\nDescribe it (provenance).", ids],
    )
    with notebook_page(
        chromium_browser, notebook_address(url, token, "proposal.ipynb"), "provenance-proposal"
    ) as page:
        run_cell(page, 0)
        asked = run_cell(page, 1)
        view = asked.locator(".rsql-proposal-view")
        view.wait_for(timeout=60_000)
        view.locator(".rsql-proposal-accept").click()
        page.locator(CELLS).nth(2).locator(MARK).wait_for(timeout=20_000)
        printed = run_cell(page, 3).locator(".jp-OutputArea-output").last.text_content() or ""
        nb = _saved(page, root / "proposal.ipynb", lambda nb: len(nb.cells) == 4)
    mark = _mark(nb.cells[2])
    assert nb.cells[2].source == code and mark["kind"] == "agent"
    requests = json.loads(printed.split("ids=", 1)[1])
    assert len(requests) == 2 and all(REQUEST_ID.fullmatch(r) for r in requests), requests
    # the request whose answer proposed the cell, not the turn's last
    assert mark["request_id"] == requests[0] != requests[1]
    assert nb.cells[2].execution_count is None  # marked, and never run


@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_the_chat_panels_insert_puts_a_marked_cell_below_the_chat(
    chromium_browser: Any, frontend: str, lab: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    """A click is no running cell: the kernel asks the frontend through its channel, which
    inserts the cell below the chat's cell, marked, and never runs it."""
    url, token, root = lab
    name = f"chat-insert-{frontend}.ipynb"
    fresh_provider.script("Try:\n\n```python\nsales.revenue.max()\n```")
    write_notebook(root, name, ["%load_ext rsql_magic\n%ask_chat --model fake-small", "'after'"])
    with notebook_page(
        chromium_browser,
        notebook_address(url, token, name, frontend),
        f"provenance-chat-{frontend}",
    ) as page:
        run_cell(page, 0)
        panel = page.wait_for_selector(".rsql-chat", timeout=30_000)
        notice = page.locator(".rsql-chat .rsql-course-notice")
        notice.wait_for(timeout=30_000)
        said = notice.text_content() or ""
        assert "Tutor mode (window lab-tutor)" in said
        # the admin's message is there, markup and all, as text
        assert f"Hints only in this lab {MARKUP}" in said, said
        assert notice.locator("img").count() == 0
        assert page.evaluate("() => window.rsqlPwned") is None
        box = panel.wait_for_selector("input[placeholder^='Ask about your data']")
        box.fill(f"biggest revenue ({frontend})?")
        box.press("Enter")
        insert = page.get_by_role("button", name="Insert cell")
        insert.wait_for(timeout=60_000)
        # the 'after' cell made the active one, then a click that moves no focus: inserted below
        # the active cell (the frontend's fallback) it would land after 'after'; below the chat's
        # own cell, named by the kernel, it lands before it
        page.locator(CELLS).nth(1).locator(".cm-content").click()
        insert.dispatch_event("click")
        page.locator(CELLS).nth(1).locator(MARK).wait_for(timeout=20_000)
        # the frontend's answer reaches the kernel, which says so in the panel
        page.locator(".rsql-chat .rsql-status", has_text="Code inserted").wait_for(timeout=20_000)
        nb = _saved(page, root / name, lambda nb: len(nb.cells) == 3)
    assert [c.source for c in nb.cells][1:] == ["sales.revenue.max()", "'after'"]
    mark = _mark(nb.cells[1])
    assert mark["kind"] == "chat" and REQUEST_ID.fullmatch(mark["request_id"])
    assert nb.cells[1].execution_count is None


def test_an_accepted_inline_completion_marks_its_line_and_the_status_says_tutor(
    chromium_browser: Any, lab: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    url, token, root = lab
    fresh_provider.respond = lambda body: "revenue"
    write_notebook(
        root, "inline.ipynb", ["import pandas as pd\nsales = pd.DataFrame({'revenue': [1.0]})", ""]
    )
    try:
        with notebook_page(
            chromium_browser, notebook_address(url, token, "inline.ipynb"), "provenance-inline"
        ) as page:
            status = page.locator(STATUS)
            page.wait_for_function(
                f"() => document.querySelector({STATUS!r})?.textContent === 'rsql ✓ tutor'",
                timeout=30_000,
            )
            assert "Hints only in this lab" in (status.get_attribute("title") or "")
            assert status.locator("img").count() == 0
            assert page.evaluate("() => window.rsqlPwned") is None
            run_cell(page, 0)
            cell = page.locator(CELLS).nth(1)
            cell.locator(".cm-content").click()
            page.keyboard.type("sales.", delay=40)
            cell.locator(".jp-GhostText").wait_for(timeout=20_000)
            page.keyboard.press("Tab")
            cell.locator(MARK).wait_for(timeout=20_000)
            nb = _saved(page, root / "inline.ipynb", lambda nb: bool(_mark(nb.cells[1])))
    finally:
        fresh_provider.respond = None
    mark = _mark(nb.cells[1])
    assert nb.cells[1].source == "sales.revenue"
    assert mark["kind"] == "inline" and (mark["lines"], mark["assistant_lines"]) == (1, 1)
    assert REQUEST_ID.fullmatch(mark["request_id"])


def test_the_notebook_7_toolbar_says_tutor_mode(
    chromium_browser: Any, lab: Any, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    url, token, root = lab
    write_notebook(root, "toolbar.ipynb", ["x = 1"])
    with notebook_page(
        chromium_browser,
        notebook_address(url, token, "toolbar.ipynb", "notebook"),
        "provenance-nb7-status",
    ) as page:
        page.wait_for_function(
            f"() => document.querySelector({STATUS!r})?.textContent === 'rsql ✓ tutor'",
            timeout=30_000,
        )
        item = page.locator(STATUS)
        assert item.is_visible() and item.locator("img").count() == 0
        # the admin's message is its tooltip, markup and all, as text
        assert f"Hints only in this lab {MARKUP}" in (item.get_attribute("title") or "")
        assert page.evaluate("() => window.rsqlPwned") is None
