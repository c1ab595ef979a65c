"""Sphinx configuration of the rsql-assistant documentation (``make docs``).

Pages are MyST Markdown; the demo notebook (``users/demo.ipynb``, a link to
``notebooks/demo.ipynb``) is executed on every build from the answers recorded in
``docs/_data/demo-replay.jsonl`` (``RSQL_REPLAY=only``): no proxy, key or model is used, and a
question whose recorded answer no longer matches fails the build (``make docs-record`` records
them again). ``tests/e2e/test_docs_site.py`` builds the site with warnings as errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))  # the packages, also from a checkout that is not installed

import rsql_demo_env  # noqa: E402 (found through the path above)

project = "rsql-assistant"
author = "the rsql-assistant contributors"
copyright = "the rsql-assistant contributors"

extensions = [
    "myst_nb",  # MyST Markdown pages and executed notebooks (includes myst_parser)
    "sphinx_copybutton",
    "rsql_settings",  # {rsql-settings}: the settings references, from the traits' help
    "rsql_notebook",  # the demo notebook's answers, with their footer rule
]

exclude_patterns = ["_build", "_data", "_ext", "**/.ipynb_checkpoints"]
# straight quotes: the settings' help holds JSON and Python examples that readers copy
smartquotes = False
# the site links only to its own pages and to files in the repository; nothing remote is fetched
nitpicky = True

# -- MyST ----------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
# every heading to level 4 gets a GitHub-style anchor, so [x](page.md#a-heading) is checked:
# a link to a heading that does not exist is a warning (an error in the test's build)
myst_heading_anchors = 4

# -- the demo notebook, executed from recorded answers ---------------------------------------
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True  # a failing cell fails the build (raises-exception cells aside)
nb_execution_show_tb = True
nb_merge_streams = True
# an output's Markdown (a model's answer) is read as plain CommonMark: no MyST directive or
# role runs from it (myst-nb's default, written down so it cannot change under us); raw HTML
# in outputs is sanitized again by rsql_notebook
nb_render_markdown_format = "commonmark"

# the same kernel environment as when the answers were recorded (rsql_demo_env says why)
os.environ.update(rsql_demo_env.kernel_env("only"))
for _name in rsql_demo_env.UNSET:
    os.environ.pop(_name, None)

# -- HTML ----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "rsql-assistant"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_depth": 3,
    "show_toc_level": 2,
    "navbar_align": "left",
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_show_sourcelink = False
