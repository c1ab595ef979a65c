"""The demo notebook runs headless (``jupyter nbconvert --execute``) through the real proxy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import kernel_env, outputs_text, require_r, user_prompts
from tests.helpers.servers import JupyterServer

pytestmark = pytest.mark.slow

REPLIES = [
    "**west** has the highest total.\n\n```python\nsales.groupby('region').revenue.sum()\n```",
    "The column is `region`, not `regoin`:\n\n```python\nsales.groupby('region')['revenue'].sum()\n```",
    "```r\nfit <- lm(mpg ~ wt + cyl, data = cars_df)\nsummary(fit)\n```",
    "```sql\nSELECT c.country, SUM(o.total) AS total\nFROM orders o JOIN customers c "
    "ON c.id = o.customer_id\nGROUP BY c.country ORDER BY total DESC;\n```",
    "Daily units, prices and revenue per region for 2024.",
]


def test_demo_notebook_runs_headless(
    jupyter_proxy: JupyterServer, fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    require_r()
    fresh_provider.script(*REPLIES)
    shutil.copy(REPO / "notebooks" / "demo.ipynb", tmp_path / "demo.ipynb")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "demo.ipynb",
            "--output",
            "demo.out.ipynb",
        ],
        env=kernel_env(jupyter_proxy.proxy_url, jupyter_proxy.token),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    prompts = user_prompts(fresh_provider.received)
    assert len(prompts) == 5  # --show-context sent nothing
    assert "### DataFrame `sales` (pandas): 1,460 rows x 5 columns" in prompts[0]
    assert "KeyError: 'regoin'" in prompts[1] and "## Last error" in prompts[1]
    assert "### data.frame `cars_df`: 32 rows x 11 columns" in prompts[2]
    assert "- cyl: factor, 3 levels: 4, 6, 8" in prompts[2]
    assert "- am: factor, 2 levels: automatic, manual" in prompts[2]
    low = prompts[3].lower()
    assert "create table orders" in low and "customer_id" in low and "create table customers" in low
    assert "## R session" not in prompts[3]  # --sql picks the context: no R session by default
    assert "what does the sales table contain?" in prompts[4]  # '%ask ...?' is not a help lookup

    out = json.loads((tmp_path / "demo.out.ipynb").read_text())
    code_cells = [c for c in out["cells"] if c["cell_type"] == "code"]
    shown = [outputs_text(c) for c in code_cells]
    status = next(
        s for c, s in zip(code_cells, shown, strict=True) if "".join(c["source"]) == "%ask_status"
    )
    assert "RSQL_PROXY_URL" in status and "**you**" in status
    assert any("**west** has the highest total." in s for s in shown)
    assert any("Code for the next cell" in s and "SUM(o.total)" in s for s in shown)
    assert any("nothing sent (--show-context)" in s for s in shown)
