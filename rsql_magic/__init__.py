"""rsql_magic: notebook magics (%%ask, %ask, %ask_status, %%sql_ai, %ask_chat) backed by the rsql proxy.

``%load_ext rsql_magic`` registers the magics; see :mod:`rsql_magic.magics`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from . import chat  # noqa: E402,F401  rsql_magic.chat() opens the chat panel


def load_ipython_extension(ipython: Any) -> None:
    from .magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload_ipython_extension as _unload

    _unload(ipython)
