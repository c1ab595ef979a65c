"""The proxy's modules one chat completion runs code in: the walk docs/architecture.md draws,
counted rather than written down.

    python scripts/chat_walk.py           # the count and the modules, for a JSON answer
    python scripts/chat_walk.py --stream  # the same for a streamed answer

It builds an engine as a unit test does (one upstream answered in memory, the in-memory state,
a usage log on SQLite in memory, a daily budget so the budget's steps run too), sends one
request to warm it, then profiles a second one from ``Engine.chat`` to its usage row handed to
the log, and lists every module of ``jupyter_server_ext`` a function of which was called on the
event loop's thread (the log's batched write and the store's thread are the log's own work,
not the request's). The in-memory transport and state stand where a host has HTTP and Redis
or its memory; the hosts' handlers are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_server_ext.engine import Caller, Engine, EngineSettings, parse_upstreams  # noqa: E402
from jupyter_server_ext.engine.admission.limiter import LimitSettings, UserRules  # noqa: E402
from jupyter_server_ext.engine.upstreams.transport import Transports  # noqa: E402
from jupyter_server_ext.engine.upstreams.transport.memory import (  # noqa: E402
    MemoryClient,
    MemoryRequest,
    MemoryResponse,
)
from jupyter_server_ext.engine.upstreams.transport.remote import HTTPTransport  # noqa: E402
from jupyter_server_ext.state import MemoryState  # noqa: E402
from jupyter_server_ext.store.sqlite import SQLiteStore  # noqa: E402

PACKAGE = REPO / "jupyter_server_ext"
USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": USAGE,
}
CHUNKS: list[Any] = [
    {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [ch]}
    for ch in (
        {"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None},
        {"index": 0, "delta": {}, "finish_reason": "stop"},
    )
] + [{"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [], "usage": USAGE}]


def provider(request: MemoryRequest) -> MemoryResponse:
    if request.json().get("stream"):
        return MemoryResponse(headers={"Content-Type": "text/event-stream"}, events=CHUNKS)
    return MemoryResponse(json=ANSWER)


async def walk(stream: bool) -> list[str]:
    """The modules of ``jupyter_server_ext`` the second of two chat completions runs code in."""
    upstream = {
        "name": "a",
        "base_url": "https://a.provider.test/v1",
        "api_key": "sk-walk",
        "models": ["m"],
        "prices": {"m": {"input": 1000.0, "output": 2000.0}},
    }
    engine = Engine(
        EngineSettings(
            upstreams=parse_upstreams([upstream]),
            health_check_seconds=0,
            limits=LimitSettings(user=UserRules(daily_budget_usd=1.0)),
        ),
        state=MemoryState(),
        transports=Transports(http=HTTPTransport(client=MemoryClient(provider))),
        store=SQLiteStore(":memory:"),
    )
    seen: set[str] = set()

    def called(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(str(PACKAGE)):
            seen.add(str(Path(frame.f_code.co_filename).relative_to(REPO)))

    async def ask(text: str) -> None:
        message = {"role": "user", "content": text}
        body = {"model": "m", "messages": [message], "max_tokens": 50, "stream": stream}
        reply = await engine.chat(body, Caller("ann"))
        if reply.events is not None:
            async for _ in reply.events:
                pass

    try:
        await ask("hello")  # the first request builds what later ones reuse
        sys.setprofile(called)
        await ask("hello again")
        await asyncio.sleep(0.05)  # what the reply's end hands to tasks: the outcome, its row
    finally:
        sys.setprofile(None)
        await engine.close()
    return sorted(seen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", action="store_true", help="a streamed answer")
    args = parser.parse_args()
    modules = asyncio.run(walk(args.stream))
    print(f"{len(modules)} modules of jupyter_server_ext run one chat completion:")
    for module in modules:
        print(f"  {module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
