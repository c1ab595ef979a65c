"""Inline completions in a real browser: JupyterLab 4 and Notebook 7, headless Chromium.

The frontend extension's provider (``frontend/src/completion/``) asks ``{base}rsql/inline``
while the user types, with the kernel's live context; the proxy asks the fake provider, whose
scripted model completes from the columns it was sent: a line ``frame sales (...): col type,
...`` in the prompt, and it answers the first numeric column (``revenue``); no such line, and it
answers ``head()``. The frame is read from a CSV file, so no cell's text names its columns:
``revenue`` in the ghost text can only have come from the kernel.

One JupyterLab serves the module; each test opens its own notebook (its own kernel).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import http, require
from tests.helpers.browser import (
    CELLS,
    notebook_address,
    notebook_page,
    run_cell,
    running_lab,
    write_notebook,
)
from tests.helpers.fake_provider import FakeProvider

pytestmark = pytest.mark.slow

GHOST = ".jp-GhostText"
STATUS = ".rsql-inline-status"
LOAD_SALES = "import pandas as pd\nsales = pd.read_csv('sales.csv')"
# the frame line of the proxy's prompt (chat: "frame ..."; fill-in-the-middle: "# live
# session: frame ..."): its columns, each "name dtype"
FRAME_LINE = re.compile(r"frame sales \([^)\n]*\): ([^\n]*)")
NUMERIC = re.compile(r"^(float|int|uint)\d*$")
WINDOW = "inline-exam"
MARKUP = '<img src=x onerror="window.rsqlPwned=1"><script>window.rsqlPwned=2</script>'


def _prompt(body: dict[str, Any]) -> str:
    """All the text a chat or legacy completion request sent the model."""
    parts = [str(m.get("content") or "") for m in body.get("messages") or []]
    parts += [str(body.get("prompt") or ""), str(body.get("suffix") or "")]
    return "\n".join(parts)


def _columns_model(body: dict[str, Any]) -> str | None:
    """The scripted model: the first numeric column of `sales` when the prompt lists them,
    a generic completion otherwise; markup for a cell typing `hostile.`."""
    if "hostile." in _prompt(body):
        return MARKUP
    match = FRAME_LINE.search(_prompt(body))
    if match is None:
        return "head()"
    for column in match.group(1).split(", "):
        name, _, dtype = column.strip().rpartition(" ")
        if name and NUMERIC.match(dtype):
            return name
    return "head()"


def _inline_prompts(provider: FakeProvider) -> list[str]:
    """The prompts of the completions the proxy forwarded (the chat and %%ask send none here)."""
    return [
        _prompt(r.body)
        for r in list(provider.received)
        if "code completion engine" in _prompt(r.body) or r.path == "completions"
    ]


class Lab:
    def __init__(self, url: str, token: str, root: Path, provider: FakeProvider) -> None:
        self.url, self.token, self.root, self.provider = url, token, root, provider

    def address(self, frontend: str, notebook: str) -> str:
        return notebook_address(self.url, self.token, notebook, frontend)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, _, raw = http(
            method, f"{self.url}rsql/{path}", body, authorization=f"token {self.token}"
        )
        return status, json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def lab(provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require("playwright", reason="pip install playwright (driving Debian's chromium; no download)")
    require("chromium", binary=True, reason="apt install chromium")
    require("pandas", reason="the notebook's frame")
    tmp = tmp_path_factory.mktemp("inline-lab")
    with running_lab(tmp, provider) as (url, token, root):
        # the kernel's context gets a second, not the default 60 ms: these tests ask whether
        # the columns reach the model, and a test worker beside this one on two cores can hold
        # the kernel's reply past 60 ms (the budget itself is held by the provider's vitest
        # tests)
        settings = tmp / "settings" / "@rsql-assistant" / "jupyterlab"
        settings.mkdir(parents=True)
        (settings / "completion.jupyterlab-settings").write_text('{"contextTimeoutMs": 1000}')
        (root / "sales.csv").write_text("region,revenue\nnorth,120.5\nsouth,98.25\n")
        yield Lab(url, token, root, provider)


@pytest.fixture
def model(lab: Lab) -> Iterator[FakeProvider]:
    """The module's provider as it started, answering with the columns model."""
    fp = lab.provider
    fp.reset()
    fp.respond = _columns_model
    yield fp
    fp.respond = None


def _type_in(page: Any, index: int, text: str) -> Any:
    """Click into cell `index`'s editor, at its end, and type `text` key by key."""
    cell = page.locator(CELLS).nth(index)
    cell.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type(text, delay=40)
    return cell


def _source(cell: Any) -> str:
    """The editor's text without the ghost text (a widget inside the editor's DOM)."""
    return str(
        cell.locator(".cm-content").evaluate(
            "el => Array.from(el.querySelectorAll('.cm-line')).map(line => {"
            "  const copy = line.cloneNode(true);"
            "  copy.querySelectorAll('.jp-GhostText').forEach(g => g.remove());"
            "  return copy.textContent; }).join('\\n')"
        )
    )


@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_sales_dot_suggests_a_real_column_tab_accepts_escape_dismisses(
    chromium_browser: Any, frontend: str, lab: Lab, model: FakeProvider, tmp_path: Path
) -> None:
    name = f"sales-{frontend}.ipynb"
    # a first cell of its own: the proxy caches identical completions, and this test wants to
    # see the prompt the model got
    load = f"{LOAD_SALES}  # in {frontend}"
    write_notebook(lab.root, name, [load, "", ""])
    with notebook_page(chromium_browser, lab.address(frontend, name), f"inline-{frontend}") as page:
        run_cell(page, 0)
        cell = _type_in(page, 1, "sales.")
        ghost = cell.locator(GHOST)
        ghost.wait_for(timeout=20_000)
        page.wait_for_function(
            f"() => document.querySelectorAll({CELLS!r})[1].querySelector({GHOST!r})"
            "?.textContent.includes('revenue')",
            timeout=20_000,
        )
        # the column came from the kernel: the prompt's live session, not any cell's text
        prompts = _inline_prompts(model)
        assert prompts, "the fake provider received no completion request"
        assert FRAME_LINE.search(prompts[-1]), prompts[-1]
        assert all("revenue" not in c for c in (load, "sales."))
        page.keyboard.press("Tab")
        ghost.wait_for(state="detached", timeout=10_000)
        assert _source(cell) == "sales.revenue"

        # another suggestion, dismissed with Escape: nothing is inserted
        other = _type_in(page, 2, "sales.")
        other.locator(GHOST).wait_for(timeout=20_000)
        page.keyboard.press("Escape")
        other.locator(GHOST).wait_for(state="detached", timeout=10_000)
        time.sleep(0.5)
        assert _source(other) == "sales."
        if frontend == "lab":
            status = page.locator(STATUS)
            status.wait_for(timeout=10_000)
            assert status.text_content() == "rsql ✓"


def test_markup_in_a_completion_is_text_in_the_ghost_and_in_the_cell(
    chromium_browser: Any, lab: Lab, model: FakeProvider, tmp_path: Path
) -> None:
    """A model that answers with markup: the ghost text shows it as text, Tab inserts it as
    text, and nothing of it runs or becomes an element."""
    write_notebook(lab.root, "hostile.ipynb", ["hostile = 1", ""])
    with notebook_page(
        chromium_browser, lab.address("lab", "hostile.ipynb"), "inline-markup"
    ) as page:
        cell = _type_in(page, 1, "hostile.")
        ghost = cell.locator(GHOST)
        page.wait_for_function(
            f"() => document.querySelectorAll({CELLS!r})[1].querySelector({GHOST!r})"
            "?.textContent.includes('onerror')",
            timeout=20_000,
        )
        assert ghost.locator("img, script").count() == 0
        page.keyboard.press("Tab")
        ghost.wait_for(state="detached", timeout=10_000)
        assert _source(cell) == f"hostile.{MARKUP}"
        assert page.locator(".jp-Notebook img, .jp-Notebook script").count() == 0
        time.sleep(0.5)
        assert page.evaluate("() => window.rsqlPwned") is None


PROSE = "Sure! Here is the completion you asked for:"
TALKING_MODEL_ANSWER = f"{PROSE}\n```python\nbest = sales.revenue.max()\n```"
# every text the second cell's ghost text shows, in order, recorded by the page as it changes
RECORD_GHOSTS = f"""() => {{
  window.rsqlGhosts = [];
  const note = () => {{
    const ghost = document.querySelectorAll({CELLS!r})[1]?.querySelector({GHOST!r});
    const text = ghost ? ghost.textContent : null;
    if (text !== null && text !== window.rsqlGhosts[window.rsqlGhosts.length - 1]) {{
      window.rsqlGhosts.push(text);
    }}
  }};
  new MutationObserver(note).observe(
    document.body, {{ subtree: true, childList: true, characterData: true }});
}}"""


def test_a_model_that_talks_before_its_code_never_shows_the_talk_and_tab_inserts_only_code(
    chromium_browser: Any, lab: Lab, model: FakeProvider, tmp_path: Path
) -> None:
    """Issue 53, finding 10: the model streams a sentence, then its fenced code, word by word.
    Every state the ghost text passes through is recorded in the page: none holds a word of
    the sentence, and Tab inserts the code alone."""
    model.respond = lambda body: TALKING_MODEL_ANSWER
    model.word_delay = 0.1  # each word a state of its own, long enough for the editor to draw
    write_notebook(lab.root, "talking.ipynb", ["# a model that talks first", ""])
    with notebook_page(
        chromium_browser, lab.address("lab", "talking.ipynb"), "inline-talking"
    ) as page:
        page.evaluate(RECORD_GHOSTS)
        cell = _type_in(page, 1, "best = sales.")
        page.wait_for_function(
            f"() => document.querySelectorAll({CELLS!r})[1].querySelector({GHOST!r})"
            "?.textContent.includes('revenue.max()')",
            timeout=20_000,
        )
        page.keyboard.press("Tab")
        cell.locator(GHOST).wait_for(state="detached", timeout=10_000)
        states = page.evaluate("() => window.rsqlGhosts")
        assert states, "no ghost text was recorded"
        words = [w for w in PROSE.split() if len(w) > 3]  # "Sure!", "Here", "completion", ...
        talk = [s for s in states if any(w in s for w in words)]
        assert talk == [], f"the model's talk was the ghost text in {len(talk)} of {len(states)}"
        assert _source(cell) == "best = sales.revenue.max()"


def test_a_busy_kernel_still_gets_a_suggestion_at_once_with_the_columns_its_last_cell_made(
    chromium_browser: Any, lab: Lab, model: FakeProvider, tmp_path: Path
) -> None:
    """A cell of the same notebook sleeps: the kernel cannot answer now, but the frame the cell
    before it made was sent to the editor when that cell ended (issue 55, item 5), so the
    completion names its column, and shows long before the sleep ends."""
    write_notebook(lab.root, "busy.ipynb", [LOAD_SALES, "import time\ntime.sleep(12)", ""])
    with notebook_page(chromium_browser, lab.address("lab", "busy.ipynb"), "inline-busy") as page:
        run_cell(page, 0)
        model.received.clear()
        run_cell(page, 1, wait=False)
        started = time.monotonic()
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='busy']", state="attached", timeout=10_000
        )
        cell = _type_in(page, 2, "sales.")
        page.wait_for_function(
            f"() => document.querySelectorAll({CELLS!r})[2].querySelector({GHOST!r})"
            "?.textContent.includes('revenue')",
            timeout=8_000,
        )
        shown_after = time.monotonic() - started
        assert shown_after < 8, f"the suggestion took {shown_after:.1f} s: the editor waited"
        prompts = _inline_prompts(model)
        assert prompts and FRAME_LINE.search(prompts[0]), prompts
        assert page.locator(".jp-Notebook-ExecutionIndicator[data-status='busy']").count() == 1
        assert "revenue" in (cell.locator(GHOST).text_content() or "")


def test_the_first_pause_right_after_running_a_cell_knows_the_frame_it_made(
    chromium_browser: Any, lab: Lab, model: FakeProvider, tmp_path: Path
) -> None:
    """Issue 55, item 5: run the cell that loads a frame and type in the next one at once; the
    cell is still finishing when the pause begins (it waits for a file the test writes half a
    second into the pause, as a slow load on a busy machine would). The first completion the
    proxy forwards already lists the frame's columns: the kernel's answer, asked right behind
    the cell, came as the cell ended, and the pause took it (before: a busy kernel at the pause
    was not asked, and the completion went without them)."""
    gate = lab.root / "go-first-pause"
    slow_load = (
        f"{LOAD_SALES}\nimport os, time\n"
        f"while not os.path.exists({gate.name!r}):\n    time.sleep(0.02)"
    )
    write_notebook(lab.root, "first-pause.ipynb", ["import pandas as pd", slow_load, ""])
    with notebook_page(
        chromium_browser, lab.address("lab", "first-pause.ipynb"), "inline-first-pause"
    ) as page:
        run_cell(page, 0)  # pandas imported: the load below is quick but for its gate
        model.received.clear()
        run_cell(page, 1, wait=False)
        page.wait_for_selector(
            ".jp-Notebook-ExecutionIndicator[data-status='busy']", state="attached", timeout=10_000
        )
        cell = _type_in(page, 2, "sales.")
        time.sleep(0.5)  # the pause (250 ms after the last key) has begun, the cell still runs
        gate.write_text("")
        cell.locator(GHOST).wait_for(timeout=20_000)
        prompts = _inline_prompts(model)
        assert prompts, "the fake provider received no completion request"
        assert FRAME_LINE.search(prompts[0]), f"the first completion had no frame:\n{prompts[0]}"
        page.wait_for_function(
            f"() => document.querySelectorAll({CELLS!r})[2].querySelector({GHOST!r})"
            "?.textContent.includes('revenue')",
            timeout=10_000,
        )


def test_off_in_a_policy_window_the_status_says_so_and_nothing_is_sent(
    chromium_browser: Any, lab: Lab, model: FakeProvider, tmp_path: Path
) -> None:
    message = "Exam in progress: no assistant"
    window = {"name": WINDOW, "groups": ["*"], "minutes": 30, "mode": "off", "message": message}
    status, body = lab.call("POST", "admin/windows", window)
    assert status == 200, body
    try:
        write_notebook(lab.root, "exam.ipynb", [LOAD_SALES, ""])
        with notebook_page(
            chromium_browser, lab.address("lab", "exam.ipynb"), "inline-window"
        ) as page:
            item = page.locator(STATUS)
            page.wait_for_function(
                f"() => document.querySelector({STATUS!r})?.textContent === 'rsql: off (window)'",
                timeout=20_000,
            )
            assert message in (item.get_attribute("title") or "")
            run_cell(page, 0)
            model.received.clear()
            # what the editor asks: the proxy refuses a completion in the window too, so
            # nothing at the provider alone would not show that the editor stopped asking
            asked: list[str] = []
            page.on(
                "request",
                lambda r: (
                    asked.append(r.url) if r.method == "POST" and "rsql/inline" in r.url else None
                ),
            )
            cell = _type_in(page, 1, "sales.")
            time.sleep(3)  # debounce, context and a model answer would all be in by now
            assert cell.locator(GHOST).count() == 0
            assert _source(cell) == "sales."
            assert asked == [], "the editor asked for a completion in the window"
            assert list(model.received) == [], "the fake provider received a request"
            assert item.text_content() == "rsql: off (window)"
    finally:
        end = urllib.parse.quote(WINDOW)
        status, body = lab.call("POST", f"admin/windows/{end}/end", {})
        assert status == 200, body


def test_a_window_that_ends_brings_completions_back_within_seconds(
    chromium_browser: Any, lab: Lab, model: FakeProvider, tmp_path: Path
) -> None:
    """Issue 55, item 5: a window turns completions off for 30 s. The user sees why (JupyterLab:
    the status item; Notebook 7, which has no status bar: an item in the notebook's toolbar),
    and when the window ends completions come back within seconds (the proxy gave its end), not
    at the next minute's poll. Both frontends open under the one window, each with its own
    notebook and kernel: one window of 30 s, where each frontend waited out 20 s of its own (the
    window holds two page loads now, 7 s here, twice that on a machine twice as slow)."""
    name = "inline-short"
    message = "Quiz in progress: no ghost text"
    window = {
        "name": name,
        "groups": ["*"],
        "minutes": 30 / 60,
        "mode": "custom",
        "models": ["*"],
        "completions": False,
        "message": message,
    }
    status, body = lab.call("POST", "admin/windows", window)
    assert status == 200, body
    try:
        status, inline = lab.call("GET", "inline")
        assert status == 200 and inline["on"] is False and inline["reason"] == "window", inline
        assert 0 < inline["ends_in_s"] <= 30, inline
        ends = time.monotonic() + inline["ends_in_s"]
        with ExitStack() as pages:
            opened = {}
            for frontend in ("lab", "notebook"):
                notebook = f"short-{frontend}.ipynb"
                write_notebook(lab.root, notebook, [f"{LOAD_SALES}  # {frontend}", ""])
                page = pages.enter_context(
                    notebook_page(
                        chromium_browser, lab.address(frontend, notebook), f"{name}-{frontend}"
                    )
                )
                item = STATUS if frontend == "lab" else f".jp-Toolbar {STATUS}"
                page.wait_for_function(  # within the window: after its end it says nothing
                    f"() => document.querySelector({item!r})?.textContent === 'rsql: off (window)'",
                    timeout=max(1.0, ends - time.monotonic()) * 1000,
                )
                shown = page.locator(item)
                assert shown.is_visible(), f"{frontend}: the reason is not where the user sees it"
                assert message in (shown.get_attribute("title") or ""), frontend
                assert time.monotonic() < ends, f"{frontend}: the page took the whole window"
                opened[frontend] = page
            for frontend, page in opened.items():
                # back within seconds of the window's end (a minute's poll would miss this); the
                # second page is looked at after the first, so its lateness is an upper bound
                back = "() => document.querySelector('.rsql-inline-status')"
                if frontend == "lab":
                    back += "?.textContent === 'rsql ✓'"
                else:  # the toolbar item goes away: nothing is off any more
                    back += "?.classList.contains('lm-mod-hidden')"
                page.wait_for_function(back, timeout=max(1.0, ends - time.monotonic() + 6) * 1000)
                late = time.monotonic() - ends
                assert late < 6, f"{frontend}: completions came back {late:.1f} s after the end"
            for frontend, page in opened.items():
                run_cell(page, 0)  # the frame, for the completion's columns
                model.received.clear()
                cell = _type_in(page, 1, "sales.")
                cell.locator(GHOST).wait_for(timeout=20_000)
                # this page's own request: its first cell, which ends in its frontend's name
                assert any(f"# {frontend}" in p for p in _inline_prompts(model)), frontend
    finally:
        lab.call("POST", f"admin/windows/{urllib.parse.quote(name)}/end", {})
