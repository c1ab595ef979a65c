"""Replay store: record each answer once, replay it on every rerun (offline, no quota).

A notebook run by nbconvert / papermill in a scheduled job or CI, or handed out to students,
should show the same answers every time and rerun without a proxy or keys. Each chat request
is reduced to a *fingerprint* (model, messages with their context, parameters; see
:func:`request_view` for what is ignored) and looked up in a JSON-lines file next to the
notebook. Modes (``RSQLMagic.replay`` / env ``RSQL_REPLAY``):

- ``off``: never look, never record (default in interactive sessions);
- ``auto``: replay a stored answer, else ask the proxy and record (default in batch runs);
- ``only``: never call the proxy; a missing entry fails, saying what differs from the
  closest recorded entry of the same question;
- ``refresh``: always ask and record (the new entry wins on read).

An entry says which model and upstream answered. In ``auto`` a recorded answer is replayed
only while the proxy would still answer with that model (the model asked for, or the user's
default from ``GET me``): after a configuration change it is asked again, with a warning, and
the new answer recorded. An answer the proxy's fallback gave is never replayed in ``auto``. A
``%%sql_ai`` attempt whose SQL failed is marked failed and never replayed as an answer (``only``
says so instead); when a later attempt worked, its answer is recorded for the cell's first
request, so a rerun goes straight to the SQL that worked.

The file is data handed around with notebooks, so it is treated as hostile: entries are
type-checked on read and replayed answers are rendered through the same sanitizer as live
ones; replayed SQL goes through %%sql_ai's guard and read-only walls like any answer. It holds
neither the proxy URL nor tokens: only hashes of the request, its question and the answer.
It is created readable by its owner only (answers may quote the user's data), and never opened
through a symbolic link or as anything but a regular file: a link planted in a folder handed
out would have answers appended to the file it points at (``~/.bashrc``), a FIFO would hang the
kernel. ``rsql-replay`` prints recorded fields with terminal controls shown, not obeyed.

``rsql-replay`` (``python -m rsql_magic.replay_cli``) lists, shows and prunes entries.

The package: :mod:`.matching` (the fingerprint and what differs), :mod:`.store` (the file and
its entries), :mod:`.modes` (:class:`Replay`, what a cell's calls do with the file). Importers
use the names below, as from the one module it was.
"""

from ..errors import ReplayMissing
from .matching import describe_difference, fingerprint, request_parts, request_view
from .modes import MODES, Replay, resolve_mode, short_text
from .store import DEFAULT_FILE, Entry, ReplayStore, resolve_path

__all__ = [
    "DEFAULT_FILE",
    "MODES",
    "Entry",
    "Replay",
    "ReplayMissing",
    "ReplayStore",
    "describe_difference",
    "fingerprint",
    "request_parts",
    "request_view",
    "resolve_mode",
    "resolve_path",
    "short_text",
]
