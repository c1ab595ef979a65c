"""The notebook's cells as one shell's session sees them: :class:`Cells`.

Which cell runs now and where it comes from (for the request's origin and a replay's label),
what the cells run so far left behind (the frames they bound, most recent first, and the cells
that failed: the context a question gets), and the next cell, where code from an answer goes,
with who wrote it for the frontend to mark (below). IPython's
``pre_run_cell`` / ``post_run_cell`` events feed it (``%load_ext rsql_magic`` registers them).

The cells the assistant writes, and who wrote them (:class:`Provenance`, :class:`CellChannel`):
a kernel cannot insert a cell, nor set a cell's metadata; the frontend does both. Two ways
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
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from IPython.display import display

from .. import render
from ..client import ChatResult
from ..context.frames import find_frames
from ..context.history import ErrorRecord, format_exception
from .config import SessionConfig
from .notebook import NotebookTracker, Origin, in_execute_request

__all__ = ["KINDS", "PAYLOAD_SOURCE", "TARGET", "CellChannel", "Cells", "Provenance"]

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


class Cells:
    """The running cell, the cells run before it, and the next one (see the module docstring)."""

    def __init__(self, shell: Any, config: SessionConfig) -> None:
        self.shell = shell
        self.config = config
        self.errors: list[ErrorRecord] = []  # failed cells since load (``{Err[-1]}``)
        self.recent_frames: list[str] = []  # frame names, most recently (re)bound first
        self._frame_ids: dict[str, int] = {}
        self.notebook = NotebookTracker()  # which notebook and cell a request comes from
        self.channel = CellChannel(shell)  # cells the frontend inserts from a click

    # -- the running cell ----------------------------------------------------------------

    def pre_run_cell(self, info: Any) -> None:
        """IPython's ``pre_run_cell``: remember the running cell (its id and source)."""
        self.notebook.pre_run_cell(info)

    def origin(self, *, in_cell: bool | None = None) -> Origin:
        """Which notebook and cell a request made now comes from (see :mod:`.notebook`). A
        widget's callback (the chat panel) runs in no cell: then the notebook only."""
        if in_cell is None:
            in_cell = in_execute_request(self.shell)
        return self.notebook.origin(self.shell, self.config.ask.notebook, in_cell=in_cell)

    def cell_labels(self) -> dict[str, str]:
        """Each cell id of this notebook with the cell's first line, when its file can be read."""
        return self.notebook.cell_labels(self.shell, self.config.ask.notebook)

    def cell_label(self, magic: str, line: str) -> str:
        """How a failing replay names the cell: its In [n] and its magic line."""
        # IPython counts the running cell already: In [n] is execution_count - 1 meanwhile
        n = getattr(self.shell, "execution_count", None)
        n = n - 1 if isinstance(n, int) and n > 1 else n
        src = f"{magic} {line}".strip()[:120]
        return f"cell In [{n}] `{src}`" if n else f"cell `{src}`"

    # -- the cells run before ------------------------------------------------------------

    def post_run_cell(self, result: Any) -> None:
        """Track recently (re)defined frames and failed cells. Cheap: one pass, type checks."""
        try:
            ns = self.shell.user_ns
            for name, obj in find_frames(ns).items():
                oid = id(obj)
                if self._frame_ids.get(name) != oid:
                    self._frame_ids[name] = oid
                    if name in self.recent_frames:
                        self.recent_frames.remove(name)
                    self.recent_frames.insert(0, name)
            for gone in [n for n in self._frame_ids if n not in ns]:
                self._frame_ids.pop(gone, None)
                if gone in self.recent_frames:
                    self.recent_frames.remove(gone)
            err = result.error_in_exec or result.error_before_exec
            if err is not None:
                src = getattr(result.info, "raw_cell", "") or ""
                if not src.lstrip().startswith(("%%ask", "%ask")):  # our own failures: not context
                    self.errors.append(
                        ErrorRecord(
                            getattr(result, "execution_count", None),
                            src,
                            format_exception(err),
                            type(err).__name__,
                        )
                    )
                    del self.errors[:-20]
        except Exception:  # a hook must never break the user's cell
            pass

    def last_error(self) -> ErrorRecord | None:
        """The latest failed cell (or an error from before the extension was loaded)."""
        if self.errors:
            return self.errors[-1]
        exc = getattr(sys, "last_value", None)
        if exc is not None:
            return ErrorRecord(None, "", format_exception(exc), type(exc).__name__)
        return None

    # -- the next cell -------------------------------------------------------------------

    def cell_code(self, answer: str, lang: str) -> tuple[str, str] | None:
        """``(language, cell)`` for the answer's first code block (one in ``lang`` first):
        ``%%R`` / ``%%sql`` on top when rpy2's / JupySQL's magics are loaded. None: no code."""
        blocks = render.extract_code(answer, lang)
        if not blocks:
            return None
        blang, code = blocks[0]
        loaded: set[str] = getattr(getattr(self.shell, "extension_manager", None), "loaded", set())
        kind = render.normalize_lang(blang)
        if kind == "r" and "rpy2.ipython" in loaded:
            code = "%%R\n" + code
        elif kind == "sql" and "sql" in loaded:
            code = "%%sql\n" + code
        return blang or lang, code

    def insert_cell(
        self,
        code: str,
        lang: str,
        *,
        title: str = "Code for the next cell",
        batch: bool | None = None,
        provenance: Provenance | None = None,
    ) -> bool:
        """Put ``code`` into a new cell below the running one. A batch run drops that, so the
        code is shown in the output under ``title`` instead. True when inserted.

        ``provenance``: the assistant wrote it; the frontend extension marks the cell
        (``rsql.provenance`` in its metadata) from a payload beside ``set_next_input``."""
        if self.config.is_batch() if batch is None else batch:
            md = f"**{title}** (batch run: not inserted):\n\n" + render.code_block(code, lang)
            display(render.markdown_bundle(md), raw=True)  # type: ignore[no-untyped-call]  # IPython has no annotations; model code inside: made safe
            return False
        self.shell.set_next_input(code, replace=False)
        payloads = getattr(self.shell, "payload_manager", None)
        if provenance is not None and payloads is not None:
            # one per reply, as set_next_input's (the frontend inserts the last one)
            payloads.write_payload(
                {"source": PAYLOAD_SOURCE, "text": code, "provenance": provenance.as_json()}
            )
        return True

    def insert_from_click(
        self,
        code: str,
        provenance: Provenance,
        done: Callable[[bool, str], None],
        *,
        below: str | None = None,
    ) -> bool:
        """Ask the frontend extension to insert ``code`` below the cell with id ``below`` from
        a widget's click, where no cell runs (:class:`CellChannel`); ``done``
        hears whether it did. False when no extension answers: copy the code instead."""
        return self.channel.insert(code, below=below, provenance=provenance, done=done)
