"""rsql_magic: notebook magics (%%ask, %ask, %ask_status, %ask_cost, %%sql_ai, %ask_chat) backed by the rsql proxy.

This module is the one registrar: ``%load_ext rsql_magic`` registers every magic on the
shell, and ``%unload_ext rsql_magic`` removes them. The magics live together in
:mod:`rsql_magic.magics`, on top of everything else; what they share lives in the shell's
:class:`rsql_magic.session.Session`. ``%load_ext rsql_magic.chat`` registers ``%ask_chat``
alone (:mod:`rsql_magic.magics.ask_chat`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    if name == "chat":  # rsql_magic.chat() opens a panel; ipywidgets load on first use
        # importlib, not `from . import chat`: that asks this module for `chat` first, which
        # comes back here, without end, until the submodule is imported
        return importlib.import_module(f"{__name__}.chat")
    raise AttributeError(f"module 'rsql_magic' has no attribute {name!r}")


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext rsql_magic``: %%ask, %ask, %ask_status, %ask_cost, %%sql_ai and %ask_chat."""
    from .errors import short_warning_format
    from .magics.ask import RSQLMagic, protect_question_mark
    from .magics.ask_chat import ChatMagics
    from .magics.sql_ai import SqlAIMagics
    from .session import Session, register_magics

    short_warning_format()
    for magics in (RSQLMagic, SqlAIMagics, ChatMagics):
        register_magics(ip, magics)
    session = Session.of(ip)
    # the running cell's id and source: which notebook cell a request comes from
    ip.events.register("pre_run_cell", session.cells.pre_run_cell)
    ip.events.register("post_run_cell", session.cells.post_run_cell)
    cleanup = getattr(ip, "input_transformers_cleanup", None)
    if isinstance(cleanup, list) and protect_question_mark not in cleanup:
        cleanup.append(protect_question_mark)


def unload_ipython_extension(ip: Any) -> None:
    from .magics.ask import RSQLMagic, protect_question_mark
    from .magics.ask_chat import ChatMagics
    from .magics.sql_ai import SqlAIMagics
    from .session import Session, unregister_magics

    for magics in (RSQLMagic, SqlAIMagics, ChatMagics):
        unregister_magics(ip, magics)
    for event, callback in (
        ("pre_run_cell", Session.of(ip).cells.pre_run_cell),
        ("post_run_cell", Session.of(ip).cells.post_run_cell),
    ):
        try:
            ip.events.unregister(event, callback)
        except ValueError:
            pass
    cleanup = getattr(ip, "input_transformers_cleanup", None)
    if isinstance(cleanup, list) and protect_question_mark in cleanup:
        cleanup.remove(protect_question_mark)
