"""The chat panel in a real browser: JupyterLab 4 (and Notebook 7) on loopback, headless Chromium.

A full ``jupyter lab`` (unlike tests.helpers.servers' quick servers, which switch the lab extension off)
serves the rsql proxy in front of the fake provider; the notebook's kernel finds that proxy by
itself (``JPY_PARENT_PID`` -> the server's ``jpserver-<pid>.json``). Chromium runs
``%ask_chat``, types a question, presses Enter and watches the answer stream into the panel.
The screenshot goes to ``test-artifacts/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.helpers import REPO
from tests.helpers.browser import chromium, notebook_address, open_chat_panel, open_notebook
from tests.helpers.fake_provider import FakeProvider

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts"

NOTEBOOK_CELL = """\
%load_ext rsql_magic
%load_ext rsql_magic.chat
import pandas as pd
sales = pd.DataFrame({"region": ["north", "south", "east"], "revenue_eur": [10.5, 20.0, 7.25]})
%ask_chat"""

ANSWER = """The **south** region has the most revenue: €20.00, ahead of north (€10.50) and \
east (€7.25). Together the three regions make €37.75, so south alone brings in a little more \
than half of it.

| region | revenue_eur |
|---|---|
| south | 20.00 |
| north | 10.50 |
| east | 7.25 |

To see the ranking in your own session, sort the frame by `revenue_eur`, largest first. With \
more rows per region you would group first and sum, then sort the totals in the same way; \
the code below works for both, since every region appears once here.

```python
(sales.groupby("region", as_index=False)["revenue_eur"].sum()
      .sort_values("revenue_eur", ascending=False))
```

Ask a follow-up if you want a chart of it."""
LAST_WORDS = "a chart of it."
# the panel's usage line (from GET me): the requests the user has left today
LEFT = (
    "() => { const line = document.querySelector('.rsql-chat .rsql-usage');"
    " const m = /requests left: (\\d+) of 100\\/day/.exec(line ? line.textContent : '');"
    " return m ? Number(m[1]) : 0; }"
)


@pytest.mark.parametrize("frontend", ["lab", "notebook"])
def test_chat_panel_in_chromium(
    chromium_browser: Any,
    frontend: str,
    shared_lab: tuple[str, str, Path],
    fresh_provider: FakeProvider,
) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CELL)]
    url, token, root = shared_lab
    notebook = f"chat-{frontend}.ipynb"
    nbformat.write(nb, root / notebook)
    fresh_provider.script(ANSWER)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"chat-panel-{frontend}.png"
    browser = chromium(chromium_browser)
    page = browser.new_page()
    try:
        open_notebook(page, notebook_address(url, token, notebook, frontend))
        panel, box = open_chat_panel(page, root)
        # the usage line comes from GET me (the other frontend's test may have asked
        # before this one, in the same lab)
        left = page.wait_for_function(LEFT, timeout=30_000).json_value()
        assert 0 < left <= 100
        # a question of this test's own: the lab's proxy caches answers at temperature 0
        question = f"Which region has the most revenue ({frontend})?"
        box.fill(question)
        box.press("Enter")
        # streaming: a partial answer with the cursor shows before the whole answer
        page.wait_for_function(
            "() => { const a = document.querySelector('.rsql-chat .rsql-answer');"
            " return a && a.textContent.includes('▍') && !a.textContent.includes('chart of it'); }",
            timeout=30_000,
        )
        page.wait_for_function(
            "() => { const a = document.querySelector('.rsql-chat .rsql-answer');"
            " return a && a.textContent.includes('chart of it') && !a.textContent.includes('▍'); }",
            timeout=30_000,
        )
        answer = page.inner_text(".rsql-chat .rsql-answer")
        assert "south" in answer and "sort_values" in answer and LAST_WORDS in answer, answer
        # rendered Markdown: bold and a highlighted code block, not raw asterisks
        assert page.query_selector(".rsql-chat .rsql-answer strong") is not None
        assert page.query_selector(".rsql-chat .rsql-answer pre") is not None
        assert page.query_selector(".rsql-chat .rsql-answer table") is not None
        assert "**" not in answer, answer
        # the answer's buttons come just after its final text
        page.get_by_role("button", name="Copy code").wait_for(state="visible", timeout=15_000)
        page.wait_for_function(f"() => ({LEFT})() === {left - 1}", timeout=30_000)
        assert box.input_value() == "", box.input_value()  # cleared for the next one
        # the context reached the provider: the frame picked up from the namespace
        sent = fresh_provider.received[-1].body["messages"][-1]["content"]
        assert "DataFrame sales" in sent and "revenue_eur" in sent, sent
        assert question in sent
        page.get_by_role("button", name="Copy code").click()
        page.wait_for_selector(".rsql-chat .rsql-code textarea", timeout=15_000)
        panel.scroll_into_view_if_needed()
        page.screenshot(path=str(shot), full_page=False)
        panel.screenshot(path=str(ARTIFACTS / f"chat-panel-{frontend}-panel.png"))
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"chat-panel-{frontend}-failure.png"))
        raise
    finally:
        browser.close()
    assert shot.stat().st_size > 10_000
