"""``{proxy}mcp``: the handler both hosts mount, a thin bridge from tornado to the SDK's ASGI.

The host's base class authenticates the token first (a hub token in the hub service, the
server's token in a user's Jupyter server); the body has been read against the proxy's
``max_body_bytes`` (``RSQLMixin``). The request then goes to the SDK as one ASGI call: its
answer is written back as it comes, and the connection's close is the ASGI disconnect.

Hand-written rather than a WSGI/ASGI container: tornado has no ASGI host, and one request in,
one answer out (JSON, or an event stream the SDK ends itself) is all this endpoint needs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..engine.errors import EngineError, NotFound
from ..handlers.base import RSQLMixin


def asgi_scope(request: Any, path: str) -> dict[str, Any]:
    """The ASGI HTTP scope of a tornado request, as the SDK reads it, addressed to `path`."""
    host, _, port = (request.host or "127.0.0.1").rpartition(":")
    if not host or not port.isdigit():  # no port in the Host header
        host, port = request.host or "127.0.0.1", "443" if request.protocol == "https" else "80"
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.version.split("/")[-1] if request.version else "1.1",
        "method": request.method,
        "scheme": request.protocol,
        "path": path,
        "raw_path": path.encode(),
        "query_string": (request.query or "").encode("latin-1"),
        "root_path": "",
        "headers": [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.get_all()
        ],
        "client": (request.remote_ip or "", 0),
        "server": (host.strip("[]"), int(port)),
    }


class MCPMixin(RSQLMixin):
    """POST (JSON-RPC), GET and DELETE at ``mcp``, answered by the SDK."""

    _gone: asyncio.Event | None = None

    def on_connection_close(self) -> None:
        if self._gone is not None:
            self._gone.set()

    async def post(self) -> None:
        await self._serve()

    async def get(self) -> None:
        await self._serve()

    async def delete(self) -> None:
        await self._serve()

    async def _serve(self) -> None:
        try:
            endpoint = self.rsql.mcp
            if endpoint is None:
                raise NotFound(
                    "this proxy serves no MCP tools: an admin names the databases in "
                    "c.RSQLProxy.mcp_connections",
                    code="mcp_off",
                )
            caller = self.caller()
            if self._body_over:
                raise self.too_large()
            await self.rsql.ready()
        except EngineError as exc:
            self.write_proxy_error(exc)
            return
        body = b"".join(self._body_parts or ())
        self._gone = asyncio.Event()
        sent_body = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await self._gone.wait()  # type: ignore[union-attr]  # set just above
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if self._finished:
                return
            if message["type"] == "http.response.start":
                self.set_status(message["status"])
                self.clear_header("Content-Type")
                for k, v in message.get("headers", ()):
                    name = k.decode("latin-1")
                    if name.lower() not in ("content-length", "transfer-encoding"):
                        # tornado frames the body itself
                        self.add_header(name, v.decode("latin-1"))
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    self.write(chunk)
                if message.get("more_body"):
                    await self.flush()
                else:
                    self.finish()

        await endpoint.handle(caller, asgi_scope(self.request, "/mcp"), receive, send)
        if not self._finished:
            self.finish()


ROUTES: list[tuple[str, type]] = [("mcp", MCPMixin)]
