"""Who a caller is: the one admin rule, and the ``Caller`` every host hands the engine.

Each host authenticates its own way (Jupyter's identity provider, a hub token, the kernel's OS
user) and turns what it learnt into a ``Caller`` here; what makes that user an rsql admin is
decided once, the same for all of them (docs/architecture.md, "Rules a contributor keeps").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .config.check import service_name
from .config.proxy import RSQLProxy
from .engine import Caller
from .engine.courses.log import CourseLogSpec
from .engine.errors import Forbidden


def is_admin(
    proxy: RSQLProxy,
    user: str,
    groups: Iterable[str],
    *,
    hub_admin: bool = False,
    owner: str | None = None,
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


def readable_courses(caller: Caller, specs: Mapping[str, CourseLogSpec]) -> tuple[str, ...]:
    """The logged courses whose log `caller` may read: every one for an rsql admin, else those
    whose instructors' hub group (``c.RSQLProxy.course_logs``) the caller is a member of. The
    groups are the hub's (or a static user's), never anything the request says."""
    if caller.admin:
        return tuple(specs)
    return tuple(c for c, spec in specs.items() if spec.instructors in caller.groups)


def hub_name(model: Mapping[str, Any]) -> str:
    """The caller name of a JupyterHub model (of a token, a user, a service): a user's own name,
    or ``service/<name>`` for a service, so the two never meet. Raises ``Forbidden`` for a model
    that is neither, or a user name holding '/' (JupyterHub allows none: a custom authenticator
    that lets one through could otherwise pass for a service)."""
    kind, name = model.get("kind", "user"), model.get("name")
    if not isinstance(name, str) or not name:
        raise Forbidden("the hub's answer about this token names no user or service")
    if kind == "service":
        return service_name(name)
    if kind != "user":
        raise Forbidden(f"the rsql proxy serves hub users and services, not a {kind!r}")
    if "/" in name:
        raise Forbidden(
            f"user name {name!r} holds a '/', which JupyterHub user names cannot; ask the hub admin"
        )
    return name


def jupyter_caller(proxy: RSQLProxy, user: Any, *, owner: str, as_owner: bool) -> Caller | None:
    """The caller of a Jupyter server's request: the server's `owner` when the request speaks
    for them (`as_owner`: the server's own token, or an identity provider that knows no names),
    else its authenticated `user` by their own name: a hub user or service with access to
    someone else's server is themselves, an admin only by the admin rule. None (refused) when
    the identity provider gives no name. The owner is an admin of their own proxy."""
    # JupyterHub's single-user identity provider keeps the hub's model (kind, groups) on the user
    hub = getattr(user, "hub_user", None)
    hub = hub if isinstance(hub, Mapping) else {}
    name = hub_name(hub) if hub.get("name") else getattr(user, "username", None)
    groups = getattr(user, "groups", None) or hub.get("groups") or ()
    if as_owner:
        # the owner's groups only from the owner's own identity (a token's anonymous user has none)
        return make_caller(proxy, owner, groups if name == owner else (), owner=owner)
    if not isinstance(name, str) or not name:
        return None
    return make_caller(proxy, name, groups, owner=owner)


def hub_caller(proxy: RSQLProxy, model: Mapping[str, Any]) -> Caller:
    """The caller a JupyterHub token belongs to, from the hub's model of it (a user or a
    service); raises ``Forbidden`` when the token lacks ``c.RSQLProxy.required_scope``."""
    name = hub_name(model)
    required = proxy.required_scope
    if required and required not in model.get("scopes", ()):
        raise Forbidden(f"using the rsql proxy requires the scope {required!r}")
    return make_caller(proxy, name, model.get("groups") or (), hub_admin=bool(model.get("admin")))
