"""What one shell's settings decide, apart from any request: :class:`SessionConfig`.

The settings in force (the registered magics', else the trait defaults), the model to ask and
whether the admin allows it, batch or interactive, the proxy client (and its replay and preview
variants), and the context and SQL policies. Everything here is read again on each call, so a
``%config`` between cells takes effect at once; the request flow that uses it is
:class:`~rsql_magic.session.session.Session`'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

from traitlets.config import Configurable

from rsql_sql.policy import SqlPolicy

from ..client import ProxyClient
from ..errors import ProxyError, UsageError
from ..privacy import ContextPolicy, cached_me, effective_policy
from ..replay import Replay, ReplayStore, resolve_mode, resolve_path
from .course import Course, course_of
from .settings import AskSettings, SqlAISettings

__all__ = ["SessionConfig"]

_S = TypeVar("_S", bound=Configurable)  # a magic's settings class


class SessionConfig:
    """The settings of one shell and what follows from them (see the module docstring)."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.recorded_here: set[str] = set()  # replay fingerprints this kernel recorded
        self._defaults: dict[type, Configurable] = {}

    # -- settings ------------------------------------------------------------------------

    def _settings(self, name: str, kind: type[_S]) -> _S:
        registry = getattr(getattr(self.shell, "magics_manager", None), "registry", {})
        magic = registry.get(name)
        if isinstance(magic, kind):
            return magic
        # the magic is not loaded (the chat panel on its own): the trait defaults
        default = self._defaults.get(kind)
        if not isinstance(default, kind):
            default = kind(parent=self.shell if hasattr(self.shell, "config") else None)
            self._defaults[kind] = default
        return default

    @property
    def ask(self) -> AskSettings:
        """%%ask's settings: the registered ``RSQLMagic``, else the defaults."""
        return self._settings("RSQLMagic", AskSettings)

    @property
    def sql(self) -> SqlAISettings:
        """%%sql_ai's settings: the registered ``SqlAIMagics``, else the defaults."""
        return self._settings("SqlAIMagics", SqlAISettings)

    # -- the model -----------------------------------------------------------------------

    def model(
        self, override: str | None = None, *, sql: bool = False, client: ProxyClient | None = None
    ) -> str | None:
        """The model to ask: ``override`` (``--model``), then ``SqlAIMagics.model`` (``sql``),
        then ``RSQLMagic.model``, then env ``RSQL_MODEL``; then, given `client`, the default
        its proxy names for this user (:meth:`user_default_model`); None: the proxy's default."""
        return (
            override
            or (self.sql.model if sql else None)
            or self.ask.model
            or os.environ.get("RSQL_MODEL")
            or (self.user_default_model(client, sql=sql) if client is not None else None)
        )

    def user_default_model(self, client: ProxyClient, *, sql: bool = False) -> str | None:
        """The model ``GET me`` names for this user when none is: ``sql_default_model`` for
        %%sql_ai, else ``default_model``. None when unknown (``GET me`` is read at most once a
        minute and may fail: then the proxy's own default applies, and nothing fails)."""
        me = cached_me(client) or {}
        for key in ("sql_default_model", "default_model") if sql else ("default_model",):
            if isinstance(model := me.get(key), str) and model:
                return model
        return None

    def check_models(
        self, client: ProxyClient, models: Sequence[str | None], *, option: bool
    ) -> None:
        """UsageError, before anything is sent, when one of `models` is not among those
        ``GET me`` says this user may use now (the proxy would refuse it). Inside a window that
        turns the assistant off the proxy's refusal says more (its message, its end): none here.
        `option`: the models came from ``--model`` (else from the settings)."""
        me = cached_me(client) or {}
        allowed, window = me.get("models"), me.get("window")
        if not isinstance(allowed, list) or (
            isinstance(window, dict) and window.get("mode") == "off"
        ):
            return
        names = [str(m) for m in allowed if isinstance(m, str)]
        for model in models:
            if model and model not in names:
                where = (
                    "--model"
                    if option
                    else "the configured model (RSQLMagic.model, SqlAIMagics.model or RSQL_MODEL)"
                )
                raise UsageError(
                    f"{where} {model!r}: you may not use this model now. Models you may "
                    f"use: {', '.join(names) or 'none'} (the proxy's admin decides)"
                )

    def course(self, client: ProxyClient | None) -> Course:
        """The course rules ``GET me`` says are in force for this user (tutor mode, the course
        log), read at most once a minute; none when unknown (no proxy, an older one)."""
        if client is None or client.unavailable is not None:
            return Course()
        return course_of(cached_me(client))

    def is_batch(self) -> bool:
        """Is this a batch run (nbconvert, papermill)? See :mod:`rsql_magic.session`."""
        if self.ask.batch != "auto":
            return self.ask.batch == "yes"
        env = os.environ.get("RSQL_BATCH", "").strip().lower()
        if env in ("1", "true", "yes"):
            return True
        if env in ("0", "false", "no"):
            return False
        kernel = getattr(self.shell, "kernel", None)
        if kernel is None:
            return False  # terminal IPython honours set_next_input and has a person watching
        return not bool(getattr(kernel, "_allow_stdin", True))

    # -- the proxy -----------------------------------------------------------------------

    def client(self) -> ProxyClient:
        """The proxy, discovered on every call: discovery is cheap (the environment and one
        file lookup), and a proxy that appears or goes away between cells is seen at once."""
        ask = self.ask
        return ProxyClient.discover(
            ask.proxy_url or None, ask.proxy_token or None, timeout=ask.timeout
        )

    def preview_client(self) -> ProxyClient:
        """The proxy for a context preview: a missing one is no error there, nothing is sent."""
        try:
            return self.client()
        except ProxyError as e:
            return ProxyClient(description="no proxy", unavailable=e)

    def replay(self, kind: str, question: str, cell: str) -> Replay | None:
        """The replay settings for one cell's chat calls (None: replay is off)."""
        mode = resolve_mode(self.ask.replay, self.is_batch())
        if mode == "off":
            return None
        return Replay(
            mode,
            ReplayStore(resolve_path(self.ask.replay_file)),
            kind=kind,
            cell=cell,
            question=question,
            recorded_here=self.recorded_here,
        )

    def replay_client(self, replay: Replay | None) -> ProxyClient:
        """The proxy client; with replay on, a failed discovery is deferred to the first call
        that really needs the proxy, so a recorded notebook reruns with no proxy at all."""
        try:
            client = self.client()
        except ProxyError as e:
            if replay is None or replay.mode == "refresh":
                raise
            return ProxyClient(description="no proxy (replay only)", unavailable=e)
        if replay is not None and client.token:
            replay.secrets = (client.token,)
        return client

    # -- the policies --------------------------------------------------------------------

    def policy_for(self, client: ProxyClient | None) -> tuple[ContextPolicy, list[str]]:
        """The context policy in force for ``client``: the admin's (from ``GET me``, cached
        briefly, fail closed when unreadable) merged with ``RSQLMagic.context_policy``."""
        return effective_policy(client, self.ask.context_policy)

    def sql_policy(self) -> SqlPolicy:
        """What generated SQL may do: ``SqlAIMagics.allowed_functions`` and ``postgres_role``."""
        return SqlPolicy.make(
            self.sql.allowed_functions, self.sql.postgres_role, self.sql.max_result_bytes
        )
