"""Errors the engine raises, each knowing the HTTP status and OpenAI error shape it maps to."""

from __future__ import annotations

import math
from typing import Any


class ProxyError(Exception):
    """An error that reaches the client as OpenAI-format JSON with a fitting status."""

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
        self.extra: dict[str, Any] = dict(extra or {})

    def to_json(self) -> dict[str, Any]:
        # OpenAI's error object always has these four; clients (the SDK, LangChain) read them
        err: dict[str, Any] = {"message": self.message, "type": self.type, "param": None, "code": self.code}
        err.update(self.extra)
        return {"error": err}


class BadRequest(ProxyError):
    """The request body is malformed; the message names the offending field."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class PayloadTooLarge(ProxyError):
    """A 413: the body is over ``max_body_bytes``; refused before it is read whole."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class Unauthorized(ProxyError):
    """No credentials, or ones nobody issued: a 401 as OpenAI sends it, so clients raise their
    authentication error (the SDK's ``AuthenticationError``), not a permission error."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"

    def __init__(self, message: str = "a valid token is required: send 'Authorization: Bearer <token>'", **kw: Any) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="rsql"', **kw.pop("headers", {})}
        super().__init__(message, headers=headers, **kw)


class Forbidden(ProxyError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(ProxyError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class UpstreamRejected(ProxyError):
    """A provider's 4xx for the request itself, passed on as the provider sent it: its status,
    type, code, param and message (key text scrubbed), so clients see what they would have
    seen talking to the provider directly."""

    def __init__(self, status: int, error: dict[str, Any], fallback: str) -> None:
        message = error.get("message") if isinstance(error.get("message"), str) else fallback
        super().__init__(message or fallback, status=status)
        self.type = str(error.get("type") or "invalid_request_error")
        code = error.get("code")
        self.code = code if isinstance(code, (str, int)) or code is None else str(code)
        self.extra = {"param": error.get("param")}


class RateLimited(ProxyError):
    """A 429: always carries Retry-After (whole seconds, rounded up, at least 1)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, limit: str, **kw: Any) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        headers = {"Retry-After": str(self.retry_after), **kw.pop("headers", {})}
        extra = {"limit": limit, "retry_after": self.retry_after, **kw.pop("extra", {})}
        super().__init__(message, headers=headers, extra=extra, **kw)
        self.limit = limit


class UpstreamError(ProxyError):
    """Every upstream option was spent; status is 502 (bad answers) or 504 (timeouts)."""

    status = 502
    type = "upstream_error"
    code = "upstream_failed"


class ConfigError(ValueError):
    """A bad configuration value; the message names the upstream and the field."""
