"""The kernel side's errors, all in one tree: every exception rsql_magic raises on purpose is an
:class:`RSQLError`, and every warning it gives is an :class:`RSQLWarning`.

::

    RSQLError
    ├── UsageError          the user's mistake in a magic's line or a setting; IPython shows the
    │                       message alone, no traceback (it is also IPython's ``UsageError``)
    ├── ProxyError          a proxy call failed (HTTP status, or 0 when no proxy was reached)
    │   └── ReplayMissing   replay ``only`` mode and no recorded answer (it stands in for the
    │                       answer the proxy was not asked for)
    ├── UntrustedFile       a server file another local user could have written (discovery
    │                       skips it with a DiscoveryWarning)
    ├── SqlError            %%sql_ai's SQL failed at a stage, pointing at a Position
    │   ├── SqlCheckError   a generated statement failed a check; the model is told why
    │   │   ├── Refused     the read-only guard refused it: nothing ran
    │   │   └── SqlTooLarge past a bound of what the checks take (size, nesting, depth, parts)
    │   └── SqlAIError      no acceptable SQL within the retries (the magic's failure)
    ├── QueryTimeout        a statement ran past its time bound and was cancelled
    ├── BadConnection       a database URL the MCP servers cannot open read-only
    ├── BadCall             a tool call the agent's tools refuse (its text goes to the model)
    ├── HandOffFailed       a tool call the kernel's main thread did not run in time
    ├── StreamStopped       the chat panel's Stop, raised inside the stream to end it
    ├── TutorAnswer         an answer in tutor mode where SQL was to run: the loop stops
    │                       before its SQL is checked or run; the answer is shown, not run
    ├── ProvenanceError     rsql-provenance's failures, each with its exit code
    └── EvalError           rsql-eval's errors
        └── EvalInputError  a bad input: the command prints it and exits 2

    RSQLWarning (a UserWarning)
    ├── DiscoveryWarning    a server file was found but not trusted
    └── SuperuserWarning    generated SQL runs on PostgreSQL as a superuser

``except RSQLError`` catches whatever the assistant raised on purpose. The roots live in
:mod:`rsql_common.errors` and the SQL errors (``SqlError`` and below, ``QueryTimeout``,
``BadConnection``, ``SuperuserWarning``, and the :class:`Position`, :class:`Attempt` and
:class:`Escalation` they carry) in :mod:`rsql_sql.errors`, the SQL package the proxy's MCP
endpoint runs too; this module re-exports them, so the whole vocabulary is read here. Warnings
have a root of their own (as urllib3's and requests' do), so a warning turned into an error by a
filter is never caught as one of ours.
"""

from __future__ import annotations

import warnings
from typing import Any

from IPython.core.error import UsageError as IPythonUsageError

from rsql_common.errors import RSQLError, RSQLWarning
from rsql_sql.errors import (
    Attempt,
    BadConnection,
    Escalation,
    Position,
    QueryTimeout,
    Refused,
    SqlAIError,
    SqlCheckError,
    SqlError,
    SqlTooLarge,
    SuperuserWarning,
)

__all__ = [
    "Attempt",
    "BadCall",
    "BadConnection",
    "DiscoveryWarning",
    "Escalation",
    "EvalError",
    "EvalInputError",
    "HandOffFailed",
    "Position",
    "ProvenanceError",
    "ProxyError",
    "QueryTimeout",
    "RSQLError",
    "RSQLWarning",
    "Refused",
    "ReplayMissing",
    "SqlAIError",
    "SqlCheckError",
    "SqlError",
    "SqlTooLarge",
    "StreamStopped",
    "SuperuserWarning",
    "TutorAnswer",
    "UntrustedFile",
    "UsageError",
]


# -- the user's mistakes -------------------------------------------------------------------


class UsageError(RSQLError, IPythonUsageError):
    """A mistake in a magic's options or a setting: shown as ``UsageError: <message>``."""

    def _render_traceback_(self) -> list[str]:
        # IPython shortens only its own UsageError class; a subclass says the same this way
        return [f"UsageError: {self}"]


# -- the proxy -----------------------------------------------------------------------------


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


class UntrustedFile(RSQLError):
    """Another local user could have written this file (the message says why)."""


def short_warning_format() -> None:
    """Show our warnings as one line, ``DiscoveryWarning: ...``; others as before.

    Python's format names the file and line that warned and then prints that source line: in a
    notebook, or a headless nbconvert / papermill run's output, that is a line of our code the
    reader cannot act on. Installed once per process (``%load_ext rsql_magic``)."""
    previous = warnings.formatwarning
    if getattr(previous, "_rsql_short", False):
        return

    def formatwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        line: str | None = None,
    ) -> str:
        if issubclass(category, RSQLWarning):
            return f"{category.__name__}: {message}\n"
        return previous(message, category, filename, lineno, line)

    formatwarning._rsql_short = True  # type: ignore[attr-defined]  # why: a mark, not an API
    warnings.formatwarning = formatwarning


class DiscoveryWarning(RSQLWarning):
    """A server file was found but not trusted; or no proxy was found and the local model
    answers in the kernel."""


# -- the chat panel ------------------------------------------------------------------------


class StreamStopped(RSQLError):
    """Raised inside a streaming answer's delta callback once Stop was pressed: it ends the
    read in the worker, which shows the turn as stopped (a signal, never shown as an error)."""


# -- a course (issue 75) -------------------------------------------------------------------


class TutorAnswer(RSQLError):
    """The proxy answered a SQL question as the course's tutor (``X-RSQL-Mode: tutor``): raised
    from the SQL loop's model call, before the answer's SQL is checked or run, so that no
    tutor's answer ever runs; %%sql_ai shows it as tutor mode shows SQL."""

    def __init__(self, result: Any) -> None:
        super().__init__("the answer came in tutor mode: its SQL is shown, not run")
        self.result = result  # the ChatResult


class ProvenanceError(RSQLError):
    """What stops ``rsql-provenance``: the message for the terminal and the exit code (3: the
    proxy is unreachable, 4: the token was refused, 5: not allowed, 2: a bad input)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


# -- rsql-eval -----------------------------------------------------------------------------


class EvalError(RSQLError):
    """Base of rsql-eval's errors."""


class EvalInputError(EvalError):
    """A mistake in what rsql-eval was given; the message says which input and where."""


class BadCall(RSQLError):
    """A call the agent's tools refuse: its message is the error result's text."""

    def __init__(self, message: str, summary: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.summary = summary or f"refused: {message}"


class HandOffFailed(RSQLError):
    """A job the main thread did not run, or did not finish, in time; or Stop came first.
    ``reason``: "busy" (not started in time), "slow" (not finished in time) or "stopped"."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
