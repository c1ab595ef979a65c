"""Registering the magic classes on a shell, once, and taking them off again.

The registered instances are where the shell's session reads its settings
(:class:`~rsql_magic.session.config.SessionConfig`): ``RSQLMagic`` and ``SqlAIMagics``.
"""

from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics

__all__ = ["register_magics", "unregister_magics"]


def register_magics(shell: Any, magics: type[Magics]) -> Magics:
    """Register ``magics`` on ``shell`` once (a class already registered is kept) and return
    the registered instance; the shell's session reads its settings from there."""
    current = shell.magics_manager.registry.get(magics.__name__)
    if isinstance(current, magics):
        return current
    instance = magics(shell=shell)
    shell.register_magics(instance)
    return instance


def unregister_magics(shell: Any, magics: type[Magics]) -> None:
    """Remove what :func:`register_magics` registered (its line and cell magics)."""
    instance = shell.magics_manager.registry.pop(magics.__name__, None)
    if instance is None:
        return
    for kind, names in instance.magics.items():
        table = shell.magics_manager.magics[kind]
        for name in names:
            table.pop(name, None)
    if instance in getattr(shell, "configurables", []):
        shell.configurables.remove(instance)
