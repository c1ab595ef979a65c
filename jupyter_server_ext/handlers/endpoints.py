"""The endpoints every user reaches: OpenAI's v1 (chat completions, legacy completions,
embeddings, models), each handed to ``Engine.chat`` as it comes, and the caller's own (status,
``me``, ``me/cost``, the redaction preview). Mixins on ``base``'s, mounted by both hosts
(``routes``)."""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..engine import BadRequest, Caller, Engine, Reply
from ..engine.bodies.attribution import MAX_NOTEBOOK_CHARS, notebook_path
from ..engine.info_endpoints import me_view, model_view, models_view, status_view
from .base import AnsweringMixin, JSONEndpoint


class OpenAIEndpointMixin(AnsweringMixin):
    """An OpenAI endpoint the engine answers as it comes: the body handed to ``Engine.chat``."""

    endpoint = ""

    async def ask(self, engine: Engine, body: Any, caller: Caller) -> Reply:
        return await engine.chat(body, caller, endpoint=self.endpoint, **self.request_options())


class ChatCompletionsMixin(OpenAIEndpointMixin):
    """POST v1/chat/completions (OpenAI), streaming and not."""

    endpoint = "chat/completions"


class LegacyCompletionsMixin(OpenAIEndpointMixin):
    """POST v1/completions, the legacy text completions, streaming and not."""

    endpoint = "completions"


class EmbeddingsMixin(OpenAIEndpointMixin):
    """POST v1/embeddings, priced per input token."""

    endpoint = "embeddings"


class ModelsMixin(JSONEndpoint):
    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        engine = self.rsql.engine
        return models_view(engine, await engine.access(caller))


class ModelMixin(JSONEndpoint):
    """GET v1/models/{id}; ids may hold slashes (meta-llama/llama-4-scout-...)."""

    async def get(self, model: str) -> None:
        await self._respond(model)

    async def answer(self, caller: Caller, model: str) -> Any:
        engine = self.rsql.engine
        return model_view(engine, urllib.parse.unquote(model), await engine.access(caller))


class StatusMixin(JSONEndpoint):
    """Health: upstream states, state backend and database reachable. No secrets."""

    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        return await status_view(self.rsql.engine)


class MeMixin(JSONEndpoint):
    """My limits, current use, what is left, budget, reset times."""

    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        return await me_view(self.rsql.engine, caller)


class MeCostMixin(JSONEndpoint):
    """GET me/cost?notebook=PATH: what the caller spent in that notebook today and this week,
    and its dearest cells (``%ask_cost``). Only the caller's own rows."""

    async def get(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        raw = self.get_query_argument("notebook", "")
        path = notebook_path(raw)
        if path is None:
            raise BadRequest(
                "send ?notebook=PATH: the notebook's path relative to the server's root "
                f"(at most {MAX_NOTEBOOK_CHARS} characters, no control characters)"
            )
        return await self.rsql.engine.notebook_cost(caller, path, self.rsql.usage_store())


class RedactMixin(JSONEndpoint):
    """POST {"messages": [...]}: the messages as an upstream would get them, and the counts per
    type; for previews (the kernel's --show-context, the chat's context view). Sends nothing
    upstream and costs nothing, but counts as a request in the caller's windows (the scan is
    real work); held to the same body, message and redaction caps as a chat request."""

    async def post(self) -> None:
        await self._respond()

    async def answer(self, caller: Caller) -> Any:
        body = await self.json_body(caller)
        if not isinstance(body, dict) or "messages" not in body:
            raise BadRequest('send {"messages": [{"role": "user", "content": "..."}]}')
        return await self.rsql.engine.redact_preview(body["messages"], caller)


ROUTES: list[tuple[str, type]] = [
    ("v1/chat/completions", ChatCompletionsMixin),
    ("v1/completions", LegacyCompletionsMixin),
    ("v1/embeddings", EmbeddingsMixin),
    ("v1/models", ModelsMixin),
    ("v1/models/(.+)", ModelMixin),
    ("status", StatusMixin),
    ("me", MeMixin),
    ("me/cost", MeCostMixin),
    ("redact", RedactMixin),
]
