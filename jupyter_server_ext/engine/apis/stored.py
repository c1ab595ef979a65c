"""Stored responses of the Responses API: what ``previous_response_id`` continues, and what
``GET`` / ``DELETE v1/responses/{id}`` read.

Each belongs to the user who made it: another user's id is a 404, the same as an id that never
was, so ids cannot be probed. Kept in the state backend (so every replica sees them) for
``responses_ttl_seconds``, at most ``responses_per_user`` of a user's at once and
``responses_per_user_bytes`` of them: the oldest go first. The provider stores nothing: every
upstream gets the whole conversation, and ``store`` is never sent on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..admission.limiter import key_name
from ..admission.shared_state import StateBackend
from ..errors import NotFound

_ID = re.compile(r"^resp_[A-Za-z0-9]{1,200}$")  # ours, and a provider's passed on


def not_found(response_id: str) -> NotFound:
    return NotFound(
        f"Response with id '{response_id[:80]}' not found.",
        code="not_found",
        extra={"param": "response_id"},
    )


@dataclass
class StoredResponses:
    state: StateBackend
    ttl: float = 7 * 86400.0
    per_user: int = 200
    per_user_bytes: int = 32 * 2**20

    def _index(self, user: str) -> str:
        return f"r-index:{key_name(user)}"

    async def put(self, user: str, response: dict[str, Any], items: list[Any]) -> None:
        """Keep `response` (and the conversation it ends, as Responses items) as `user`'s."""
        rid = str(response["id"])
        text = json.dumps({"owner": user, "response": response, "items": items})
        if len(text) > self.per_user_bytes:
            return  # larger than all a user may keep: not stored (a later reference is a 404)
        raw = await self.state.get_blob(self._index(user))
        kept = [
            (i, n)
            for i, n in (json.loads(raw) if raw else [])
            if isinstance(i, str) and isinstance(n, int)
        ]
        kept.append((rid, len(text)))
        total = sum(n for _, n in kept)
        while len(kept) > self.per_user or total > self.per_user_bytes:
            old, size = kept.pop(0)
            total -= size
            await self.state.delete_blob(f"r:{old}")
        await self.state.put_blob(f"r:{rid}", text, self.ttl)
        await self.state.put_blob(self._index(user), json.dumps(kept), self.ttl)

    async def get(self, user: str, response_id: str) -> dict[str, Any]:
        """`user`'s stored record of `response_id`: {"response": ..., "items": [...]}."""
        if not _ID.match(response_id):
            raise not_found(response_id)
        raw = await self.state.get_blob(f"r:{response_id}")
        record = json.loads(raw) if raw else None
        if not isinstance(record, dict) or record.get("owner") != user:
            raise not_found(response_id)  # another user's is a 404, as one that never was
        return record

    async def delete(self, user: str, response_id: str) -> dict[str, Any]:
        await self.get(user, response_id)
        await self.state.delete_blob(f"r:{response_id}")
        return {"id": response_id, "object": "response", "deleted": True}
