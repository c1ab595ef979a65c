"""``{base_url}rsql/inline`` in a server whose kernels use another proxy: passed on there.

On JupyterHub every user's server has ``RSQL_PROXY_URL`` (the hub service, set by
``configure_jupyterhub``) and its kernels ask there with the server's hub token. The editor's
inline completions come from the browser to the user's own server, whose extension would answer
with its own engine: another model, none of the admin's limits, budget, windows or usage log. So
that server passes them on as its kernels would ask (``rsql_magic.client``'s discovery): to
``RSQL_PROXY_URL`` with ``RSQL_PROXY_TOKEN`` or the server's ``JUPYTERHUB_API_TOKEN``, and only
for the server's owner, whom that token names. The token never reaches the browser.

Both refusals come as the request arrives, before its body (issue 53): the owner is checked in
``prepare``, and the body streams in (``tornado.web.stream_request_body``, as the proxy's own
handlers read theirs, ``handlers.RSQLMixin``) counted against ``MAX_BODY`` byte by byte. Without
that a Jupyter server buffers up to 512 MiB for any caller before a handler runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from tornado.iostream import StreamClosedError

from .engine.errors import HTTP11Error
from .engine.upstreams.transport.http11 import HTTP11Client

MAX_BODY = 1 << 20  # a completion's body is a few kB; the service's own caps hold beyond this
# a body up to this many times MAX_BODY is read to its end and dropped before the 413 (a client
# that writes its whole body first then sees the answer, not a reset); past it the answer goes
# at once and the connection closes. The proxy's own handlers do the same (handlers.DRAIN_FACTOR).
DRAIN_FACTOR = 4
# the first byte within this; then each piece of the stream within the same
TIMEOUT_S = 60.0
# what the editor reads of the service's answer: the request id goes into the mark of an accepted
# completion, which `rsql-provenance --check` looks up (without it every mark on a hub was one
# no check could verify)
PASSED_HEADERS = (
    "content-type",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "x-rsql-cache",
    "x-request-id",
)


def forward_target(env: Mapping[str, str], own_url: str) -> tuple[str, str] | None:
    """(the kernels' proxy's URL, with its slash; a token for it) when that proxy is another
    one than `own_url`, else None."""
    url = env.get("RSQL_PROXY_URL", "").strip().rstrip("/")
    token = env.get("RSQL_PROXY_TOKEN") or env.get("JUPYTERHUB_API_TOKEN") or ""
    if not url or not token or url == own_url.rstrip("/"):
        return None
    return url + "/", token


class InlineForwardMixin:
    """GET and POST ``rsql/inline``, answered by the proxy at ``RSQL_PROXY_URL``; combined with
    the extension host's authenticated base class (``extension.py``)."""

    client = HTTP11Client()  # one keep-alive pool for the server's forwarded completions
    # the base class's (tornado's RequestHandler, ExtensionBase), for the type checker
    request: Any
    rsql_caller: Any
    set_status: Any
    set_header: Any
    write: Any
    flush: Any
    finish: Any
    _finished: bool

    def initialize(self, target: str, token: str, owner: str) -> None:
        self.target, self.proxy_token, self.owner = target, token, owner
        self._task: asyncio.Task[Any] | None = None
        self._parts: list[bytes] | None = []  # the body as it arrives; None once over the bound
        self._received = 0

    async def prepare(self) -> None:
        # the server's own limit (512 MiB) would answer a long chunked body with a bare 400
        # before ours could: this request is held to MAX_BODY below instead
        conn = self.request.connection
        if conn is not None and hasattr(conn, "set_max_body_size"):
            conn.set_max_body_size(2**62)
        result = super().prepare()  # type: ignore[misc]  # why: a mixin, before the host
        if result is not None:
            await result  # the host's authentication: the caller is known from here on
        if self._finished or not self._owner():
            return
        try:
            declared = int(self.request.headers.get("Content-Length", "0"))
        except ValueError:
            declared = 0  # tornado refuses it itself
        if declared > MAX_BODY:
            # too large whatever arrives (only what arrives is counted: data_received); far
            # past the bound the answer goes at once, none of the body read
            self._parts = None
            if declared > MAX_BODY * DRAIN_FACTOR:
                self._too_large()

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        self._received += len(chunk)
        if self._parts is not None and self._received <= MAX_BODY:
            self._parts.append(chunk)
            return
        self._parts = None  # over the bound: dropped as it comes (DRAIN_FACTOR)
        if self._received > MAX_BODY * DRAIN_FACTOR:
            self._too_large()  # the connection closes behind the answer: nothing more is read

    def _too_large(self) -> None:
        self._refuse(413, f"request body is larger than {MAX_BODY} bytes", "too_large")

    def on_connection_close(self) -> None:
        # the editor aborted (a keystroke): end the request to the service now, not at the first
        # write that fails, which waits for the model's first token. Closing that connection is
        # how the service learns its client is gone: it releases the completion lease and
        # charges what was generated, as for any dropped stream.
        if self._task is not None and not self._task.done():
            self._task.cancel()
        super().on_connection_close()  # type: ignore[misc]  # why: a mixin, before the host

    def _refuse(self, status: int, message: str, code: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": {"message": message, "type": "error", "code": code}}))

    def _owner(self) -> bool:
        caller = self.rsql_caller()
        if caller is not None and caller.user == self.owner:
            return True
        # anyone else the hub lets in (shared access, a service) would be billed as the owner
        self._refuse(403, "inline completions here are the server owner's only", "forbidden")
        return False

    async def get(self) -> None:
        await self._pass("GET", b"")  # prepare has refused anyone but the owner

    async def post(self) -> None:
        if self._parts is None:
            self._too_large()
            return
        await self._pass("POST", b"".join(self._parts))

    async def _pass(self, method: str, body: bytes) -> None:
        self._task = asyncio.current_task()
        try:
            await self._answer(method, body)
        except asyncio.CancelledError:  # the browser went away: nothing is left to write to
            pass
        finally:
            self._task = None

    async def _answer(self, method: str, body: bytes) -> None:
        headers = {"Authorization": f"token {self.proxy_token}", "Content-Type": "application/json"}
        notebook = self.request.headers.get("X-RSQL-Notebook")
        if notebook:
            headers["X-RSQL-Notebook"] = notebook
        try:
            answer = await self.client.request(
                method, self.target, headers=headers, body=body, timeout=TIMEOUT_S
            )
        except (HTTP11Error, OSError, TimeoutError):
            self._refuse(
                502, "the proxy at RSQL_PROXY_URL did not answer; try again", "upstream_error"
            )
            return
        try:
            self.set_status(answer.status)
            for name in PASSED_HEADERS:
                if name in answer.headers:
                    self.set_header(name, answer.headers[name])
            async for piece in answer.iter_chunks(TIMEOUT_S):
                self.write(piece)
                await self.flush()
        except StreamClosedError:  # the editor moved on: closing ends the request there too
            return
        except (HTTP11Error, TimeoutError):
            pass
        finally:
            answer.close()  # after a body read in full, iter_chunks has given the connection back
        self.finish()
