"""Reading what providers send, which is hostile input: JSON that may be anything, counts that
may be absurd, error texts that may quote a key. Shared by the transports and each kind's
translation (a leaf: it imports nothing of the engine)."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_COUNT", "read_json", "scrub"]

# Provider error texts sometimes quote part of the key ("Incorrect API key provided: sk-ab***yz").
_KEYLIKE = re.compile(
    r"(?<![A-Za-z0-9])(?:sk|gsk|xai|hf)[-_][A-Za-z0-9_*.-]{4,}|(?<![A-Za-z0-9])AIza[A-Za-z0-9_-]{8,}"
)


# ... and the account behind it: OpenAI's "in organization org-Xy12...", Groq's "org_01j...",
# OpenAI's "Project `proj_ab12...`"
_ACCOUNT_IDS = re.compile(r"(?<![A-Za-z0-9])(?:org[-_][A-Za-z0-9]{8,}|proj_[A-Za-z0-9]{4,})")
MAX_COUNT = 2**31 - 1  # the most tokens an answer is believed to report (a 32-bit count)


def scrub(text: str, secret: str = "") -> str:
    """Remove key text, and the provider's organization and project ids, from anything that may
    reach a client or a log."""
    if secret:
        text = text.replace(secret, "[key]")
    return _ACCOUNT_IDS.sub("[account]", _KEYLIKE.sub("[key]", text))


def read_json(data: bytes | str) -> Any:
    """`data` parsed, or None when it is no JSON a provider should send: invalid, or nested
    deeper than Python's JSON decoder recurses (a RecursionError, not a ValueError)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None
