"""Cells the assistant wrote (issue 75): their marks in a notebook and ``rsql-provenance``.

The frontend extension marks every cell the assistant writes or fills with ``rsql.provenance``
in its metadata (frontend/src/provenance/); the kernel tells it what it inserted
(:mod:`rsql_magic.session.cells`). Here, for an instructor: :mod:`.marks` reads a
notebook's marks and recounts their lines, :mod:`.checking` holds them against what the proxy
served (``POST {proxy}course/requests``), :mod:`.cli` is the command.
"""

from .checking import CellCheck, Served, Verdict, check_cell, read_served
from .marks import Contribution, Mark, MarkedCell, NotebookMarks, fingerprint, read_notebook

__all__ = [
    "CellCheck",
    "Contribution",
    "Mark",
    "MarkedCell",
    "NotebookMarks",
    "Served",
    "Verdict",
    "check_cell",
    "fingerprint",
    "read_notebook",
    "read_served",
]
