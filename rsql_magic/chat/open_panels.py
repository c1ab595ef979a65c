"""The panels opened in this kernel, newest last: ``%ask_chat --insert`` acts on the latest."""

from __future__ import annotations

from typing import Any

__all__ = ["current", "open_panel"]

_PANELS: list[Any] = []  # the ten most recent: older ones are the frontend's to keep


def open_panel(**kwargs: Any) -> Any:
    """A new :class:`~rsql_magic.chat.panel.ChatPanel` (``kwargs`` go to it), remembered."""
    from .panel import ChatPanel  # here, not at import: it imports ipywidgets

    panel = ChatPanel(**kwargs)
    _PANELS.append(panel)
    del _PANELS[:-10]
    return panel


def current() -> Any | None:
    """The most recently opened panel, if any."""
    return _PANELS[-1] if _PANELS else None
