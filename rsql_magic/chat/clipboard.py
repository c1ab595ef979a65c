"""The **Copy code** button: an anywidget whose view writes the code to the browser's clipboard.

Only the browser may write the clipboard, and only inside the user's click, so the copying
happens in a small ES module (``copy_code.js``, shipped beside this file: no build, nothing
fetched). anywidget runs it in JupyterLab, Notebook 7 and VS Code alike. Where the browser
refuses (no permission, a page that is not a secure context), the view shows the code in a
read-only text area with all of it selected. The kernel hears each click's outcome and says
what happened in a note; the code itself is only ever set as text in the browser.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
from traitlets import Bool, Unicode

__all__ = ["CopyCode", "CopyOutcome"]

# (copied, reason): copied is None for a bare click that ran no clipboard code (a frontend
# that only relays the click): the code is then shown to copy by hand
CopyOutcome = Callable[[bool | None, str], None]


class CopyCode(anywidget.AnyWidget):
    """A "Copy code" button; below it, once shown, the code in a read-only text area.

    ``value`` is the code as it would go into a cell; ``shown`` opens the text area.
    """

    _esm = Path(__file__).with_name("copy_code.js")
    value = Unicode("").tag(sync=True)
    shown = Bool(False).tag(sync=True)

    def __init__(self, value: str = "", **kwargs: Any) -> None:
        super().__init__(value=value, **kwargs)
        self._listeners: list[CopyOutcome] = []
        self.on_msg(self._on_view_msg)

    def on_copy(self, callback: CopyOutcome) -> None:
        """Call ``callback(copied, reason)`` after each click in a view."""
        self._listeners.append(callback)

    def show(self, *, select: bool = True) -> None:
        """Open the text area; ``select``: select all of the code (where the view is shown)."""
        self.shown = True
        if select:
            self.send({"select": True})

    def _on_view_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("event") != "click":
            return
        copied = content.get("copied")
        outcome = bool(copied) if isinstance(copied, bool) else None
        reason = str(content.get("reason") or "")[:80]
        for callback in self._listeners:
            callback(outcome, reason)
