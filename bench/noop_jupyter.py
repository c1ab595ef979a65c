"""A Jupyter Server extension with one authenticated no-op API handler: the server's floor.

The server extension's targets are set against what its own server costs for an API request
that does nothing (#40): token authentication, Jupyter's identity, access log and metrics, a
fixed JSON answer. The handler skips the login cookie for token requests as the proxy's handlers
do (``ExtensionBase.set_secure_cookie``), so the floor is Jupyter's own work, not a cookie
neither side needs.

Enabled beside ``jupyter_server_ext`` by ``common.start_extension(..., noop=True)``, with this
folder on PYTHONPATH; it answers POST ``{base}bench-noop/...``.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web

BODY = b'{"id": "x", "object": "chat.completion", "choices": [], "usage": {}}'


class NoOp(APIHandler):
    @web.authenticated
    def post(self, *args: str) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(BODY)

    def set_secure_cookie(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        if self.request.headers.get("Authorization"):
            return
        super().set_secure_cookie(name, value, *args, **kwargs)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "noop_jupyter"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [(base + "bench-noop/(.*)", NoOp)])
