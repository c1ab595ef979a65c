"""Text for a terminal: what it would obey is shown instead.

A user name, a recorded question or an upstream error can hold anything a hub user typed or a
model wrote. Printed as is, a terminal obeys its control sequences: OSC 52 writes the reader's
clipboard, ``ESC[2K`` with a carriage return hides a line, a right-to-left override reorders
one. The command-line tools (``rsql-proxy admin``, ``rsql-replay``) print every such value
through :func:`shown`. Pure and dependency-free, so the proxy's CLI imports it too.
"""

from __future__ import annotations

import io
from typing import TextIO

from rsql_common.hidden_characters import escaped

__all__ = ["ShownStream", "shown"]


def shown(text: str) -> str:
    """`text` with every character a terminal would obey or draw as nothing written as its
    escape (``\\x1b``): the project's one list (:mod:`rsql_common.hidden_characters`) but
    newline and tab, the tools' own layout."""
    return escaped(text)


class ShownStream(io.TextIOBase):
    """A text stream that writes through :func:`shown`: the last wall, whatever a command prints."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(shown(text))

    def flush(self) -> None:
        self.stream.flush()
