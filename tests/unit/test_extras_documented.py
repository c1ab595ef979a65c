"""Every extra pyproject.toml defines is a row of the install page's extras table (#55): a
newcomer choosing what to install sees each one, `mcp` included."""

from __future__ import annotations

import re

import tomllib

from tests.helpers import REPO


def test_every_extra_has_a_row_in_the_extras_table() -> None:
    with (REPO / "pyproject.toml").open("rb") as f:
        extras = set(tomllib.load(f)["project"]["optional-dependencies"])
    page = (REPO / "docs" / "getting-started.md").read_text()
    table = page[page.index("| extra | what it adds |") :].split("\n\n", 1)[0]
    rows = set(re.findall(r"^\| `([\w-]+)` \|", table, re.M))
    assert extras <= rows, f"extras without a row: {sorted(extras - rows)}"
    assert rows <= extras, f"rows for no extra: {sorted(rows - extras)}"
