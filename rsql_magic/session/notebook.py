"""Which notebook and which cell a request comes from, so the proxy attributes its cost there.

The notebook, first found wins:

1. ``RSQLMagic.notebook``, then env ``RSQL_NOTEBOOK``: used as given;
2. ``JPY_SESSION_NAME``, when the kernel runs under a Jupyter server (JupyterLab, Notebook 7,
   JupyterHub): the server sets it to the notebook's path, absolute in newer versions, which is
   made relative to the root in the server's ``jpserver-<JPY_PARENT_PID>.json``. Without that
   file the name is not ours: a kernel started by a notebook's own code (nbclient in a cell)
   inherits the name of the notebook that started it;
3. VS Code's ``__vsc_ipynb_file__`` and papermill's ``PAPERMILL_INPUT_PATH`` (``--inject-paths``)
   in the user's namespace;
4. batch runs: nbconvert, nbclient and papermill set no name and send no cell ids, but run the
   kernel in the notebook's folder. The ``.ipynb`` files named on the command line of the process
   that started the kernel, then those in its working folder, are read (at most
   :data:`MAX_FILES` files of :data:`MAX_FILE_BYTES` each, within :data:`TIME_BUDGET_S`), and the
   one whose code cells hold the running cell's source is taken; the cells run before it tell
   apart notebooks that share that cell.

The cell: the id the frontend sent with the cell (IPython's ``pre_run_cell`` gets JupyterLab's
and VS Code's ``cellId``), else the id of the cell with the running cell's source in the
notebook's file, when there is one to read. A request made outside a cell (the chat panel's
widgets) has no cell.

Paths are relative to the Jupyter server's root when one is known, else to the home folder when
under it (a personal server's usual root, so a batch run and an interactive one name a notebook
alike), else absolute. Nothing here raises: an unknown notebook or cell is sent as nothing.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from ..client import find_local_server, valid_cell_id

__all__ = [
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "TIME_BUDGET_S",
    "FoundNotebook",
    "NotebookTracker",
    "Origin",
    "display_path",
    "find_notebook",
    "in_execute_request",
    "normalize_source",
    "notebooks_named_by",
]

MAX_FILES = 50  # notebook files read in one search
MAX_FILE_BYTES = 5 << 20  # a larger file is skipped unread
TIME_BUDGET_S = 0.2  # one search stops reading after this long
MAX_HISTORY = 200  # earlier cells compared when several notebooks hold the running one
MAX_SOURCE_CHARS = 200_000  # a longer cell is not looked for
_MAX_CMDLINE = 1 << 16
_MAX_DIR_ENTRIES = 5000  # entries of a folder looked at for .ipynb files


@dataclass(frozen=True)
class Origin:
    """Where a request comes from: the notebook's path, the cell's id, and how it was found."""

    notebook: str | None = None
    cell: str | None = None
    how: str = ""


@dataclass
class FoundNotebook:
    """A notebook file read: its path, and its code cells' ids by their (normalized) source."""

    path: str
    cells: dict[str, str | None] = field(default_factory=dict)


def normalize_source(source: str) -> str:
    """A cell's source as compared: trailing blanks and surrounding blank lines do not count
    (frontends and nbformat differ in them)."""
    return "\n".join(line.rstrip() for line in source.strip("\n").splitlines()).strip()


def in_execute_request(shell: Any) -> bool:
    """True while the kernel runs a cell; False in a widget's callback (a ``comm_msg``), where
    no cell is running. A terminal IPython (no kernel) only runs cells."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return shell is not None
    try:
        parent = kernel.get_parent("shell") or {}
    except Exception:  # an ipykernel without channel parents: not provably a cell
        return False
    return (parent.get("header") or {}).get("msg_type") == "execute_request"


def display_path(path: str, root: str | None) -> str:
    """`path` as the proxy gets it: relative to `root` (the Jupyter server's) when under it,
    else to the home folder when under it, else absolute; with ``/`` separators."""
    absolute = os.path.abspath(path)
    home = os.path.expanduser("~")
    for base in (root, home if home not in ("", "~") else None):
        if not base:
            continue
        for p, b in ((absolute, os.path.abspath(base)), (_real(absolute), _real(base))):
            if os.path.dirname(b) == b:  # the filesystem's root: no base at all
                continue
            if p.startswith(b.rstrip(os.sep) + os.sep):
                return PurePath(os.path.relpath(p, b)).as_posix()
    return PurePath(absolute).as_posix()


def _real(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return os.path.abspath(path)


# -- reading notebook files ----------------------------------------------------------------


def _read_json(path: str, max_bytes: int) -> Any:
    """The JSON in `path` when it is a regular file of at most `max_bytes`; None otherwise."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: a FIFO named *.ipynb must not hang the kernel
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        return None
    try:
        return json.loads(data)
    except ValueError:  # not a notebook, or one being written
        return None


def _code_cells(nb: Any) -> Iterator[tuple[str, str | None]]:
    """(source, id) of a notebook's code cells: nbformat 4, and version 3's worksheets."""
    if not isinstance(nb, dict):
        return
    cells = nb.get("cells")
    if not isinstance(cells, list):  # nbformat 3
        sheets = nb.get("worksheets")
        cells = (
            sheets[0].get("cells")
            if isinstance(sheets, list) and sheets and isinstance(sheets[0], dict)
            else []
        )
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata")
        tags = meta.get("tags") if isinstance(meta, dict) else None
        if isinstance(tags, list) and "injected-parameters" in tags:
            continue  # papermill's, in its output file only: it must not make that file look closer
        src = cell.get("source", cell.get("input", ""))
        src = "".join(x for x in src if isinstance(x, str)) if isinstance(src, list) else src
        if isinstance(src, str):
            yield src, valid_cell_id(cell.get("id"))


def read_notebook(path: str, max_bytes: int = MAX_FILE_BYTES) -> FoundNotebook | None:
    """The code cells of the notebook at `path` (None: not a readable notebook within bounds)."""
    nb = _read_json(path, max_bytes)
    if not isinstance(nb, dict):
        return None
    found = FoundNotebook(path)
    for src, cell in _code_cells(nb):
        found.cells.setdefault(normalize_source(src), cell)  # a repeated cell: the first's id
    return found


def notebooks_named_by(pid: int | str) -> list[str]:
    """The ``.ipynb`` files named on process `pid`'s command line (Linux' ``/proc``; elsewhere
    none), made absolute against that process's folder; ``--output`` values are left out."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            raw = f.read(_MAX_CMDLINE)
    except (OSError, ValueError):
        return []
    try:
        cwd: str | None = os.readlink(f"/proc/{int(pid)}/cwd")
    except OSError:
        cwd = None
    out: list[str] = []
    skip = False
    for arg in (a.decode("utf-8", "replace") for a in raw.split(b"\0")[1:] if a):
        if skip:
            skip = False
            continue
        if arg in ("--output", "--output-dir", "-o"):  # what a run writes, not what it runs
            skip = True
            continue
        if arg.startswith("-") or not arg.lower().endswith(".ipynb"):
            continue
        if os.path.isabs(arg):
            out.append(os.path.normpath(arg))
        elif cwd:
            out.append(os.path.normpath(os.path.join(cwd, arg)))
    return out[:MAX_FILES]


def _notebooks_in(folder: str, deadline: float) -> list[str]:
    """The ``.ipynb`` files in `folder`, newest first (a bounded look)."""
    found: list[tuple[float, str]] = []
    try:
        with os.scandir(folder) as it:
            for n, entry in enumerate(it):
                if n >= _MAX_DIR_ENTRIES or time.monotonic() > deadline:
                    break
                if entry.name.startswith(".") or not entry.name.lower().endswith(".ipynb"):
                    continue
                try:
                    if entry.is_file():
                        found.append((entry.stat().st_mtime, entry.path))
                except OSError:
                    continue
    except OSError:
        return []
    return [p for _, p in sorted(found, key=lambda x: -x[0])]


def find_notebook(
    source: str,
    named: Sequence[str],
    folders: Sequence[str],
    history: Sequence[str] = (),
    *,
    max_files: int = MAX_FILES,
    max_bytes: int = MAX_FILE_BYTES,
    budget_s: float = TIME_BUDGET_S,
) -> FoundNotebook | None:
    """The notebook whose code cells hold `source` (the running cell), among the files `named`
    (a command line's) and those in `folders`: at most `max_files` files of at most `max_bytes`,
    read within `budget_s` seconds.

    When several hold it, the one holding most of `history` (the cells run before) wins; a tie
    goes to the first named file, else nobody (an unknown notebook is better than a wrong one).
    """
    want = normalize_source(source)
    if not want:
        return None
    deadline = time.monotonic() + budget_s
    paths: list[str] = []
    for p in list(named) + [p for folder in folders for p in _notebooks_in(folder, deadline)]:
        p = os.path.abspath(p)
        if p not in paths:
            paths.append(p)
    earlier = {normalize_source(h) for h in history if isinstance(h, str)} - {want, ""}
    scored: list[tuple[int, int, FoundNotebook]] = []
    for order, path in enumerate(paths[:max_files]):
        if time.monotonic() > deadline:
            break
        nb = read_notebook(path, max_bytes)
        if nb is not None and want in nb.cells:
            scored.append((sum(1 for h in earlier if h in nb.cells), order, nb))
    if not scored:
        return None
    best = max(s for s, _, _ in scored)
    top = [(order, nb) for s, order, nb in scored if s == best]
    if len(top) == 1:
        return top[0][1]
    named_abs = [os.path.abspath(p) for p in named]
    first = min(top, key=lambda x: x[0])[1]
    return first if first.path in named_abs else None


# -- one kernel's notebook -----------------------------------------------------------------


class NotebookTracker:
    """The notebook of one kernel and its running cell (one per session)."""

    def __init__(self) -> None:
        self.cell_id: str | None = None  # the frontend's id of the running cell
        self.source: str | None = None  # the running cell's source
        self._start_cwd = os.getcwd()  # the notebook's folder in a batch run, before any chdir
        self._server: tuple[str | None, str | None] | None = None  # JPY_SESSION_NAME: (path, file)
        self._root: str | None = None
        self._found: FoundNotebook | None = None
        self._missed: str | None = None  # the source a search last failed to find
        self._file_cells: dict[str, tuple[tuple[float, int], FoundNotebook]] = {}

    def pre_run_cell(self, info: Any) -> None:
        """IPython's ``pre_run_cell`` event: the running cell's id and source."""
        self.cell_id = valid_cell_id(getattr(info, "cell_id", None))
        raw = getattr(info, "raw_cell", None)
        self.source = raw if isinstance(raw, str) else None

    def origin(self, shell: Any, explicit: str | None, *, in_cell: bool) -> Origin:
        """Where a request made now comes from; never raises (unknown parts are None)."""
        try:
            return self._origin(shell, explicit, in_cell)
        except (
            Exception
        ):  # identity is a courtesy to the admin's ledger: never fail a request for it
            return Origin(cell=self.cell_id if in_cell else None)

    def _origin(self, shell: Any, explicit: str | None, in_cell: bool) -> Origin:
        source = self._running_source(shell) if in_cell else None
        cell = self.cell_id if in_cell else None
        for how, path, file in self._named(shell, explicit):
            if in_cell and cell is None and file and source:
                cell = self._cell_in(file, source)
            return Origin(path, cell, how)
        if not source:  # outside a cell: the notebook a cell found before, if one did
            known = self._found.path if self._found is not None else None
            return Origin(
                display_path(known, self._root) if known else None,
                cell,
                "found by a cell's source" if known else "",
            )
        found = self._search(shell, source)
        if found is None:
            return Origin(None, cell)
        if cell is None:
            cell = found.cells.get(normalize_source(source))
        return Origin(
            display_path(found.path, self._root), cell, "found by the running cell's source"
        )

    def cell_labels(self, shell: Any, explicit: str | None) -> dict[str, str]:
        """Each cell id's first line, from the notebook's file when there is one to read (so
        %ask_cost can say which cell an id is); empty otherwise."""
        try:
            file = next((f for _how, _path, f in self._named(shell, explicit)), None)
            if file is None and self._found is not None:
                file = self._found.path
            nb = read_notebook(file) if file else None
        except Exception:  # labels are a courtesy
            return {}
        if nb is None:
            return {}
        return {
            cid: src.splitlines()[0][:60] if src else "" for src, cid in nb.cells.items() if cid
        }

    def _named(self, shell: Any, explicit: str | None) -> Iterator[tuple[str, str, str | None]]:
        """(how, path, file to read or None) of each place that names the notebook, in order."""
        for how, value in (
            ("RSQLMagic.notebook", explicit),
            ("RSQL_NOTEBOOK", os.environ.get("RSQL_NOTEBOOK")),
        ):
            if isinstance(value, str) and value.strip():
                yield how, value.strip(), self._file_for(value.strip())
        path, file = self._server_session()
        if path:
            yield "the Jupyter server's session (JPY_SESSION_NAME)", path, file
        ns = getattr(shell, "user_ns", None) or {}
        for how, name in (("VS Code", "__vsc_ipynb_file__"), ("papermill", "PAPERMILL_INPUT_PATH")):
            value = ns.get(name)
            if isinstance(value, str) and value.strip():
                file = os.path.join(self._start_cwd, value) if not os.path.isabs(value) else value
                yield how, display_path(file, self._root), file

    def _server_session(self) -> tuple[str | None, str | None]:
        """JPY_SESSION_NAME made relative to the server's root, once per kernel; (None, None)
        when the kernel does not run under a Jupyter server."""
        if self._server is None:
            self._server = (None, None)
            name = os.environ.get("JPY_SESSION_NAME", "").strip()
            info = find_local_server() if os.environ.get("JPY_PARENT_PID") else None
            if info is not None:
                root = info.get("root_dir") or info.get("notebook_dir")
                self._root = root if isinstance(root, str) and root else None
            if name and info is not None:
                file = (
                    name
                    if os.path.isabs(name) or not self._root
                    else os.path.join(self._root, name)
                )
                path = (
                    display_path(file, self._root)
                    if os.path.isabs(name)
                    else PurePath(name).as_posix()
                )
                self._server = (path, file)
        return self._server

    def _file_for(self, value: str) -> str | None:
        """The file an explicitly named notebook is, when it is one to read."""
        if not value.lower().endswith(".ipynb"):
            return None
        if os.path.isabs(value):
            return value
        self._server_session()  # the root, when there is a server
        return os.path.join(self._root or self._start_cwd, value)

    def _running_source(self, shell: Any) -> str | None:
        if self.source is not None:
            return self.source
        hist = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
        return hist[-1] if isinstance(hist, list) and hist and isinstance(hist[-1], str) else None

    def _cell_in(self, file: str, source: str) -> str | None:
        """The id of the cell with `source` in the notebook `file` (read again when it changed)."""
        try:
            info = os.stat(file)
        except OSError:
            return None
        key = (info.st_mtime, info.st_size)
        hit = self._file_cells.get(file)
        if hit is None or hit[0] != key:
            nb = read_notebook(file)
            if nb is None:
                return None
            self._file_cells = {file: (key, nb)}  # one file per kernel: bounded
            hit = self._file_cells[file]
        return hit[1].cells.get(normalize_source(source))

    def _search(self, shell: Any, source: str) -> FoundNotebook | None:
        """The batch run's notebook: found once, then kept (a kernel runs one notebook)."""
        if len(source) > MAX_SOURCE_CHARS:
            return self._found
        want = normalize_source(source)
        if self._found is not None:
            if want not in self._found.cells:  # a cell added since it was read: read it again
                again = read_notebook(self._found.path)
                if again is not None:
                    self._found = again
            return self._found
        if not want or want == self._missed:
            return None  # looked for this cell already: a search per cell, not per request
        hist = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
        history = hist[-MAX_HISTORY:] if isinstance(hist, list) else []
        named: list[str] = []
        parents = [os.environ.get("JPY_PARENT_PID", ""), str(os.getppid())]
        for pid in dict.fromkeys(p for p in parents if p.isdigit()):
            named += notebooks_named_by(pid)
        folders = list(dict.fromkeys([self._start_cwd, os.getcwd()]))
        found = find_notebook(source, named, folders, history)
        if found is None:
            self._missed = want
        self._found = found
        return found
