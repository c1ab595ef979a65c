"""The ``c.RSQLProxy`` trait of a setting the engine declares (``rsql_common.settings.setting``).

A setting the engine reads as it is configured is declared once, as a field of its settings
dataclass (``EngineSettings``, ``RequestLimits``, ``AlertSettings``, ``InlineSettings``): its
type, default, help and range. Its trait is made here from that field, so the two cannot
disagree, and the engine stays free of traitlets."""

from __future__ import annotations

import dataclasses
from typing import Any

from traitlets import Bool, Float, Integer, TraitType, Unicode

from ..engine.errors import ConfigError
from .bounds import BOUNDS

__all__ = ["trait"]

# a field's type, by name (a string where its module postpones annotations, as ours do) -> its trait
KINDS: dict[str, type[TraitType[Any, Any]]] = {
    "bool": Bool,
    "int": Integer,
    "float": Float,
    "str": Unicode,
}


def trait(settings: type, name: str, **tags: Any) -> TraitType[Any, Any]:
    """The configurable trait of field `name` of the settings dataclass `settings`: its kind
    from the field's type, its default, help and ``bound`` from the field; `tags` besides
    (``engine=True``: copied into the ``EngineSettings`` field of its name)."""
    field = next((f for f in dataclasses.fields(settings) if f.name == name), None)
    if field is None or "help" not in field.metadata:
        raise ConfigError(f"{settings.__name__}.{name} is not a declared setting")
    kind = KINDS.get(getattr(field.type, "__name__", str(field.type)))
    bound = field.metadata["bound"]
    if kind is None or (bound is not None and bound not in BOUNDS):
        raise ConfigError(f"{settings.__name__}.{name}: no trait for {field.type!r} / {bound!r}")
    if bound is not None:
        tags["bound"] = bound
    return kind(field.default, help=field.metadata["help"]).tag(config=True, **tags)
