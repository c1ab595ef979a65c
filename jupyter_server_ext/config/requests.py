"""The ``c.RSQLProxy`` settings that bound what one request may carry.

A base class of ``config.RSQLProxy``, as ``config.inline``'s is, so admins write them as
every other proxy setting; kept apart because they are one concern's: the body's size, the
nesting and count of its JSON and its messages, bounded before the proxy spends work on a
request (``engine.bodies.request.RequestLimits``). Each is declared once, as a field of
``RequestLimits`` (type, default, help, range: ``bound``, checked with every other setting's by
``RSQLProxy.range_problems``); its trait here is made from that field (``declared.trait``), and
its value reaches the engine by its name.
"""

from __future__ import annotations

import dataclasses

from traitlets.config import Configurable

from ..engine.bodies.request import RequestLimits
from .declared import trait

# each setting is declared once, in the engine's request limits (``RequestLimits``); the traits
# below are made from it


class RequestSettings(Configurable):
    """How large and how deeply built one request's body may be."""

    max_body_bytes = trait(RequestLimits, "max_body_bytes")
    max_json_depth = trait(RequestLimits, "max_json_depth")
    max_json_containers = trait(RequestLimits, "max_json_containers")
    max_json_items = trait(RequestLimits, "max_json_items")
    max_messages = trait(RequestLimits, "max_messages")
    max_message_chars = trait(RequestLimits, "max_message_chars")

    def request_limits(self) -> RequestLimits:
        """The bounds on one request, each trait into the ``RequestLimits`` field of its name (their
        ranges are checked with every setting's, ``RSQLProxy.range_problems``; a field without a
        trait, ``max_file_parts``, keeps the engine's default).

        ``max_body_bytes`` is read by the handlers themselves, and by the engine for what it keeps
        of a request (a stored response's conversation)."""
        names = [f.name for f in dataclasses.fields(RequestLimits) if self.has_trait(f.name)]
        return RequestLimits(**{name: getattr(self, name) for name in names})
