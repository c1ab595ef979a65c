"""``%ask_chat`` and ``rsql_magic.chat()``: an ipywidgets chat panel that knows the notebook.

``rsql_magic.chat`` is this module, made callable (``rsql_magic.chat()`` opens a panel) so the
function and the package can share one name without one shadowing the other on import.
ipywidgets is imported only when a panel is built: importing this module stays cheap.

``%load_ext rsql_magic.chat`` registers ``%ask_chat`` on its own; ``%load_ext rsql_magic``
does it too once its loader calls :func:`load_ipython_extension` here.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = ["ChatPanel", "chat", "current", "load_ipython_extension", "unload_ipython_extension"]

_PANELS: list[Any] = []  # panels opened in this kernel, newest last (for %ask_chat --insert)


def chat(**kwargs: Any) -> Any:
    """Open a chat panel: returns the :class:`ChatPanel` (the notebook shows it).

    Keyword arguments go to :class:`ChatPanel`: ``model``, ``frames`` (names preselected),
    ``sql`` (a connection variable's name), ``include_r``, ``history_tokens``, ``client``.
    """
    from .panel import ChatPanel

    panel = ChatPanel(**kwargs)
    _PANELS.append(panel)
    del _PANELS[:-10]
    return panel


def current() -> Any | None:
    """The most recently opened panel, if any."""
    return _PANELS[-1] if _PANELS else None


def __getattr__(name: str) -> Any:
    if name == "ChatPanel":  # lazily: importing it imports ipywidgets
        from .panel import ChatPanel

        return ChatPanel
    raise AttributeError(name)


def load_ipython_extension(ip: Any) -> None:
    """Register ``%ask_chat`` (idempotent)."""
    from .magic import ChatMagics

    if "ask_chat" not in ip.magics_manager.magics["line"]:
        ip.register_magics(ChatMagics(shell=ip))


def unload_ipython_extension(ip: Any) -> None:
    ip.magics_manager.magics["line"].pop("ask_chat", None)


class _CallableModule(types.ModuleType):
    """Lets ``rsql_magic.chat(...)`` call :func:`chat` while ``rsql_magic.chat`` stays a module."""

    def __call__(self, **kwargs: Any) -> Any:
        return chat(**kwargs)


sys.modules[__name__].__class__ = _CallableModule
