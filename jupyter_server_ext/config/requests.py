"""The ``c.RSQLProxy`` settings that bound what one request may carry.

A base class of ``config.RSQLProxy``, as ``config.inline``'s is, so admins write them as
every other proxy setting; kept apart because they are one concern's: the body's size, the
nesting and count of its JSON and its messages, bounded before the proxy spends work on a
request (``engine.bodies.request.RequestLimits``). Each is declared once: its default in
``RequestLimits``, its type, range (``bound``, checked with every other setting's by
``RSQLProxy.range_problems``) and help here, and it reaches the engine by its name.
"""

from __future__ import annotations

import dataclasses

from traitlets import Integer
from traitlets.config import Configurable

from ..engine.bodies.request import RequestLimits

# the defaults are written once, in the engine's request limits; the traits below read them there
REQUEST = RequestLimits()


class RequestSettings(Configurable):
    """How large and how deeply built one request's body may be."""

    max_body_bytes = Integer(
        REQUEST.max_body_bytes,
        help="""Largest request body accepted by the proxy's endpoints (bytes); a larger one gets a
        413 before it is read whole. Other handlers of a Jupyter server keep their own limits.""",
    ).tag(config=True, bound=">= 1024")
    max_json_depth = Integer(
        REQUEST.max_json_depth, help="Deepest nesting of JSON arrays and objects in a request body."
    ).tag(config=True, bound="from 2 to 500")
    max_json_containers = Integer(
        REQUEST.max_json_containers,
        help="""Most JSON objects and arrays in one request body. Each costs the proxy's event loop
        about half a microsecond to check, so this bounds what one body can take from everyone
        else's requests; a long agent conversation with tools uses a few thousand.""",
    ).tag(config=True, bound=">= 1")
    max_json_items = Integer(
        REQUEST.max_json_items,
        help="""Most JSON array items and object members in one request body (the default takes
        OpenAI's largest embeddings request, 300,000 token ids, with room to spare).""",
    ).tag(config=True, bound=">= 1")
    max_messages = Integer(
        REQUEST.max_messages, help="Most messages one chat-completions request may carry."
    ).tag(config=True, bound=">= 1")
    max_message_chars = Integer(
        REQUEST.max_message_chars,
        help="Longest text of one message (its content, or its text parts together), in characters.",
    ).tag(config=True, bound=">= 1")

    def request_limits(self) -> RequestLimits:
        """The bounds on one request, each trait into the ``RequestLimits`` field of its name (their
        ranges are checked with every setting's, ``RSQLProxy.range_problems``; a field without a
        trait, ``max_file_parts``, keeps the engine's default).

        ``max_body_bytes`` is read by the handlers themselves, and by the engine for what it keeps
        of a request (a stored response's conversation)."""
        names = [f.name for f in dataclasses.fields(RequestLimits) if self.has_trait(f.name)]
        return RequestLimits(**{name: getattr(self, name) for name in names})
