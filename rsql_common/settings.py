"""A setting an admin or a user configures, declared once: a dataclass field made by
:func:`setting`, which holds its type (the field's annotation), its default, the help the
settings reference shows and the range it is held to.

The dataclass is what the code reads (the proxy's engine), with no traitlets in it;
the ``c.<Class>.<name>`` trait is made from the field by the host's configuration
(``jupyter_server_ext.config.declared.trait``), so a new setting is its field and one line
that places its trait."""

from __future__ import annotations

from dataclasses import field
from typing import TypeVar

__all__ = ["setting"]

T = TypeVar("T")


def setting(default: T, help: str, bound: str | None = None) -> T:
    """A dataclass field for a setting: its `default`, the `help` the settings reference shows,
    and `bound`, the range start-up holds it to, in the words an admin reads
    (``jupyter_server_ext.config.bounds.BOUNDS`` holds each phrase's test)."""
    return field(default=default, metadata={"help": help, "bound": bound})
