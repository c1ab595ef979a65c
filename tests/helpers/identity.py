"""A Jupyter identity provider for tests: each token is a named user, with groups.

Real Jupyter machinery (``c.ServerApp.identity_provider_class``), standing in for JupyterHub's
own provider in a single-user server, so the proxy sees several real user names.
"""

from __future__ import annotations

import json
import os

from jupyter_server.auth.identity import IdentityProvider, User


class TokenUsers(IdentityProvider):
    """Users from $RSQL_TEST_TOKEN_USERS: {"token": {"name": "alice", "groups": ["staff"]}}."""

    def get_user(self, handler):  # type: ignore[override]
        users = json.loads(os.environ.get("RSQL_TEST_TOKEN_USERS", "{}"))
        auth = handler.request.headers.get("Authorization", "")
        token = auth.split(" ", 1)[1].strip() if " " in auth else ""
        info = users.get(token)
        if info is None:
            return None
        user = User(username=info["name"])
        user.groups = list(info.get("groups", ()))  # type: ignore[attr-defined]
        return user

    @property
    def auth_enabled(self) -> bool:
        return True
