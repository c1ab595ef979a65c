"""The redaction step of a request's walk (``core``): the size bound on the text it scans, the
masking of what goes upstream before the cache key, the log or a provider sees it, and the
preview users ask for. The patterns and the masking itself are ``privacy.redact``'s; the
scan runs off the event loop (``privacy.offload``)."""

from __future__ import annotations

from typing import Any

from .admission_step import AdmissionStep
from .bodies.request import ChatRequest, parse_chat_request
from .interface import Caller, Outcome
from .privacy.offload import Offload, check_redact_size
from .privacy.redact import Redactor
from .settings import EngineSettings

# the request fields whose text is redacted: what a provider reads as the user's words (a
# tool's description too: a client writes into it what it likes)
REDACTED_FIELDS = ("messages", "prompt", "suffix", "input", "tools")


class Redaction:
    """The admin's redaction patterns applied to requests (none set: nothing to do)."""

    def __init__(
        self, settings: EngineSettings, offload: Offload, admission: AdmissionStep
    ) -> None:
        self.settings = settings
        self.offload = offload
        self.admission = admission  # a preview is admitted as a request

    def check_size(self, req: ChatRequest) -> None:
        """Refuse a request with more text to scan than one request may hold: every text that
        is redacted counts (`suffix` too)."""
        if self.settings.redact_patterns:
            check_redact_size(
                {"input": [req.payload.get(n) for n in REDACTED_FIELDS]},
                self.settings.redact_max_chars,
            )

    async def redact(self, req: ChatRequest, outcome: Outcome, user: str) -> Redactor:
        """Mask personal data in what goes upstream (chat messages, a legacy prompt and the
        `suffix` after its cursor, embeddings input), in place of the payload, before the cache
        key, the log or a provider sees it."""
        payload = req.payload
        fields, redactor = await self.offload.redact(
            self.settings.redact_patterns,
            {n: payload[n] for n in REDACTED_FIELDS if n in payload},
            user,
        )
        payload.update(fields)
        if redactor.counts:
            outcome.redactions = dict(redactor.counts)
        return redactor

    async def at_rest(self, record: Any, user: str, chars: int) -> Any:
        """`record` (a stored response and its conversation, `chars` of JSON) as it may be kept:
        with redaction on, every string in it masked, as the provider saw the request, so no
        personal value the patterns find is kept at rest (the answer's mapped-back values
        included); without redaction, as it is."""
        if not self.settings.redact_patterns:
            return record
        fields, _ = await self.offload.redact(
            self.settings.redact_patterns, {"record": record}, user, chars
        )
        return fields["record"]

    async def preview(self, messages: Any, caller: Caller) -> dict[str, Any]:
        """What `messages` would look like upstream: the redacted copy and the counts per type.
        Bounded like a chat request (the same message caps) and admitted like one (it counts in
        the caller's request windows, costs nothing): one user cannot make the proxy scan
        without end."""
        parse_chat_request(
            {"model": "-", "messages": messages},
            default_model="-",
            default_max_tokens=1,
            limits=self.settings.request_limits,
        )
        if not self.settings.redact_patterns:
            return {"messages": Redactor(()).messages(messages), "redactions": {}}
        check_redact_size({"messages": messages}, self.settings.redact_max_chars)
        async with self.admission.counted(caller):  # windows, concurrency
            fields, redactor = await self.offload.redact(
                self.settings.redact_patterns, {"messages": messages}, caller.user
            )
        return {"messages": fields["messages"], "redactions": dict(redactor.counts)}
