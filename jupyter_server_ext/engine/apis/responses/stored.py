"""Stored responses of the Responses API: what ``previous_response_id`` continues, and what
``GET`` / ``DELETE v1/responses/{id}`` read.

Each belongs to the user who made it: it is kept under a key that names its owner, so another
user's id is a 404, the same as an id that never was, and ids cannot be probed. Kept in the state
backend (so every replica sees them) for ``responses_ttl_seconds``, at most
``responses_per_user`` of a user's at once and ``responses_per_user_bytes`` of them: the oldest
go first, in the same atomic step as the write (``StateBackend.keep_blob``), so users writing at
once can never keep more. The provider stores nothing: every upstream gets the whole
conversation, and ``store`` is never sent on.

A record is the response's JSON text, a newline, then its conversation's (JSON text holds no
raw newline): ``GET`` answers the first line as it is, without parsing anything, and a
continuation parses only the conversation, as a request body is parsed (``bodies.decode``).
What is kept is bounded like a request body: a conversation larger than ``max_body_bytes`` or
past the JSON caps is not kept for continuing (the response itself still is), so no record
costs more to read than a body the proxy would accept.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ...admission.limiter import key_name
from ...admission.shared_state import StateBackend
from ...bodies import json_codec
from ...bodies.decode import MAX_CONTAINERS, MAX_ITEMS, Shape, exact_shape
from ...errors import NotFound, PayloadTooLarge

_ID = re.compile(r"^resp_[A-Za-z0-9]{1,200}$")  # ours, and a provider's passed on
# the conversation part of a record whose conversation was past the bounds: "-" and its size
# (a conversation's JSON is a list, which never starts so)
NOT_KEPT = "-"


def not_found(response_id: str) -> NotFound:
    return NotFound(
        f"Response with id '{response_id[:80]}' not found.",
        code="not_found",
        extra={"param": "response_id"},
    )


def conversation_too_long(response_id: str, size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the conversation of response '{response_id[:80]}' ({size} bytes of JSON) is larger "
        f"than one request may carry (at most {limit} bytes, c.RSQLProxy.max_body_bytes, and "
        "the JSON caps max_json_containers and max_json_items), so it was not kept for "
        "previous_response_id; start a new conversation and send the items it needs in 'input'",
        code="conversation_too_long",
        extra={"param": "previous_response_id", "max_body_bytes": limit},
    )


@dataclass
class StoredResponses:
    state: StateBackend
    ttl: float = 7 * 86400.0
    per_user: int = 200
    per_user_bytes: int = 32 * 2**20
    # one conversation kept for continuing, bounded as a request body is (bytes, the objects
    # and arrays, the items), so reading one back costs no more than a body the proxy accepts
    max_bytes: int = 4 * 2**20
    max_depth: int = 64
    max_containers: int = MAX_CONTAINERS
    max_items: int = MAX_ITEMS
    # work in the worker process in a user's turn (``Offload.run``): the exact JSON shape of a
    # conversation whose brackets and commas (text inside strings included) pass the caps
    run: Callable[..., Awaitable[Any]] | None = None
    # how a record is kept at rest, given it, its user and its size (``Redaction.at_rest``:
    # masked when redaction is on); None: as it is
    at_rest: Callable[[Any, str, int], Awaitable[Any]] | None = None

    def _index(self, user: str) -> str:
        return f"r-index:{key_name(user)}"

    def _key(self, user: str, response_id: str) -> str:
        return f"r:{key_name(user)}:{response_id}"

    async def _within_bounds(self, conversation: bytes, user: str) -> bool:
        if len(conversation) > self.max_bytes:
            return False
        if Shape.bound(conversation).refusal(self.max_containers, self.max_items) is None:
            return True
        if self.run is None:
            return False
        shape, depth = await self.run(user, exact_shape, conversation, self.max_depth)
        return (
            depth <= self.max_depth and shape.refusal(self.max_containers, self.max_items) is None
        )

    async def put(self, user: str, response: dict[str, Any], items: list[Any]) -> bool:
        """Keep `response` as `user`'s, with `items` (the Responses items a later
        ``previous_response_id`` continues: only what the upstream saw), those only when within
        the bounds. Whether it was kept: a record larger than all a user may keep is not."""
        rid = str(response.get("id"))
        if not _ID.match(rid):
            return False
        conversation = json_codec.dumps(items)
        if self.at_rest is not None:
            size = len(conversation) + len(json_codec.dumps(response))
            response, items = await self.at_rest([response, items], user, size)
            conversation = json_codec.dumps(items)
        rest = (
            conversation.decode()
            if await self._within_bounds(conversation, user)
            else f"{NOT_KEPT}{len(conversation)}"
        )
        record = f"{json_codec.dumps(response).decode()}\n{rest}"
        if len(record) > self.per_user_bytes:
            return False
        await self.state.keep_blob(
            self._index(user),
            self._key(user, rid),
            record,
            self.ttl,
            self.per_user,
            self.per_user_bytes,
        )
        return True

    async def _record(self, user: str, response_id: str) -> str:
        if not _ID.match(response_id):
            raise not_found(response_id)
        record = await self.state.get_blob(self._key(user, response_id))
        if record is None or "\n" not in record:
            raise not_found(response_id)  # another user's is a 404, as one that never was
        return record

    async def response_json(self, user: str, response_id: str) -> bytes:
        """`user`'s stored `response_id` as its JSON text, read as it was written."""
        record = await self._record(user, response_id)
        return record[: record.index("\n")].encode()

    async def conversation_json(self, user: str, response_id: str) -> bytes:
        """The JSON text of the items `response_id`'s conversation holds; a 413 when it was past
        the bounds to keep for continuing."""
        record = await self._record(user, response_id)
        rest = record[record.index("\n") + 1 :]
        if rest.startswith(NOT_KEPT):
            raise conversation_too_long(response_id, int(rest[1:] or 0), self.max_bytes)
        return rest.encode()

    async def delete(self, user: str, response_id: str) -> dict[str, Any]:
        if not _ID.match(response_id) or not await self.state.drop_blob(
            self._index(user), self._key(user, response_id)
        ):
            raise not_found(response_id)
        return {"id": response_id, "object": "response", "deleted": True}
