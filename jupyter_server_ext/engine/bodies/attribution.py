"""Who and where a request is for: the end user its provider is told of (``set_end_user``:
the proxy's name for the caller, never one the caller wrote), and the notebook and cell a caller
says it comes from (``notebook_path``, ``cell_id``: their own attribution in the usage log)."""

from __future__ import annotations

import re
from typing import Any

from rsql_common.hidden_characters import CONTROL_CHARACTERS


def set_end_user(
    payload: dict[str, Any], user_id: str | None, *, in_metadata: bool = False
) -> None:
    """Name the end user behind a request as the proxy knows it, in every field a provider reads
    as that user (OpenAI's ``user`` and ``safety_identifier``; ``metadata.user_id``, which
    Anthropic reads and the translation fills from ``user``): a caller must not pose as someone
    else to the provider, whose abuse tracking would then blame them. `user_id` None: no field
    names anyone (``forward_user = "none"``). ``safety_identifier`` is written only where the
    caller sent one, as some OpenAI-compatible servers refuse fields they do not know.
    `in_metadata`: a body in the Messages API's shape, sent as it is: ``metadata.user_id`` only."""
    if in_metadata:
        payload.pop("user", None)
        payload.pop("safety_identifier", None)
        meta = payload.get("metadata")
        rest = {k: v for k, v in meta.items() if k != "user_id"} if isinstance(meta, dict) else {}
        if user_id is not None:
            rest["user_id"] = user_id
        if rest:
            payload["metadata"] = rest
        else:
            payload.pop("metadata", None)
        return
    if user_id is None:
        payload.pop("user", None)
        payload.pop("safety_identifier", None)
    else:
        payload["user"] = user_id
        if "safety_identifier" in payload:
            payload["safety_identifier"] = user_id
    meta = payload.get("metadata")
    if isinstance(meta, dict) and "user_id" in meta:
        rest = {k: v for k, v in meta.items() if k != "user_id"}
        if rest:
            payload["metadata"] = rest
        else:
            del payload["metadata"]


# what a caller may say about where a request comes from (X-RSQL-Notebook, X-RSQL-Cell): their
# own attribution only, so it is bounded and kept as plain text, never trusted for anything else
MAX_NOTEBOOK_CHARS = 1024
_CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def notebook_path(raw: str) -> str | None:
    """A notebook path as a caller sent it (decoded), or None when absent or unfit: too long,
    or holding control or bidi characters that would disguise it in a terminal or a table."""
    path = raw.strip()
    if not path or len(path) > MAX_NOTEBOOK_CHARS or CONTROL_CHARACTERS.search(path):
        return None
    return path


def cell_id(raw: str) -> str | None:
    """A cell id (nbformat's: letters, digits, - and _, at most 64), or None."""
    raw = raw.strip()
    return raw if _CELL_ID.match(raw) else None
