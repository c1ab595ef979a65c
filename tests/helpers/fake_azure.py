"""A loopback server that answers as an Azure OpenAI resource does, over real HTTP.

It follows Microsoft's published reference, field by field:

- Azure OpenAI data-plane REST reference (api-version 2024-10-21, "Chat completions - Create",
  "Models - List"): https://learn.microsoft.com/azure/ai-services/openai/reference
- the v1 API (model = the deployment's name in the body):
  https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle
- quotas and their headers (``x-ratelimit-remaining-requests`` / ``-tokens``; a 429 with
  ``retry-after`` in seconds and ``retry-after-ms``):
  https://learn.microsoft.com/azure/ai-services/openai/how-to/quota
- content filtering fields in answers (``prompt_filter_results``, ``content_filter_results``):
  https://learn.microsoft.com/azure/ai-services/openai/concepts/content-filter

What it does: ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` and
``POST /openai/v1/chat/completions``, ``.../embeddings`` too, and the v1 API's
``POST /openai/v1/responses`` (a Response object, not streamed: "Azure OpenAI Responses API",
https://learn.microsoft.com/azure/ai-foundry/openai/how-to/responses); the key in ``api-key`` or an Entra
token as ``Authorization: Bearer``; 404 ``DeploymentNotFound`` for an unknown deployment, 404
for a missing api-version, 401 for a wrong key; per-deployment request limits answered with
Azure's 429; streaming with the prompt-filter chunk first and a usage chunk when asked; the
headers Azure sends (``apim-request-id``, ``x-request-id``, ``x-ms-region``,
``azureml-model-session``). Every request is recorded in :attr:`FakeAzure.received`.
"""

from __future__ import annotations

import collections
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .loopback import LoopbackServer

API_VERSIONS = ("2024-06-01", "2024-10-21", "2025-04-01-preview")
FILTERS = {
    s: {"filtered": False, "severity": "safe"} for s in ("hate", "self_harm", "sexual", "violence")
}


@dataclass
class Deployment:
    """One deployment of the resource: its name and the model behind it."""

    name: str
    model: str  # what answers carry in "model", e.g. "gpt-4o-mini-2024-07-18"
    limit: int = 0  # requests per `window` seconds; 0: none
    window: float = 60.0
    calls: collections.deque = field(default_factory=collections.deque)


@dataclass
class AzureReceived:
    deployment: str
    url_form: str  # "deployments" or "v1"
    auth: str  # "api-key" or "entra"
    body: dict[str, Any]
    query: dict[str, str]
    status: int = 200
    endpoint: str = ""  # "chat/completions", "embeddings" or "responses"


class FakeAzure(LoopbackServer):
    """An Azure OpenAI resource at :attr:`endpoint` (what the SDK takes as azure_endpoint)."""

    thread_name = "fake-azure"

    def __init__(
        self,
        deployments: list[Deployment],
        *,
        key: str = "azure-key-0123456789",
        entra_token: str = "eyJ0eXAiOi.fake-entra-token",
        region: str = "swedencentral",
    ) -> None:
        self.deployments = {d.name: d for d in deployments}
        self.key, self.entra_token, self.region = key, entra_token, region
        self.received: list[AzureReceived] = []
        self.fail_next: list[int] = []  # statuses to answer the next requests with (5xx)
        # errors to answer the next requests with, as (status, code, message): in the message,
        # {key} is the key the request came with and {deployment} the deployment it named, as
        # an error of Azure's may quote them
        self.errors_next: list[tuple[int, str, str]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(
            "/openai/deployments/{deployment}/{endpoint:chat/completions|embeddings}",
            self._deployed,
        )
        app.router.add_post("/openai/v1/{endpoint:chat/completions|embeddings|responses}", self._v1)
        app.router.add_get("/openai/models", self._models)
        app.router.add_get("/openai/v1/models", self._models)

    # -- handlers ----------------------------------------------------------------------

    def _auth(self, request: web.Request) -> str | None:
        if request.headers.get("api-key") == self.key:
            return "api-key"
        if request.headers.get("Authorization") == f"Bearer {self.entra_token}":
            return "entra"
        return None

    def _headers(self) -> dict[str, str]:
        rid = str(uuid.uuid4())
        return {
            "apim-request-id": rid,
            "x-request-id": rid,
            "x-ms-region": self.region,
            "azureml-model-session": "d089-20240909104532",
        }

    async def _models(self, request: web.Request) -> web.Response:
        if self._auth(request) is None:
            return _unauthorized()
        if (
            request.path == "/openai/models"
            and request.query.get("api-version") not in API_VERSIONS
        ):
            return _error(404, "404", "Resource not found")
        data = [
            {
                "id": d.model.rsplit("-", 3)[0],
                "object": "model",
                "status": "succeeded",
                "capabilities": {"chat_completion": True},
            }
            for d in self.deployments.values()
        ]
        return web.json_response({"object": "list", "data": data}, headers=self._headers())

    async def _deployed(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("api-version") not in API_VERSIONS:
            return _error(404, "404", "Resource not found")
        return await self._answer(request, request.match_info["deployment"], "deployments")

    async def _v1(self, request: web.Request) -> web.StreamResponse:
        try:
            name = (await request.json()).get("model", "")
        except json.JSONDecodeError:
            name = ""
        return await self._answer(request, str(name), "v1")

    async def _answer(self, request: web.Request, name: str, form: str) -> web.StreamResponse:
        auth = self._auth(request)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "BadRequest", "The request body is not valid JSON.")
        rec = AzureReceived(name, form, auth or "", body, dict(request.query))
        rec.endpoint = request.match_info["endpoint"]
        self.received.append(rec)
        if auth is None:
            rec.status = 401
            return _unauthorized()
        dep = self.deployments.get(name)
        if dep is None:
            rec.status = 404
            return _error(
                404,
                "DeploymentNotFound",
                "The API deployment for this resource does not exist. If "
                "you created the deployment within the last 5 minutes, please wait a moment and try again.",
            )
        if self.errors_next:
            rec.status, code, message = self.errors_next.pop(0)
            sent = request.headers.get("api-key") or request.headers.get("Authorization", "")
            return _error(rec.status, code, message.format(key=sent, deployment=name))
        if self.fail_next:
            rec.status = self.fail_next.pop(0)
            return _error(
                rec.status,
                "InternalServerError",
                "The server had an error while processing your request.",
            )
        now = time.monotonic()
        while dep.calls and dep.calls[0] <= now - dep.window:
            dep.calls.popleft()
        if dep.limit and len(dep.calls) >= dep.limit:
            rec.status = 429
            wait = dep.calls[0] + dep.window - now
            return _error(
                429,
                "429",
                f"Requests to the ChatCompletions_Create Operation under Azure OpenAI API "
                f"version {request.query.get('api-version', 'v1')} have exceeded call rate limit of your "
                f"current OpenAI S0 pricing tier. Please retry after {int(wait) + 1} seconds.",
                {
                    "retry-after": str(int(wait) + 1),
                    "retry-after-ms": str(int(wait * 1000)),
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-remaining-tokens": "0",
                    **self._headers(),
                },
            )
        dep.calls.append(now)
        headers = {
            **self._headers(),
            "x-ratelimit-remaining-requests": str(max(0, dep.limit - len(dep.calls))),
            "x-ratelimit-remaining-tokens": "9000",
        }
        if request.path.endswith("/embeddings"):
            texts = (
                body.get("input") if isinstance(body.get("input"), list) else [body.get("input")]
            )
            data = [
                {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                for i, _ in enumerate(texts)
            ]
            n = sum(len(str(t)) // 4 + 1 for t in texts)
            return web.json_response(
                {
                    "object": "list",
                    "data": data,
                    "model": dep.model,
                    "usage": {"prompt_tokens": n, "total_tokens": n},
                },
                headers=headers,
            )
        if rec.endpoint == "responses":
            return web.json_response(_response(body, dep.model), headers=headers)
        last = next(
            (
                m.get("content")
                for m in reversed(body.get("messages", []))
                if m.get("role") == "user"
            ),
            "",
        )
        words = f"Azure answer to: {str(last)[:200]}".split(" ")
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit:
            words = words[: int(limit)]
        prompt = max(1, len(json.dumps(body.get("messages", []))) // 4)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(words),
            "total_tokens": prompt + len(words),
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        cid, created = "chatcmpl-" + uuid.uuid4().hex[:20], int(time.time())
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": dep.model,
                    "system_fingerprint": "fp_azure",
                    "prompt_filter_results": [
                        {"prompt_index": 0, "content_filter_results": FILTERS}
                    ],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "logprobs": None,
                            "message": {"role": "assistant", "content": " ".join(words)},
                            "content_filter_results": FILTERS,
                        }
                    ],
                    "usage": usage,
                },
                headers=headers,
            )
        resp = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await resp.prepare(request)
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if with_usage else {}

        async def send(obj: dict[str, Any]) -> None:
            await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")

        # Azure's first chunk: no choices, the prompt's filter results, empty id and model
        await send(
            {
                "id": "",
                "object": "",
                "created": 0,
                "model": "",
                "choices": [],
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}],
            }
        )
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": dep.model,
            "system_fingerprint": "fp_azure",
        }
        await send(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                        "content_filter_results": {},
                    }
                ],
                **extra,
            }
        )
        for i, w in enumerate(words):
            await send(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"content": (" " if i else "") + w},
                            "finish_reason": None,
                            "content_filter_results": FILTERS,
                        }
                    ],
                    **extra,
                }
            )
        await send(
            {
                **base,
                "choices": [
                    {"index": 0, "delta": {}, "finish_reason": "stop", "content_filter_results": {}}
                ],
                **extra,
            }
        )
        if with_usage:
            await send({**base, "choices": [], "usage": usage})
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def _unauthorized() -> web.Response:
    return _error(
        401,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API endpoint for "
        "your resource.",
    )


def _response(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A Responses API answer to `body`: its last user text echoed, as chat answers are."""
    given = body.get("input")
    if isinstance(given, list):
        texts = [
            part.get("text", "") if isinstance(part, dict) else ""
            for item in given
            if isinstance(item, dict) and item.get("role") == "user"
            for part in (item["content"] if isinstance(item.get("content"), list) else [item])
        ]
        given = next((t for t in reversed(texts) if t), "") or next(
            (i.get("content") for i in reversed(given) if isinstance(i, dict)), ""
        )
    words = f"Azure answer to: {str(given)[:200]}".split(" ")
    limit = body.get("max_output_tokens")
    if limit:
        words = words[: int(limit)]
    prompt = max(1, len(json.dumps(body.get("input"))) // 4)
    return {
        "id": "resp_" + uuid.uuid4().hex[:24],
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_" + uuid.uuid4().hex[:24],
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": " ".join(words), "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "store": bool(body.get("store", True)),
        "temperature": 1.0,
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": len(words),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + len(words),
        },
    }
