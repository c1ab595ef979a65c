"""Cells the frontend inserts on the kernel's word, and what the assistant wrote in them.

A kernel cannot insert a cell, nor set a cell's metadata: the frontend does both. Two ways
carry the kernel's word to it, both read by the frontend extension (frontend/src/provenance/):

- From a running cell (``%%ask --insert``, ``%%sql_ai --emit``): ``set_next_input``, which
  every frontend honours, and beside it a payload of our own, ``rsql_provenance``, with the
  same text and who wrote it (:class:`Provenance`). The extension sees the reply's payloads,
  finds the cell JupyterLab inserted from the text and marks it; a frontend without it (VS
  Code) inserts the cell unmarked, and a batch run inserts nothing.
- From a click (the chat panel's Insert, its query cell after Run SQL): no cell runs, and a
  payload set then would ride on the next cell's reply, into the wrong place. So a comm,
  :class:`CellChannel` (target ``rsql.cells``): opened from a running cell, the extension
  answers it ``ready``; then an insert goes to it, and it says where the cell went. No answer
  (no extension: VS Code, a lab with it switched off) and the caller shows the code to copy.

Nothing here runs a cell: the frontend inserts text, and the user runs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..client import ChatResult

__all__ = ["KINDS", "PAYLOAD_SOURCE", "TARGET", "CellChannel", "Provenance"]

# how the assistant came to write a cell: %%ask --insert, %%sql_ai --emit, agent mode's
# proposal (Accept, in the frontend), the chat panel's Insert and its query cell after Run SQL,
# an inline completion accepted (in the frontend)
KINDS = ("ask", "sql_ai", "agent", "chat", "chat_sql", "inline")
PAYLOAD_SOURCE = "rsql_provenance"  # the execute reply's payload beside set_next_input
TARGET = "rsql.cells"  # the comm the frontend extension registers
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

# what an insert comes to: (inserted, why not or where), called on the kernel's main thread
InsertDone = Callable[[bool, str], None]


@dataclass(frozen=True)
class Provenance:
    """Who wrote a cell the assistant puts in the notebook: the way it came (``kind``), the
    model that answered and the proxy's request id of the answer (``X-Request-Id``), which
    the course log and ``rsql-provenance`` check. The frontend adds the time and counts the
    lines, from the cell as it inserted it."""

    kind: str
    model: str | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, kind: str, result: ChatResult | None) -> Provenance:
        """The provenance of code from `result` (None: not known, e.g. a replayed answer's
        request id is the recorded one's, which is kept)."""
        if kind not in KINDS:
            raise ValueError(f"unknown provenance kind {kind!r}")
        if result is None:
            return cls(kind)
        rid = result.request_id if isinstance(result.request_id, str) else None
        return cls(
            kind,
            (result.model or None) if isinstance(result.model, str) else None,
            rid if rid and _ID.fullmatch(rid) else None,
        )

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "request_id": self.request_id}


class CellChannel:
    """The comm to the frontend extension that inserts cells (see the module docstring).

    :meth:`open` from a running cell (the chat panel's); :attr:`ready` once the extension
    answered; :meth:`insert` asks it to insert a cell below the cell with id ``below`` (else
    below the active one) and calls ``done`` with its answer.
    """

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.ready = False
        self._comm: Any = None
        self._waiting: dict[int, InsertDone] = {}
        self._count = 0

    def open(self) -> None:
        """Open the comm anew (each chat panel does: a page reloaded since the last one is a
        new frontend, which knows no comm of the old page's), and wait for its answer. Outside a
        kernel (a terminal, a test's shell) there is no frontend to answer: nothing opens."""
        if getattr(self.shell, "kernel", None) is None:
            return
        from comm import create_comm

        if self._comm is not None:
            earlier, self._comm = self._comm, None
            earlier.close()
        self.ready = False

        comm = create_comm(target_name=TARGET, data={"version": 1})
        # what the comm of an earlier panel hears later is no word of this one's frontend
        comm.on_msg(lambda msg: self._on_msg(comm, msg))
        comm.on_close(lambda msg: self._on_close(comm, msg))
        self._comm = comm

    def insert(
        self, code: str, *, below: str | None, provenance: Provenance, done: InsertDone
    ) -> bool:
        """Ask the frontend to insert `code` (it never runs it). False when no frontend
        extension answered the channel: the caller offers the code to copy instead."""
        if not self.ready or self._comm is None:
            return False
        self._count += 1
        self._waiting[self._count] = done
        self._comm.send(
            {
                "id": self._count,
                "insert": {"code": code, "below": below, "provenance": provenance.as_json()},
            }
        )
        return True

    def _on_msg(self, comm: Any, msg: dict[str, Any]) -> None:
        data = (msg.get("content") or {}).get("data")
        if comm is not self._comm or not isinstance(data, dict):
            return
        if data.get("ready") is True:
            self.ready = True
        if isinstance(data.get("id"), int) and "inserted" in data:
            done = self._waiting.pop(data["id"], None)
            if done is not None:
                done(data["inserted"] is True, str(data.get("why") or "")[:200])

    def _on_close(self, comm: Any, _msg: dict[str, Any]) -> None:
        if comm is not self._comm:
            return
        self.ready = False
        self._comm = None
        waiting, self._waiting = self._waiting, {}
        for done in waiting.values():
            done(False, "the notebook closed the channel")
