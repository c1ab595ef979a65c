"""Who a caller is: the one admin rule, and the ``Caller`` every host hands the engine.

Each host authenticates its own way (Jupyter's identity provider, a hub token, the kernel's OS
user) and turns what it learnt into a ``Caller`` here; what makes that user an rsql admin is
decided once, the same for all of them (docs/architecture.md, "Rules a contributor keeps").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .config import RSQLProxy
from .engine import Caller
from .engine.errors import Forbidden


def is_admin(
    proxy: RSQLProxy, user: str, groups: Iterable[str], *, hub_admin: bool = False, owner: str | None = None
) -> bool:
    """Whether `user` is an rsql admin: a JupyterHub admin (`hub_admin`), the owner of the server
    the proxy runs in (`owner`), or named in ``c.RSQLProxy.admin_users`` or, through one of
    `groups`, in ``c.RSQLProxy.admin_groups``."""
    return (
        hub_admin
        or (owner is not None and user == owner)
        or user in proxy.admin_users
        or any(g in proxy.admin_groups for g in groups)
    )


def make_caller(
    proxy: RSQLProxy,
    user: str,
    groups: Iterable[str] = (),
    *,
    hub_admin: bool = False,
    owner: str | None = None,
    client: str = "api",
) -> Caller:
    """The engine's ``Caller`` for `user`, its admin flag decided by :func:`is_admin`."""
    groups = tuple(groups)
    admin = is_admin(proxy, user, groups, hub_admin=hub_admin, owner=owner)
    return Caller(user=user, groups=groups, admin=admin, client=client)


def jupyter_caller(proxy: RSQLProxy, user: Any, *, owner: str, as_owner: bool) -> Caller:
    """The caller of a Jupyter server's request: its authenticated `user` (Jupyter's identity),
    or the server's `owner` when the request speaks for them (`as_owner`: a server token, an
    identity provider that knows no user names). The owner is an admin of their own proxy."""
    name = owner if as_owner else getattr(user, "username", None) or str(user)
    # JupyterHub's single-user identity provider keeps the hub model (with groups) on the user
    hub = getattr(user, "hub_user", None) or {}
    groups = getattr(user, "groups", None) or hub.get("groups") or ()
    return make_caller(proxy, name, groups, owner=owner)


def hub_caller(proxy: RSQLProxy, model: Mapping[str, Any]) -> Caller:
    """The caller a JupyterHub token belongs to, from the hub's model of it (a user or a
    service); raises ``Forbidden`` when the token lacks ``c.RSQLProxy.required_scope``."""
    name = model["name"] if model.get("kind", "user") == "user" else f"service:{model['name']}"
    required = proxy.required_scope
    if required and required not in model.get("scopes", ()):
        raise Forbidden(f"using the rsql proxy requires the scope {required!r}")
    return make_caller(proxy, name, model.get("groups") or (), hub_admin=bool(model.get("admin")))
