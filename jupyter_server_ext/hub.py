"""``configure_jupyterhub``: one call in jupyterhub_config.py runs the proxy for every user.

It adds ``rsql-proxy`` as a hub-managed service, lets users' server tokens call it, and tells
every kernel where it is, so ``%%ask`` works with no set-up by users.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from collections.abc import Mapping
from typing import Any

from .ai_environment import ai_environment, served_windows

# the scopes of the hub's default "server" role, which server_token_scopes replaces when set
_SERVER_ROLE_SCOPES = ["users:activity!user", "access:servers!server"]


def configure_jupyterhub(
    c: Any,
    config_file: str = "rsql_config.py",
    name: str = "rsql",
    url: str = "http://127.0.0.1:10101",
    *,
    proxy_url: str | None = None,
    environment: dict[str, str] | None = None,
    workers: int = 1,
    ai_tools: bool = False,
    ai_key_expires_in: int = 7 * 24 * 3600,
) -> None:
    """Add the rsql proxy to a JupyterHub config `c`.

    - `config_file`: the proxy's ``c.RSQLProxy.*`` settings (resolved relative to the hub's
      working directory); provider keys stay in the service's environment, never users'.
    - `name`, `url`: the service's name and where it listens.
    - `proxy_url`: what kernels use to reach it; default ``{url}/services/{name}/``, the
      service itself (kernels on the hub's host or network). Use the hub's public URL plus
      ``services/{name}/`` when kernels can only reach the hub's proxy.
    - `environment`: extra variables for the service (e.g. names of provider key variables
      to pass through: ``{"GROQ_KEY_A1": os.environ["GROQ_KEY_A1"]}``).
    - `workers`: processes serving the service's port (``rsql-proxy --workers``); more than 1
      needs ``c.RSQLProxy.state_url`` (Redis) in the proxy config.
    - `ai_tools`: point the AI tools users run (the OpenAI and Anthropic SDKs, Codex, Claude
      Code, LangChain, LiteLLM, jupyter-ai) at the service: every user's server gets every
      base-URL variable those clients read (``ai_environment``) and, as OPENAI_API_KEY and
      ANTHROPIC_API_KEY, a hub token of the user's that carries only the service's access
      scope, minted when the server starts and revoked when it stops (never a provider key,
      nor the server's own token, which opens the user's server), with
      OPENAI_AGENTS_DISABLE_TRACING=1 so the Agents SDK sends it nowhere else, and the context
      window Claude Code is to plan with for the hub's own model names, as `config_file`
      states them (read here once, as the service reads it when the hub starts it). A family
      of variables of which ``c.Spawner.environment`` already holds any is left as it is.
    - `ai_key_expires_in`: seconds that key lives at most, should nothing revoke it (a server
      still running then gets 401s from the service until it restarts).

    On stop the hub sends SIGINT, then SIGTERM 10 s later and SIGKILL 5 s after that: the
    proxy lets answers in flight finish until the SIGTERM (or its own
    ``shutdown_grace_seconds``, if shorter), then ends the rest and flushes its usage log.
    """
    if not name or "/" in name:
        raise ValueError(f"configure_jupyterhub: name must be a simple service name, got {name!r}")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"configure_jupyterhub: url must be http(s)://host:port, got {url!r}")
    config_path = os.path.abspath(config_file)
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"configure_jupyterhub: proxy config {config_path} does not exist")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"configure_jupyterhub: workers must be an integer >= 1, got {workers!r}")
    if not isinstance(ai_key_expires_in, int) or ai_key_expires_in < 60:
        raise ValueError(
            "configure_jupyterhub: ai_key_expires_in must be a number of seconds >= 60, "
            f"got {ai_key_expires_in!r}"
        )
    scope = f"access:services!service={name}"
    command = [sys.executable, "-m", "jupyter_server_ext", "--config", config_path]
    if workers > 1:
        command += ["--workers", str(workers)]

    services = list(c.JupyterHub.services) if "services" in c.JupyterHub else []
    services = [s for s in services if s.get("name") != name]
    services.append(
        {
            "name": name,
            "url": url,
            "command": command,
            "environment": dict(environment or {}),
            "display": False,
            # admins log in to the dashboard through the hub's OAuth (callback at
            # {prefix}oauth_callback, the hub's default); the hub's own admins and users need no
            # "authorize this service?" page for a service of their own hub
            "oauth_no_confirm": True,
        }
    )
    c.JupyterHub.services = services

    # users must hold the scope, and their servers' tokens must carry it
    extra = set(c.JupyterHub.extra_user_scopes) if "extra_user_scopes" in c.JupyterHub else set()
    c.JupyterHub.extra_user_scopes = extra | {scope}
    current = c.Spawner.server_token_scopes if "server_token_scopes" in c.Spawner else None
    if callable(current):
        original = current

        def with_rsql(spawner: Any) -> list[str]:
            return sorted(set(original(spawner)) | {scope})

        c.Spawner.server_token_scopes = with_rsql
    else:
        c.Spawner.server_token_scopes = sorted(set(current or _SERVER_ROLE_SCOPES) | {scope})

    env = dict(c.Spawner.environment) if "environment" in c.Spawner else {}
    env["RSQL_PROXY_URL"] = where = proxy_url or f"{url.rstrip('/')}/services/{name}/"
    if ai_tools:
        # a family the admin already set in Spawner.environment stays theirs
        keys = ServerKeys(name, scope, ai_key_expires_in)
        windows = configured_windows(config_path, environment or {})
        env.update(ai_environment(where, keys, env, windows))
        earlier = c.Spawner.post_stop_hook if "post_stop_hook" in c.Spawner else None

        def revoke_then(spawner: Any) -> Any:
            try:
                keys.stopped(spawner)
            except Exception:  # the admin's own hook runs whatever happened here
                spawner.log.exception("rsql: could not revoke the AI tools' key of %s", spawner)
            return earlier(spawner) if earlier is not None else None

        c.Spawner.post_stop_hook = revoke_then
    c.Spawner.environment = env


def configured_windows(config_path: str, environment: Mapping[str, str]) -> dict[str, int]:
    """The models' context windows the proxy's configuration file states (``served_windows``),
    read with the environment the service gets (its provider keys come from `environment`);
    empty, with the reason in the hub's log, when the file cannot be read here: the users'
    tools then plan with their own assumptions, and the service reports its own errors."""
    # imported here: the hub's own configuration imports this module, and needs the engine
    # only when it asks for the AI tools
    from traitlets.config.loader import PyFileConfigLoader

    from .config.proxy import RSQLProxy
    from .engine import parse_upstreams

    try:
        folder, file = os.path.split(config_path)
        loaded = PyFileConfigLoader(file, path=folder).load_config()
        upstreams = parse_upstreams(
            list(RSQLProxy(config=loaded).upstreams), {**os.environ, **environment}
        )
    except Exception as exc:  # the admin's file runs here too: any error, reported, not fatal
        logging.getLogger("rsql").warning(
            "rsql: the AI tools get no model windows: %s could not be read here (%s)",
            config_path,
            exc,
        )
        return {}
    return served_windows(upstreams)


class ServerKeys:
    """The key each spawned server's AI tools get: a hub token of the server's owner carrying
    only the service's access scope, so that a client sending it to a provider's own host (one
    that reads the key but not the base URL) hands over nothing but a way into the proxy as that
    user; never the server's own token, which opens the user's files and kernels.

    JupyterHub calls an environment value that is a callable with the spawner, once per variable
    when the server starts: both keys get the one token minted for that start. One token per
    server: minting one revokes any an earlier start left, and the server's stop revokes its own
    (``post_stop_hook``); the expiry bounds a token nothing revoked (a hub that died)."""

    def __init__(self, service: str, scope: str, expires_in: int) -> None:
        self.service, self.scope, self.expires_in = service, scope, expires_in
        # spawner -> (the server token of the start it was minted for, the key)
        self._minted: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()

    def note(self, spawner: Any) -> str:
        """How the hub lists a server's key (the user sees it on their token page)."""
        return f"{self.service}: AI tools' key of server {spawner.name or '(default)'!r}"

    def __call__(self, spawner: Any) -> str:
        start = str(spawner.api_token)  # a new one for every start of the server
        known = self._minted.get(spawner)
        if known is not None and known[0] == start:
            return known[1]
        try:
            self._revoke(spawner)
            key = str(
                spawner.user.new_api_token(
                    scopes=[self.scope], expires_in=self.expires_in, note=self.note(spawner)
                )
            )
        except Exception:  # the server still starts; its AI tools get no key, and the log why
            spawner.log.exception("rsql: could not make the AI tools' key of %s", spawner)
            return ""
        self._minted[spawner] = (start, key)
        return key

    def stopped(self, spawner: Any) -> None:
        """A server stopped: its key ends with it, unless the server is to resume as it was."""
        if not getattr(spawner, "will_resume", False):
            self._revoke(spawner)

    def _revoke(self, spawner: Any) -> None:
        self._minted.pop(spawner, None)
        user, note = spawner.user, self.note(spawner)
        stale = [t for t in user.orm_user.api_tokens if t.note == note]
        for token in stale:
            user.db.delete(token)
        if stale:
            user.db.commit()
