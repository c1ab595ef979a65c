"""``%ask_chat`` and ``rsql_magic.chat()``: an ipywidgets chat panel that knows the notebook.

``rsql_magic.chat`` is this module, made callable (``rsql_magic.chat()`` opens a panel) so the
function and the package can share one name without one shadowing the other on import.
ipywidgets is imported only when a panel is built: importing this module stays cheap.

The package: :mod:`.panel` (what the panel does), :mod:`.actions` (what an answer's buttons
do: Copy code, Insert cell, Run SQL and its query cell), :mod:`.widgets` (what it shows),
:mod:`.stream` (the worker thread that streams an answer), :mod:`.clipboard` (the Copy code
button), :mod:`.sources` (what its pickers offer), :mod:`.text` (its one-line texts),
:mod:`.open_panels` (the panels opened in this kernel).

It is a layer below the magics: it stands on the session, and the ``%ask_chat`` magic, with
the other magics in :mod:`rsql_magic.magics`, stands on it. ``%load_ext rsql_magic`` registers
``%ask_chat`` with the other magics; ``%load_ext rsql_magic.chat`` registers it on its own.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .open_panels import current, open_panel

__all__ = ["ChatPanel", "chat", "current", "load_ipython_extension", "unload_ipython_extension"]


def chat(**kwargs: Any) -> Any:
    """Open a chat panel: returns the :class:`ChatPanel` (the notebook shows it).

    Keyword arguments go to :class:`ChatPanel`: ``model``, ``frames`` (names preselected),
    ``sql`` (a connection variable's name), ``include_r``, ``history_tokens``, ``client``.
    """
    return open_panel(**kwargs)


def __getattr__(name: str) -> Any:
    if name == "ChatPanel":  # lazily: importing it imports ipywidgets
        from .panel import ChatPanel

        return ChatPanel
    raise AttributeError(name)


# ``%load_ext rsql_magic.chat``: %ask_chat lives with the other magics, a layer above this
# package, so this extension hands over to that module's own by its extension name, as
# ``%load_ext`` would, rather than import back up the layers.
_ASK_CHAT = "rsql_magic.magics.ask_chat"


def load_ipython_extension(ip: Any) -> None:
    """Register ``%ask_chat`` (idempotent)."""
    ip.extension_manager.load_extension(_ASK_CHAT)


def unload_ipython_extension(ip: Any) -> None:
    ip.extension_manager.unload_extension(_ASK_CHAT)


class _CallableModule(types.ModuleType):
    """Lets ``rsql_magic.chat(...)`` call :func:`chat` while ``rsql_magic.chat`` stays a module."""

    def __call__(self, **kwargs: Any) -> Any:
        return chat(**kwargs)


sys.modules[__name__].__class__ = _CallableModule
