"""Text for a terminal: what it would obey is shown instead.

A user name, a recorded question or an upstream error can hold anything a hub user typed or a
model wrote. Printed as is, a terminal obeys its control sequences: OSC 52 writes the reader's
clipboard, ``ESC[2K`` with a carriage return hides a line, a right-to-left override reorders
one. The command-line tools (``rsql-proxy admin``, ``rsql-replay``) print every such value
through :func:`shown`. Pure and dependency-free, so the proxy's CLI imports it too.
"""

from __future__ import annotations

import io
import re
from typing import TextIO

__all__ = ["ShownStream", "shown"]

# C0 controls but newline and tab (the tools' own layout), DEL, C1 controls, and the Unicode
# bidirectional marks, embeddings, overrides and isolates
_OBEYED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """`text` with every character a terminal would obey written as its escape (``\\x1b``)."""
    return _OBEYED.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class ShownStream(io.TextIOBase):
    """A text stream that writes through :func:`shown`: the last wall, whatever a command prints."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(shown(text))

    def flush(self) -> None:
        self.stream.flush()
