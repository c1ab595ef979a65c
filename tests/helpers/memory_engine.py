"""Engines whose providers answer in memory (``transport.memory.MemoryClient``, given by the
composition root as ``Engine``'s `transports`): the engine's own logic with no socket and no
server, every provider kind's translation and error reading as over the wire. A test writes
each answer in its provider's published shape; ``completion`` is OpenAI's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jupyter_server_ext.engine import Engine, EngineSettings, parse_upstreams
from jupyter_server_ext.engine.upstreams.transport import Transports
from jupyter_server_ext.engine.upstreams.transport.memory import (
    MemoryClient,
    MemoryRequest,
    MemoryResponse,
)
from jupyter_server_ext.engine.upstreams.transport.remote import HTTPTransport
from jupyter_server_ext.state import MemoryState

PRICE = {"input": 1000.0, "output": 2000.0}  # dollars a million tokens: $0.001 and $0.002 a token
Provider = Callable[[MemoryRequest], MemoryResponse]


def upstream(name: str, **extra: Any) -> dict[str, Any]:
    """An upstream at a provider of its own (``https://<name>.provider.test/v1``), serving model
    ``m`` at ``PRICE``, unless `extra` says otherwise."""
    return {
        "name": name,
        "base_url": f"https://{name}.provider.test/v1",
        "api_key": f"sk-{name}",
        "models": ["m"],
        "prices": {"m": PRICE},
        **extra,
    }


def completion(text: str, prompt: int, answer: int) -> dict[str, Any]:
    """An OpenAI chat completion, as the API reference gives it."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": answer,
            "total_tokens": prompt + answer,
        },
    }


def recording(sent: list[MemoryRequest], answer: dict[str, Any]) -> Provider:
    """A provider that keeps each request in `sent` and answers each with `answer`."""

    def provider(request: MemoryRequest) -> MemoryResponse:
        sent.append(request)
        return MemoryResponse(json=answer)

    return provider


def memory_engine(provider: Any, *upstreams: dict[str, Any], **settings: Any) -> Engine:
    """An engine over `upstreams`, each answered by `provider` (a request -> a response, or a
    ``MemoryClient`` handler of another shape), on the in-memory state; `settings`: more of
    ``EngineSettings``. The caller closes it."""
    return Engine(
        EngineSettings(
            upstreams=parse_upstreams(list(upstreams)),
            health_check_seconds=0,
            **settings,
        ),
        state=MemoryState(),
        transports=Transports(http=HTTPTransport(client=MemoryClient(provider))),
    )
