"""The kernel side's errors: every exception rsql_magic raises on purpose is an :class:`RSQLError`.

- :class:`ProxyError`: a proxy call failed (HTTP status, or 0 when no proxy was reached).
- :class:`ReplayMissing`: replay ``only`` mode and no recorded answer (a :class:`ProxyError`:
  it stands in for the answer the proxy was not asked for).
- :class:`UsageError`: the user's mistake in a magic's line or a setting; IPython shows
  the message alone, no traceback (it is also IPython's ``UsageError``).

The SQL loop's errors (``rsql_magic.sql``) are :class:`RSQLError` subclasses too, so
``except RSQLError`` catches whatever the assistant raised on purpose.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError as IPythonUsageError

__all__ = ["ProxyError", "RSQLError", "ReplayMissing", "UsageError"]


class RSQLError(Exception):
    """Base of the errors rsql_magic raises on purpose."""


class UsageError(RSQLError, IPythonUsageError):
    """A mistake in a magic's options or a setting: shown as ``UsageError: <message>``."""

    def _render_traceback_(self) -> list[str]:
        # IPython shortens only its own UsageError class; a subclass says the same this way
        return [f"UsageError: {self}"]


class ProxyError(RSQLError):
    """A failed proxy call. ``status`` is the HTTP status (0: no proxy / network failure)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        limit: str | None = None,
        retry_after: float | None = None,
        reset: str | None = None,
        code: str | None = None,
        window: dict[str, Any] | None = None,
        allowed_models: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.limit = limit
        self.retry_after = retry_after
        self.reset = reset
        self.code = code
        # a 403 ``policy_window``: the admin's window in force (name, mode, message, ends_at,
        # ends_at_local, ...), as GET me shows it; ``model_not_allowed`` (and a window that
        # narrows the models): the models the caller may use
        self.window = window
        self.allowed_models = allowed_models

    @property
    def refused_by_policy(self) -> bool:
        """A refusal the admin's policy decided (a window in force, a model not allowed), not
        a failure: the cell says what the admin said, and what is allowed."""
        return self.status == 403 and self.code in ("policy_window", "model_not_allowed")

    def __str__(self) -> str:
        if self.status == 403 and self.code == "policy_window":
            return f"not available now (403, policy window): {self.message}"
        if self.status == 403 and self.code == "model_not_allowed":
            text = f"model not allowed (403): {self.message}"
            if self.allowed_models is not None and "may use" not in self.message:
                text += f"; models you may use: {', '.join(self.allowed_models) or 'none'}"
            return text
        if self.status == 429:
            parts = [f"rate limited (429): {self.message}"]
            if self.limit and self.limit not in self.message:
                parts.append(f"limit: {self.limit}")
            if self.reset and self.reset not in self.message:
                parts.append(f"resets: {self.reset}")
            if self.retry_after is not None:
                parts.append(f"retry after {self.retry_after:g}s")
            return "; ".join(parts)
        if self.status == 401:  # no token, or one the proxy does not accept
            return (
                f"not authenticated (401): {self.message}. The proxy did not accept the token: set "
                "%config RSQLMagic.proxy_token = '...' or RSQL_PROXY_TOKEN (on JupyterHub, "
                "JUPYTERHUB_API_TOKEN is used)"
            )
        if self.status:
            return f"proxy error {self.status}: {self.message}"
        return self.message

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a Python traceback: the message is what matters
        return [f"ProxyError: {self}"]


class ReplayMissing(ProxyError):
    """``only`` mode and no recorded answer: the cell fails, naming what changed."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message, code="replay_missing")

    def _render_traceback_(self) -> list[str]:
        return [f"ReplayMissing: {self.message}"]
