"""``%ask_chat``: show the chat panel, or put the code of its last answer into the next cell.

The panel itself is :mod:`rsql_magic.chat`, a layer below the magics. ``%load_ext rsql_magic``
registers this magic with the others; ``%load_ext rsql_magic.chat`` (or this module's name)
registers it alone.
"""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from rsql_magic.session import register_magics, unregister_magics

__all__ = ["ChatMagics", "load_ipython_extension", "unload_ipython_extension"]


@magics_class
class ChatMagics(Magics):
    @magic_arguments()
    @argument(
        "--model", default=None, help="Model to ask (default: RSQLMagic.model or the proxy's)."
    )
    @argument("--df", default=None, help="DataFrames preselected in the picker: NAME[,NAME].")
    @argument("--sql", default=None, metavar="CONN", help="SQL connection variable preselected.")
    @argument("--r", action="store_true", help="Include the R session.")
    @argument(
        "--insert",
        nargs="?",
        const=-1,
        type=int,
        default=None,
        metavar="N",
        help="Put the code of answer N (default: the last) of the latest panel into the next cell.",
    )
    @line_magic
    def ask_chat(self, line: str = "") -> Any:
        """Open the rsql chat panel (ipywidgets): ``%ask_chat [--df a,b] [--sql conn] [--r]``."""
        from rsql_magic.chat.open_panels import current, open_panel

        args = parse_argstring(self.ask_chat, line)
        if args.insert is not None:
            panel = current()
            if panel is None:
                print("rsql: no chat panel yet: open one with %ask_chat")
                return None
            # a cell's execute request: set_next_input reaches the frontend from here
            panel.insert_code(args.insert)
            return None
        frames = [f.strip() for f in args.df.split(",") if f.strip()] if args.df else None
        panel = open_panel(
            shell=self.shell,
            model=args.model,
            frames=frames,
            sql=args.sql,
            include_r=args.r or None,
        )
        from IPython.display import display

        display(panel)
        return None


def load_ipython_extension(ip: Any) -> None:
    """Register ``%ask_chat`` alone (idempotent)."""
    register_magics(ip, ChatMagics)


def unload_ipython_extension(ip: Any) -> None:
    unregister_magics(ip, ChatMagics)
