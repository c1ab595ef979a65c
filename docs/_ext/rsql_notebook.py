"""The demo notebook as a page of the site: a note on how it was run, and its outputs as
Sphinx can hold them.

The page is ``notebooks/demo.ipynb`` itself (``docs/users/demo.ipynb`` links to it), so the
note is added when the site reads it, after the notebook's title, not written into the notebook.

An ``%%ask`` answer's footer is set off by a Markdown rule (``---``, ``rsql_magic/render.py``).
myst-nb parses that Markdown into the cell's output container, where docutils allows no
transition (a rule may only separate sections) and warns, which fails a build with ``-W``.
This transform, run before docutils checks transitions, draws such a rule as HTML instead.

The outputs are hostile like any answer: the magics' Markdown has had raw HTML, images and
unsafe links taken out in the kernel (``safe_markdown``), and ``docs/conf.py`` has myst-nb read
output Markdown as plain CommonMark (no MyST directive or role, so a model's ```` ```{raw} ````
fence stays a code block). The second wall is here: every piece of raw HTML inside a cell's
output (a ``text/html`` output, or HTML the Markdown carried) goes through the kernel's own
sanitizer (``rsql_magic.sanitize.clean_html``) before it reaches the page, so no script runs
even when the first check is wrong.
"""

from __future__ import annotations

import json
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform


class NestedRules(SphinxTransform):
    # docutils.transforms.misc.Transitions runs at 830 and warns about what is left
    default_priority = 820

    def apply(self, **kwargs: Any) -> None:
        for rule in list(self.document.findall(nodes.transition)):
            if not isinstance(rule.parent, (nodes.document, nodes.section)):
                rule.replace_self(nodes.raw("", "<hr/>", format="html"))


def _in_output(node: nodes.Node) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, nodes.Element) and "cell_output" in parent.get("classes", []):
            return True
        parent = parent.parent
    return False


class SanitizedOutputs(SphinxTransform):
    default_priority = 821  # after NestedRules, so the rules it draws are checked too

    def apply(self, **kwargs: Any) -> None:
        from rsql_magic.sanitize import clean_html

        for raw in list(self.document.findall(nodes.raw)):
            if "html" in raw.get("format", "").split() and _in_output(raw):
                text = raw.astext()
                clean = clean_html(text)
                if clean != text:
                    raw.replace_self(nodes.raw("", clean, format="html"))


DEMO = "users/demo"
NOTE = (
    "```{note}\n"
    "This page is `notebooks/demo.ipynb`, executed when this site was built with "
    "`RSQL_REPLAY=only` and no proxy: every answer below is replayed from "
    "`docs/_data/demo-replay.jsonl`, recorded once from the small local model (SmolLM2-135M), "
    "so the answers are weak and `%ask_status` finds no proxy. The DataFrames, the R session, "
    "the database and the error are computed afresh on each build. "
    "[Reproducible notebooks](replay.md#this-sites-demo-page) says more.\n"
    "```"
)


def add_note(app: Sphinx, docname: str, source: list[str]) -> None:
    if docname != DEMO:
        return
    nb = json.loads(source[0])
    cell = {"cell_type": "markdown", "id": "rsql-docs-note", "metadata": {}, "source": NOTE}
    nb["cells"].insert(1, cell)  # after the title, which must stay the page's first heading
    source[0] = json.dumps(nb)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("source-read", add_note)
    app.add_transform(NestedRules)
    app.add_transform(SanitizedOutputs)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
