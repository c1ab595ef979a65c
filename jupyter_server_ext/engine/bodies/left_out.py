"""What a request's chat form leaves out: the tolerant reader's account (docs/architecture.md,
"A tolerant reader at every API").

The Responses and Messages APIs are read into the chat form the engine answers. A provider's
API grows (system messages at any position, new content blocks, item types, fields), and a
client sends what its provider accepts: so the readers never refuse a shape the provider's
own API takes. What they cannot carry into the chat form is written down here, as one of:

- ``dropped``: it has no meaning for a chat upstream (sampling settings it lacks, earlier
  reasoning, a hosted tool's past calls, a field that is new to us): left out, and named in the
  answer's ``x-rsql-dropped`` header so a user can see what did not reach the model;
- ``lost``: leaving it out would change what the answer means (a document given by URL or
  file id that the model would never read): a translated request is refused with a 400 that
  names it and says why.

A request sent as it came (``apis.native``) leaves nothing out: the upstream reads all of it,
and what the chat form could not read still counts in its estimate (``tokens``). A part the
provider fetches itself (a document or file by URL or file id, an image by file id) stands in
the chat form as a file or image part that holds no data (``fetched_file``, ``fetched_image``),
so it is counted against the file-part cap and reserved as the most such a part may cost, as a
chat completion's file by id is (``bodies.request.estimate_tokens``): its JSON text (a URL,
about 20 tokens) says nothing of the pages the provider bills.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import BadRequest
from . import json_codec

HEADER = "x-rsql-dropped"  # the answer's header naming what was left out
_SHOWN = 20  # names in the header at most: it says what, not every occurrence
# a name is the client's text (a block's type): only these characters reach a header
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


# what a fetched part's stand-in holds: no data, so no upstream could read it as a file
FETCHED = "fetched-by-the-provider"


def fetched_file() -> dict[str, Any]:
    """The chat form of a document or file the provider fetches (by URL or file id)."""
    return {"type": "file", "file": {"file_id": FETCHED}}


def fetched_image() -> dict[str, Any]:
    """The chat form of an image the provider fetches (by file id)."""
    return {"type": "image_url", "image_url": {"url": FETCHED}}


def fetched_files(messages: Any) -> int:
    """How many fetched documents and files a chat form's `messages` hold."""
    return sum(
        1
        for m in (messages if isinstance(messages, list) else [])
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for p in m["content"]
        if isinstance(p, dict)
        and p.get("type") == "file"
        and isinstance(p.get("file"), dict)
        and p["file"].get("file_id") == FETCHED
    )


@dataclass
class LeftOut:
    dropped: list[str] = field(default_factory=list)
    lost: list[tuple[str, str]] = field(default_factory=list)  # (param, why)
    # hosted tools the request offers, (kind, where): the chat form carries none of them; the
    # edge decides whether each runs, is dropped or refused (``admission.hosted_tools``)
    hosted: list[tuple[str, str]] = field(default_factory=list)
    tokens: int = 0  # what the left-out parts hold, estimated as the request's own text is

    def _weigh(self, value: Any) -> None:
        if value is not None:
            try:
                self.tokens += len(json_codec.dumps(value)) // 4 + 1
            except (TypeError, ValueError):
                self.tokens += 1

    def drop(self, name: str, value: Any = None) -> None:
        """`name` (a field, or a block or item type) left out: meaningless to a chat upstream."""
        name = _UNSAFE.sub("?", name[:60])
        if name not in self.dropped:
            self.dropped.append(name)
        self._weigh(value)

    def lose(self, param: str, why: str, value: Any = None) -> None:
        """`param` cannot be carried, and the answer would mean something else without it."""
        self.lost.append((param, why))
        self._weigh(value)

    def refusal(self) -> BadRequest | None:
        """The 400 a translated request gets when it would lose what changes its answer."""
        if not self.lost:
            return None
        param, why = self.lost[0]
        return BadRequest(f"{param}: {why}", code="unsupported_content", extra={"param": param})

    def header(self) -> dict[str, str]:
        """The answer's header naming what was dropped ({} when nothing was)."""
        if not self.dropped:
            return {}
        names = self.dropped[:_SHOWN] + (["..."] if len(self.dropped) > _SHOWN else [])
        return {HEADER: ",".join(names)}
