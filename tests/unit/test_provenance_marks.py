"""The provenance marks as rsql-provenance reads them (rsql_magic/provenance/marks.py): the
fingerprint and counts the frontend writes (the same vectors frontend/test/provenance/ holds
its own side to), and a notebook's marks read as hostile input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest

from rsql_magic.errors import ProvenanceError
from rsql_magic.provenance.marks import (
    MAX_FINGERPRINTS,
    code_lines,
    fingerprint,
    read_mark,
    read_notebook,
    recount,
)
from tests.helpers import REPO

VECTORS = json.loads((REPO / "frontend/test/provenance/fingerprints.json").read_text())


def mark_for(source: str, kind: str = "ask", rid: str | None = "r1", **extra: Any) -> dict:
    """A mark as the frontend writes one for a cell the assistant wrote whole."""
    prints = [fingerprint(line) for line in code_lines(source)]
    return {
        "version": 1,
        "kind": kind,
        "model": "fake-small",
        "request_id": rid,
        "time": "2026-11-23T10:05:00.000Z",
        "lines": len(prints),
        "assistant_lines": len(prints),
        "fingerprints": prints,
        "more": [],
        **extra,
    }


def test_the_fingerprint_is_fnv1a_64_and_the_frontends_on_the_shared_vectors() -> None:
    assert fingerprint("") == "cbf29ce484222325"
    assert fingerprint("a") == "af63dc4c8601ec8c"
    assert fingerprint("foobar") == "85944171f73967e8"
    for v in VECTORS["lines"]:
        assert fingerprint(v["line"].strip(" \t")) == v["fingerprint"], v["line"]
    for cell in VECTORS["cells"]:
        assert len(code_lines(cell["source"])) == cell["lines"]
        assert recount(cell["source"], cell["fingerprints"]) == cell["assistant_lines"]


def test_a_notebook_counts_its_assisted_lines_from_the_cells_as_they_are_now(
    tmp_path: Path,
) -> None:
    written = "import pandas as pd\ndf = pd.read_csv('x.csv')\ndf.head()"
    edited = "import pandas as pd\ndf = pd.read_csv('y.csv')\ndf.head()\ndf.describe()"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Homework 1"),
        nbformat.v4.new_code_cell("x = 1\ny = 2"),
        nbformat.v4.new_code_cell(edited, metadata={"rsql": {"provenance": mark_for(written)}}),
    ]
    nbformat.write(nb, tmp_path / "hw1.ipynb")
    marks = read_notebook(tmp_path / "hw1.ipynb")
    assert (marks.code_cells, marks.code_lines) == (2, 6)
    (cell,) = marks.cells
    assert (cell.index, cell.number, cell.lines, cell.assistant_lines) == (2, 2, 4, 2)
    assert marks.assistant_lines == 2 and marks.share == pytest.approx(2 / 6)
    assert not cell.counts_agree  # the mark still says 3 of 3: written before the edit


def test_a_hostile_mark_is_read_as_far_as_it_goes_and_bounded() -> None:
    assert read_mark({"rsql": {}}) is None and read_mark("nope") is None
    odd = read_mark({"rsql": {"provenance": ["x"]}})
    assert odd is not None and odd.problems == ("the mark is not an object",)
    many = ["cbf29ce484222325"] * (MAX_FINGERPRINTS + 10)
    mark = read_mark(
        {
            "rsql": {
                "provenance": {
                    **mark_for("x"),
                    "kind": "exec",
                    "request_id": "../../etc/passwd",
                    "fingerprints": [*many, "<script>", 7],
                    "lines": -1,
                    "more": [{"kind": "inline", "request_id": "r2"}, "x"],
                }
            }
        }
    )
    assert mark is not None
    assert len(mark.fingerprints) == MAX_FINGERPRINTS
    assert mark.recorded_lines is None
    assert [c.kind for c in mark.contributions] == ["unknown", "inline"]
    assert any("unknown kind" in p for p in mark.problems)
    assert any("request id" in p for p in mark.problems)


def test_a_file_that_is_not_a_notebook_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "x.ipynb").write_text("{not json")
    with pytest.raises(ProvenanceError) as e:
        read_notebook(tmp_path / "x.ipynb")
    assert e.value.exit_code == 2
