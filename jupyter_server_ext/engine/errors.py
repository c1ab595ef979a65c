"""Every error the proxy raises, in one tree under ``RSQLProxyError`` (httpx's ``_exceptions.py``
is the model), so a caller can catch the proxy's own errors apart from everyone else's.

- ``EngineError`` and its subclasses reach a client: each knows the HTTP status and the OpenAI
  error shape it maps to (``BadRequest`` ... ``UpstreamError``, ``StateUnavailable``,
  ``Untranslatable``).
- Failures the engine handles itself and never shows as they are: ``UpstreamFailure`` (one
  attempt at one upstream, which the failover loop reads), ``HTTP11Error`` (our HTTP client),
  ``StoreUnreachable`` (the usage database), ``UnsafeFolder`` (the usage spool),
  ``OverBudget`` (an inline count that hands its work to a worker), ``ToolRefused`` (an MCP
  tool call that does not run).
- ``ConfigError``: a bad setting, naming the field; ``ConfigProblems``: every bad setting and
  field at once, one line each (gathered by ``Problems``); ``CLIError``: what ends an admin
  command; ``CannotListen``: the service's port cannot be had.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

T = TypeVar("T")


class RSQLProxyError(Exception):
    """The root of every error the proxy raises."""


# The answers a client may send again unchanged and hope for another: a timeout, a conflict, a
# limit (429), and every 5xx. The openai and anthropic SDKs retry exactly these by default.
RETRYABLE_4XX = (408, 409, 429)


def retry_cannot_help(status: int) -> bool:
    """Whether sending the same request again cannot change this answer (a bad token, a model
    not served, a malformed body): it then says ``x-should-retry: false``."""
    return 400 <= status < 500 and status not in RETRYABLE_4XX


class EngineError(RSQLProxyError):
    """An error that reaches the client as OpenAI-format JSON with a fitting status.

    An answer no retry can change carries ``x-should-retry: false``, the header the official
    openai and anthropic SDKs read before their own rules. Claude Code reads it before its own
    rule of retrying every 401: without it a wrong key got ten retries with backoff, 176 s of
    silence before "Failed to authenticate" (issue 55; Claude Code 2.1.330)."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})
        if retry_cannot_help(self.status):
            self.headers.setdefault("x-should-retry", "false")
        self.extra: dict[str, Any] = dict(extra or {})

    def to_json(self) -> dict[str, Any]:
        # OpenAI's error object always has these four; clients (the SDK, LangChain) read them
        err: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": None,
            "code": self.code,
        }
        err.update(self.extra)
        return {"error": err}


class BadRequest(EngineError):
    """The request body is malformed; the message names the offending field."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class PayloadTooLarge(EngineError):
    """A 413: the body is over ``max_body_bytes``; refused before it is read whole."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class Unauthorized(EngineError):
    """No credentials, or ones nobody issued: a 401 as OpenAI sends it, so clients raise their
    authentication error (the SDK's ``AuthenticationError``), not a permission error."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def __init__(
        self,
        message: str = "a valid token is required: send 'Authorization: Bearer <token>'",
        **kw: Any,
    ) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="rsql"', **kw.pop("headers", {})}
        super().__init__(message, headers=headers, **kw)


class Forbidden(EngineError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(EngineError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class UpstreamRejected(EngineError):
    """A provider's 4xx for the request itself, passed on as the provider sent it: its status,
    type, code, param and message (key text scrubbed), so clients see what they would have
    seen talking to the provider directly."""

    def __init__(self, status: int, error: dict[str, Any], fallback: str) -> None:
        message = error.get("message") if isinstance(error.get("message"), str) else fallback
        super().__init__(message or fallback, status=status)
        self.type = str(error.get("type") or "invalid_request_error")
        code = error.get("code")
        # OpenAI's own codes are strings; some compatible servers send numbers
        self.code = code if isinstance(code, str) or code is None else str(code)
        self.extra = {"param": error.get("param")}


# the longest Retry-After a client is expected to wait out (Claude Code and the openai SDK wait up
# to 60 s and report a longer one at once)
LONGEST_WAIT = 60


class RateLimited(EngineError):
    """A 429: always carries Retry-After (whole seconds, rounded up, at least 1)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, retry_after: float, limit: str, usage_limit: bool = False, **kw: Any
    ) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        headers = {"Retry-After": str(self.retry_after), **kw.pop("headers", {})}
        extra = {"limit": limit, "retry_after": self.retry_after, **kw.pop("extra", {})}
        usage_limit = usage_limit and self.retry_after > LONGEST_WAIT
        if usage_limit:
            # Codex sleeps any Retry-After, five times over, saying only "Reconnecting...";
            # it stops at once on usage_limit_reached and prints the promo header's text
            extra["resets_at"] = int(time.time()) + self.retry_after
            headers["x-codex-promo-message"] = message.encode("ascii", "replace").decode()
        super().__init__(message, headers=headers, extra=extra, **kw)
        self.limit = limit
        if usage_limit:
            self.type = "usage_limit_reached"


class UpstreamError(EngineError):
    """Every upstream option was spent; status is 502 (bad answers) or 504 (timeouts)."""

    status = 502
    type = "upstream_error"
    code = "upstream_failed"


class ConfigError(RSQLProxyError, ValueError):
    """A bad configuration value; the message names the upstream and the field."""


class ConfigProblems(ConfigError):
    """Every problem of a configuration, one line each (str: the lines), not the first alone."""

    def __init__(self, problems: Iterable[str]) -> None:
        # one line each, said once: two checks that reach the same verdict say it once
        self.problems = list(dict.fromkeys(" ".join(p.split()) for p in problems))
        super().__init__("\n".join(self.problems))


def problems_of(exc: ConfigError) -> list[str]:
    """The lines a ConfigError stands for: its problems, or its one message."""
    return list(exc.problems) if isinstance(exc, ConfigProblems) else [" ".join(str(exc).split())]


class Problems(list[str]):
    """Problems collected while checking, one line each: an admin fixing a file sees every
    mistake in one run, not one a run."""

    def run(self, check: Callable[[], T], failed: Any) -> T:
        """What `check` returns; when it raises a ConfigError, its problems are noted and
        `failed` stands in, so the checks after it still run."""
        try:
            return check()
        except ConfigError as exc:
            self.extend(problems_of(exc))
            # a stand-in of the caller's choosing, never used past its refuse()
            return cast(T, failed)

    def refuse(self) -> None:
        """Raise ConfigProblems naming every problem noted, when there are any."""
        if self:
            raise ConfigProblems(self)


class StateUnavailable(EngineError):
    """The shared state (Redis) cannot be reached and `fail_open` is off: a 503."""

    status = 503
    type = "server_error"
    code = "state_unavailable"


class Untranslatable(BadRequest, ValueError):
    """An OpenAI request field Anthropic's Messages API cannot express; the proxy answers 400.

    A ``BadRequest`` too, so the engine renders it as OpenAI's error with ``param`` set."""

    def __init__(self, message: str, param: str, *, code: str = "unsupported_parameter") -> None:
        super().__init__(message, code=code, extra={"param": param})
        self.param = param


# -- failures handled inside the proxy -------------------------------------------------


@dataclass
class UpstreamFailure(RSQLProxyError):
    """kind: rate_limited | auth | server | timeout | connect | client (a 4xx to pass on) |
    unserved (this upstream does not serve the endpoint) | unsupported (its provider cannot
    express the request; never sent) | too_large (larger than a whole window of the provider's:
    about the request, so nothing cools; `limit` is the provider's token limit, 0 unsaid).

    `accepted`: the request reached the provider, which may be generating (and billing) an
    answer that did not come back in time; such an attempt is charged and never sent again
    to another key (docs/admins/limits-budgets.md, "Admission and what a request is charged")."""

    kind: str
    message: str
    status: int = 0
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    accepted: bool = False
    limit: int = 0

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class HTTP11Error(RSQLProxyError):
    """The connection failed or the answer did not parse; never carries a request's headers."""


class StoreUnreachable(RSQLProxyError):
    """The store did not take a batch and does not answer a ping: rows wait for it."""


class UnsafeFolder(RSQLProxyError, OSError):
    """The spool folder can be written by someone else: rows planted there would be charged."""


class CannotListen(RSQLProxyError):
    """The service cannot listen where it is told (a port in use, one it may not take, an
    address not of this machine): its message names the address and what to do."""


class CLIError(RSQLProxyError):
    """What ends an `rsql-proxy admin` command: its message and exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class OverBudget(RSQLProxyError):
    """An inline count ran out of its budget on the event loop: the worker counts it."""


class ToolRefused(RSQLProxyError):
    """An MCP tool call that does not run: `text` for the agent, `outcome` for the log and
    metrics, `status` for the HTTP answer."""

    def __init__(self, text: str, outcome: str, status: int) -> None:
        super().__init__(text)
        self.text, self.outcome, self.status = text, outcome, status
