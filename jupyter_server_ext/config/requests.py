"""The ``c.RSQLProxy`` settings that bound what one request may carry.

A base class of ``config.RSQLProxy``, as ``config.inline``'s is, so admins write them as
every other proxy setting; kept apart because they are one concern's: the body's size, the
nesting and count of its JSON and its messages, bounded before the proxy spends work on a
request (``engine.bodies.request.RequestLimits``).
"""

from __future__ import annotations

from traitlets import Integer
from traitlets.config import Configurable

from ..engine.bodies.request import RequestLimits
from ..engine.errors import Problems

# the defaults are written once, in the engine's request limits; the traits below read them there
REQUEST = RequestLimits()


class RequestSettings(Configurable):
    """How large and how deeply built one request's body may be."""

    max_body_bytes = Integer(
        REQUEST.max_body_bytes,
        help="""Largest request body accepted by the proxy's endpoints (bytes); a larger one gets a
        413 before it is read whole. Other handlers of a Jupyter server keep their own limits.""",
    ).tag(config=True)
    max_json_depth = Integer(
        REQUEST.max_json_depth, help="Deepest nesting of JSON arrays and objects in a request body."
    ).tag(config=True)
    max_json_containers = Integer(
        REQUEST.max_json_containers,
        help="""Most JSON objects and arrays in one request body. Each costs the proxy's event loop
        about half a microsecond to check, so this bounds what one body can take from everyone
        else's requests; a long agent conversation with tools uses a few thousand.""",
    ).tag(config=True)
    max_json_items = Integer(
        REQUEST.max_json_items,
        help="""Most JSON array items and object members in one request body (the default takes
        OpenAI's largest embeddings request, 300,000 token ids, with room to spare).""",
    ).tag(config=True)
    max_messages = Integer(
        REQUEST.max_messages, help="Most messages one chat-completions request may carry."
    ).tag(config=True)
    max_message_chars = Integer(
        REQUEST.max_message_chars,
        help="Longest text of one message (its content, or its text parts together), in characters.",
    ).tag(config=True)

    def request_limits(self) -> RequestLimits:
        """The bounds on one request, checked; raises ConfigProblems naming every wrong one.

        ``max_body_bytes`` is read by the handlers themselves, and by the engine for what it keeps
        of a request (a stored response's conversation)."""
        problems = Problems()  # every bound that is wrong, not the first alone
        if self.max_body_bytes < 1024:
            problems.append(f"RSQLProxy.max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        # json's C decoder recurses once per level: past several hundred it hits Python's limit
        if not 2 <= self.max_json_depth <= 500:
            problems.append(
                f"RSQLProxy.max_json_depth must be from 2 to 500, got {self.max_json_depth}"
            )
        for name in ("max_messages", "max_message_chars", "max_json_containers", "max_json_items"):
            if getattr(self, name) < 1:
                problems.append(f"RSQLProxy.{name} must be >= 1, got {getattr(self, name)}")
        problems.refuse()
        return RequestLimits(
            max_body_bytes=self.max_body_bytes,
            max_json_depth=self.max_json_depth,
            max_json_containers=self.max_json_containers,
            max_json_items=self.max_json_items,
            max_messages=self.max_messages,
            max_message_chars=self.max_message_chars,
        )
