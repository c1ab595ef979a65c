"""A no-op tornado server answering every POST with a fixed JSON body: the framework's floor.

Used by the benchmarks to show how much of a request's CPU is tornado itself, measured side by
side with the proxy on the same machine.

    python bench/noop_server.py --port N [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio

from tornado import httpserver, web

BODY = b'{"id": "x", "object": "chat.completion", "choices": [], "usage": {}}'


class NoOp(web.RequestHandler):
    def post(self, *args: str) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(BODY)

    def get(self, *args: str) -> None:
        self.finish(BODY)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    app = web.Application([(r"/(.*)", NoOp)], log_function=lambda h: None)
    httpserver.HTTPServer(app).listen(args.port, "127.0.0.1")  # as rsql-proxy: no xheaders
    await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    if "--uvloop" in sys.argv:
        sys.argv.remove("--uvloop")
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
