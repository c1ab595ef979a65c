"""Which notebook and cell a request comes from: the running cell's source finds its notebook
file in a batch run, the Jupyter server's session name is made relative to its root, explicit
settings win, the search is bounded, and only well-formed ids and paths are ever sent."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rsql_magic.client import notebook_header, valid_cell_id
from rsql_magic.session.notebook import NotebookTracker, find_notebook
from tests.helpers.kernel_policy import jpserver_file, write_notebook

ASK_A = "%%ask --no-data\nWhich regions sold most?"
ASK_B = "%%ask --no-data\nWhat is a left join?"


@pytest.fixture(autouse=True)
def no_hints(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No notebook named by the outer environment; HOME is the test's folder."""
    for name in ("JPY_SESSION_NAME", "JPY_PARENT_PID", "RSQL_NOTEBOOK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def shell(*history: str, **ns: Any) -> Any:
    """What the tracker reads of an IPython shell: its namespace and the cells run so far."""
    return SimpleNamespace(
        user_ns=dict(ns), history_manager=SimpleNamespace(input_hist_raw=["", *history])
    )


def running(tracker: NotebookTracker, source: str, cell_id: str | None = None) -> None:
    """IPython's pre_run_cell for a cell (the frontend's id when it sends one)."""
    tracker.pre_run_cell(SimpleNamespace(raw_cell=source, cell_id=cell_id))


def test_a_batch_runs_notebook_and_cell_are_found_by_the_running_cells_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "project"
    _, ids_a = write_notebook(work / "sales.ipynb", ["%load_ext rsql_magic", ASK_A])
    _, ids_b = write_notebook(work / "joins.ipynb", ["%load_ext rsql_magic", ASK_B])
    monkeypatch.chdir(work)  # nbclient runs the kernel in the notebook's folder
    tracker = NotebookTracker()
    running(tracker, ASK_B + "\n")  # a trailing newline the file does not have: the same cell
    origin = tracker.origin(shell("%load_ext rsql_magic", ASK_B), None, in_cell=True)
    # relative to the home folder (a personal server's usual root): as JupyterLab would name it
    assert (origin.notebook, origin.cell) == ("project/joins.ipynb", ids_b[1])
    assert origin.how == "found by the running cell's source"
    # the kernel keeps its notebook: a later cell is looked up in the same file
    running(tracker, "%load_ext rsql_magic")
    assert tracker.origin(shell(), None, in_cell=True).notebook == "project/joins.ipynb"
    # the other notebook's kernel finds the other one
    other = NotebookTracker()
    running(other, ASK_A)
    assert (other.origin(shell(), None, in_cell=True).cell) == ids_a[1]


def test_cells_run_before_tell_apart_notebooks_that_share_the_running_cell(tmp_path: Path) -> None:
    write_notebook(tmp_path / "a.ipynb", ["x = 1", ASK_A])
    _, ids_b = write_notebook(tmp_path / "b.ipynb", ["y = 2", ASK_A])
    found = find_notebook(ASK_A, [], [str(tmp_path)], history=["y = 2", ASK_A])
    assert found is not None and Path(found.path).name == "b.ipynb"
    assert found.cells[ASK_A] == ids_b[1]
    # nothing tells them apart: unknown, rather than another notebook's bill
    assert find_notebook(ASK_A, [], [str(tmp_path)], history=[]) is None
    # a file named on the runner's command line (jupyter nbconvert --execute a.ipynb) wins a tie
    named = find_notebook(ASK_A, [str(tmp_path / "a.ipynb")], [str(tmp_path)], history=[])
    assert named is not None and Path(named.path).name == "a.ipynb"


def test_the_search_skips_huge_files_and_fifos_and_stays_within_its_time(tmp_path: Path) -> None:
    huge = {
        "cells": [{"cell_type": "code", "id": "huge1", "source": ASK_A, "metadata": {}}],
        "padding": "x" * (6 << 20),
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
    }
    for i in range(60):  # more files than one search reads
        other = tmp_path / f"other{i:02}.ipynb"
        write_notebook(other, [f"z = {i}"])
        os.utime(other, (time.time() - 100, time.time() - 100))
    # the huge one (it holds the cell) and the FIFO are the newest: the search comes to them
    # first, and only their size and kind keep them out
    (tmp_path / "huge.ipynb").write_text(json.dumps(huge))
    os.mkfifo(tmp_path / "pipe.ipynb")  # reading a FIFO would block the kernel forever
    t0 = time.monotonic()
    assert find_notebook(ASK_A, [], [str(tmp_path)]) is None
    # named on a command line they are read, not listed: refused all the same
    named = [str(tmp_path / "pipe.ipynb"), str(tmp_path / "huge.ipynb")]
    assert find_notebook(ASK_A, named, []) is None
    assert time.monotonic() - t0 < 1.0
    # the control: the huge notebook within a larger bound is found, by the cell it holds
    found = find_notebook(ASK_A, [], [str(tmp_path)], max_bytes=8 << 20)
    assert found is not None and found.cells[ASK_A] == "huge1"
    # the same cell in a notebook of ordinary size, among the newest files: found
    _, ids = write_notebook(tmp_path / "small.ipynb", [ASK_A])
    found = find_notebook(ASK_A, [], [str(tmp_path)])
    assert found is not None and found.cells[ASK_A] == ids[0]


def test_the_jupyter_servers_session_name_is_made_relative_to_its_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "srv-root"
    notebook = root / "course" / "week 1 – Übung.ipynb"
    _, ids = write_notebook(notebook, [ASK_A])
    pid = 4_000_001  # the server's pid: only its runtime file matters
    jpserver_file(tmp_path / "runtime", pid, root)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JPY_PARENT_PID", str(pid))
    for name in (str(notebook), "course/week 1 – Übung.ipynb"):  # newer servers: absolute
        monkeypatch.setenv("JPY_SESSION_NAME", name)
        tracker = NotebookTracker()
        running(tracker, ASK_A, "lab-cell-7")  # JupyterLab's cellId
        origin = tracker.origin(shell(), None, in_cell=True)
        assert (origin.notebook, origin.cell) == ("course/week 1 – Übung.ipynb", "lab-cell-7")
        # a frontend that sends no cell id: the cell is found in the notebook's file
        running(tracker, ASK_A, None)
        assert tracker.origin(shell(), None, in_cell=True).cell == ids[0]
        # the chat panel's widgets run in no cell: the notebook only
        assert tracker.origin(shell(), None, in_cell=False).cell is None
    # no server's file for the parent: the name was inherited from whoever started this kernel
    monkeypatch.setenv("JPY_PARENT_PID", str(pid + 1))
    tracker = NotebookTracker()
    running(tracker, ASK_A)
    assert tracker.origin(shell(), None, in_cell=True).notebook is None


def test_a_setting_names_the_notebook_first_then_vs_code_and_papermill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ids = write_notebook(tmp_path / "report.ipynb", [ASK_A])
    monkeypatch.chdir(tmp_path)
    tracker = NotebookTracker()
    running(tracker, ASK_A)
    vsc = shell(__vsc_ipynb_file__=str(tmp_path / "report.ipynb"))
    assert tracker.origin(vsc, None, in_cell=True).how == "VS Code"
    assert tracker.origin(vsc, None, in_cell=True).cell == ids[0]  # from the file VS Code names
    paper = shell(PAPERMILL_INPUT_PATH="report.ipynb")
    assert (
        tracker.origin(paper, None, in_cell=True).notebook,
        tracker.origin(paper, None, in_cell=True).how,
    ) == ("report.ipynb", "papermill")
    monkeypatch.setenv("RSQL_NOTEBOOK", "teams/finance/q3.ipynb")
    assert tracker.origin(vsc, None, in_cell=True).notebook == "teams/finance/q3.ipynb"
    # RSQLMagic.notebook
    assert tracker.origin(vsc, "mine.ipynb", in_cell=True).notebook == "mine.ipynb"


def test_only_well_formed_cell_ids_and_bounded_paths_are_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = {
        "cells": [
            {"cell_type": "code", "id": "c1\r\nX-Evil: yes", "source": ASK_A, "metadata": {}}
        ],
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
    }
    (tmp_path / "crafted.ipynb").write_text(json.dumps(nb))
    monkeypatch.chdir(tmp_path)
    tracker = NotebookTracker()
    running(tracker, ASK_A, "also\nbad")
    origin = tracker.origin(shell(), None, in_cell=True)
    assert origin.notebook == "crafted.ipynb" and origin.cell is None
    assert valid_cell_id("9a4f0c2e-1b2d-4c1e-8f00-123456789abc") and not valid_cell_id("x" * 65)
    assert (
        notebook_header("Kurs/Woche 1 – Übung.ipynb")
        == "Kurs/Woche%201%20%E2%80%93%20%C3%9Cbung.ipynb"
    )
    assert notebook_header("a/" * 600) is None  # past 1024 characters the header is not sent
