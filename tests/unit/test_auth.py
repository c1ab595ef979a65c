"""The one admin rule both hosts and the in-process engine apply (``jupyter_server_ext.auth``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from jupyter_server_ext.auth import hub_caller, is_admin, jupyter_caller, make_caller
from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.engine.errors import Forbidden


@pytest.fixture
def proxy() -> RSQLProxy:
    return RSQLProxy(admin_users=["carol"], admin_groups=["staff"])


def test_a_plain_user_is_no_admin(proxy: RSQLProxy) -> None:
    assert not is_admin(proxy, "alice", ["students"])
    assert not make_caller(proxy, "alice", ["students"]).admin


def test_the_hubs_admin_flag_makes_an_admin(proxy: RSQLProxy) -> None:
    assert is_admin(proxy, "alice", (), hub_admin=True)


def test_admin_users_names_admins(proxy: RSQLProxy) -> None:
    assert is_admin(proxy, "carol", ())


def test_a_member_of_an_admin_group_is_an_admin(proxy: RSQLProxy) -> None:
    assert is_admin(proxy, "dave", ["students", "staff"])
    assert not is_admin(proxy, "staff", ["students"])  # a user named like the group is not


def test_the_servers_owner_is_an_admin(proxy: RSQLProxy) -> None:
    assert is_admin(proxy, "erin", (), owner="erin")
    assert not is_admin(proxy, "frank", (), owner="erin")


def test_make_caller_keeps_name_groups_and_client_kind(proxy: RSQLProxy) -> None:
    caller = make_caller(proxy, "dave", ["staff"], client="chat")
    assert (caller.user, caller.groups, caller.admin, caller.client) == (
        "dave",
        ("staff",),
        True,
        "chat",
    )


def test_a_hub_token_of_a_hub_admin_is_an_admin(proxy: RSQLProxy) -> None:
    caller = hub_caller(proxy, {"name": "alice", "groups": ["students"], "admin": True})
    assert (caller.user, caller.groups, caller.admin) == ("alice", ("students",), True)
    assert not hub_caller(proxy, {"name": "bob", "groups": ["students"]}).admin
    assert hub_caller(proxy, {"name": "dave", "groups": ["staff"]}).admin


def test_a_hub_service_is_named_as_one(proxy: RSQLProxy) -> None:
    assert hub_caller(proxy, {"name": "grader", "kind": "service"}).user == "service/grader"


def test_a_hub_token_without_the_required_scope_is_refused() -> None:
    proxy = RSQLProxy(required_scope="custom:rsql:use")
    with pytest.raises(Forbidden, match="custom:rsql:use"):
        hub_caller(proxy, {"name": "alice", "scopes": ["read:users"]})
    assert hub_caller(proxy, {"name": "alice", "scopes": ["custom:rsql:use"]}).user == "alice"


def test_a_jupyter_request_is_its_user_or_the_servers_owner(proxy: RSQLProxy) -> None:
    user = SimpleNamespace(username="carol", hub_user={"groups": ["staff"]})
    caller = jupyter_caller(proxy, user, owner="erin", as_owner=False)
    assert (caller.user, caller.groups, caller.admin) == ("carol", ("staff",), True)
    guest = jupyter_caller(proxy, SimpleNamespace(username="guest"), owner="erin", as_owner=False)
    assert (guest.user, guest.admin) == ("guest", False)
    token = jupyter_caller(
        proxy, SimpleNamespace(username="anonymous-xyz"), owner="erin", as_owner=True
    )
    assert (token.user, token.admin) == ("erin", True)
