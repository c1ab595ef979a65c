"""Copy code in a real browser: JupyterLab 4 and Notebook 7 on loopback, headless Chromium.

The chat panel's Copy code button writes the answer's code to the browser's clipboard. With
the clipboard allowed, what the page reads back is the code; with it refused, the code is
shown in a read-only text area, all of it selected, and the panel says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.helpers import require
from tests.helpers.browser import chromium, notebook_address, open_chat_panel, open_notebook
from tests.helpers.fake_provider import FakeProvider

pytestmark = pytest.mark.slow

# the model's code is hostile input too: markup in it must travel as text, never run
CODE = (
    '# </textarea><img src=x onerror="window.__rsqlPwned=1"><script>window.__rsqlPwned=2</script>\n'
    '(sales.groupby("region", as_index=False)["revenue_eur"].sum()\n'
    '      .sort_values("revenue_eur", ascending=False))'
)
ANSWER = f"Sorted by revenue:\n\n```python\n{CODE}\n```\n\nThe first row is the largest."
CELL = """\
%load_ext rsql_magic
import pandas as pd
sales = pd.DataFrame({"region": ["north", "south"], "revenue_eur": [10.5, 20.0]})
%ask_chat"""

# the second answer's text area: shown, focused, read-only, and all of its text selected
SELECTED = """() => {
  const t = document.querySelectorAll('.rsql-chat .rsql-code textarea')[1];
  return !!t && t.offsetParent !== null && t.readOnly && document.activeElement === t
    && t.value.length > 0 && t.selectionStart === 0 && t.selectionEnd === t.value.length;
}"""


def panel_text_has(words: str) -> str:
    return f"() => document.querySelector('.rsql-chat').textContent.includes({words!r})"


@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_copy_code_to_the_clipboard_or_selected(
    chromium_browser: Any,
    frontend: str,
    shared_lab: tuple[str, str, Path],
    fresh_provider: FakeProvider,
    tmp_path: Path,
) -> None:
    require("anywidget", reason="the Copy code button is an anywidget")

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    url, token, root = shared_lab
    notebook = f"clip-{frontend}.ipynb"
    nbformat.write(nb, root / notebook)
    fresh_provider.script(ANSWER, ANSWER)
    origin = url.rstrip("/")
    browser = chromium(chromium_browser)
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
    page = browser.new_page()
    try:
        open_notebook(page, notebook_address(url, token, notebook, frontend))
        _, box = open_chat_panel(page, root)

        # 1. the clipboard allowed: the code is on it
        page.evaluate("navigator.clipboard.writeText('nothing yet')")
        # questions of this test's own: the lab's proxy caches answers at temperature 0
        box.fill(f"Which region has the most revenue ({frontend})?")
        box.press("Enter")
        copy = page.get_by_role("button", name="Copy code")
        copy.wait_for(state="visible", timeout=30_000)
        copy.click()
        page.wait_for_function(panel_text_has("Copied to the clipboard."), timeout=15_000)
        assert page.evaluate("navigator.clipboard.readText()") == CODE

        # 2. the clipboard refused: the code is shown, selected, and the panel says so
        # Chromium lets a click write unless told otherwise: an empty grant refuses
        browser.clear_permissions()
        browser.grant_permissions([], origin=origin)
        box.fill(f"And again ({frontend})?")
        box.press("Enter")
        again = page.get_by_role("button", name="Copy code").nth(1)
        again.wait_for(state="visible", timeout=30_000)
        again.click()
        page.wait_for_function(SELECTED, timeout=15_000)
        shown = page.eval_on_selector_all(".rsql-chat .rsql-code textarea", "els => els[1].value")
        assert shown == CODE
        assert page.evaluate("window.__rsqlPwned === undefined")
        page.wait_for_function(
            panel_text_has("The clipboard is not available here"), timeout=15_000
        )
    except Exception:
        page.screenshot(path=str(tmp_path / f"clipboard-{frontend}-failure.png"))
        raise
    finally:
        browser.close()
