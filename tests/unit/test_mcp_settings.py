"""`c.RSQLProxy.mcp_connections` and the MCP limits: a bad value stops start-up (and
`rsql-proxy --check-config`) with a message naming the field, before anything connects."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.engine.errors import ConfigError

UPSTREAMS = [{"name": "a", "base_url": "http://127.0.0.1:9/v1", "api_key": "k", "models": ["m"]}]


def settings(**traits: Any) -> Any:
    return RSQLProxy(upstreams=UPSTREAMS, **traits).mcp_settings()


def test_a_good_configuration_is_read_with_its_defaults() -> None:
    got = settings(
        mcp_connections={
            "demo": "sqlite:////srv/demo.db",
            "dw": {"url": "postgresql://mcp@db/dw", "role": "reader", "groups": ["analysts"]},
        }
    )
    demo, dw = got.connections
    assert (demo.name, demo.kind, demo.max_rows, demo.timeout_seconds) == (
        "demo",
        "sqlite",
        20,
        10.0,
    )
    assert (dw.kind, dw.role, dw.groups) == ("postgres", "reader", ("analysts",))
    assert dw.open_to(("analysts", "x")) and not dw.open_to(("students",))
    assert demo.open_to(())
    assert [r.text for r in got.user_limits] == ["30/minute", "1000/day"]
    assert (got.user_concurrency, got.workers, got.on) == (2, 4, True)
    assert not settings().on


@pytest.mark.parametrize(
    ("traits", "says"),
    [
        ({"mcp_connections": {"dw": {"url": "postgresql://db/dw"}}}, "needs a read-only role"),
        (
            {"mcp_connections": {"dw": {"url": "mysql://db/dw", "role": "r"}}},
            "expected sqlite:///PATH",
        ),
        ({"mcp_connections": {"s": {"url": "sqlite:////x.db", "role": "r"}}}, "only PostgreSQL"),
        ({"mcp_connections": {"dw": {"url": "postgresql://db", "role": "r; DROP"}}}, "role name"),
        ({"mcp_connections": {"bad name": "sqlite:////x.db"}}, "a connection's name"),
        (
            {"mcp_connections": {"s": {"url": "sqlite:////x.db", "colour": 1}}},
            "unknown field 'colour'",
        ),
        ({"mcp_connections": {"s": {"url": "sqlite:////x.db", "max_rows": 0}}}, "max_rows"),
        ({"mcp_connections": {"s": {"url": "sqlite:////x.db", "groups": "staff"}}}, "['groups']"),
        ({"mcp_connections": {"s": {}}}, "URL is required"),
        ({"mcp_user_limits": ["lots"]}, "RSQLProxy.mcp_user_limits: cannot parse"),
        ({"mcp_user_concurrency": 0}, "mcp_user_concurrency"),
        ({"mcp_workers": 500}, "mcp_workers"),
    ],
)
def test_a_bad_value_names_its_field(traits: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(**traits)
    assert says in str(err.value)
    # start-up checks it with everything else, naming it there too
    with pytest.raises(ConfigError) as at_start:
        RSQLProxy(upstreams=UPSTREAMS, **traits).engine_settings(env={})
    assert says in str(at_start.value)


def test_a_password_in_a_bad_url_is_not_repeated() -> None:
    with pytest.raises(ConfigError) as err:
        settings(mcp_connections={"dw": {"url": "mysql://u:s3cret@db/dw"}})
    assert "s3cret" not in str(err.value)


def test_connections_without_the_sdk_stop_start_up_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service image ships the proxy alone: configured MCP connections there (no SDK) stop
    start-up with the install line, and without connections nothing of MCP is loaded."""
    import sys

    from jupyter_server_ext.mcp import build_mcp

    for name in [n for n in sys.modules if n == "mcp" or n.startswith("mcp.")] + ["mcp"]:
        monkeypatch.setitem(sys.modules, name, None)  # None: "not installed" to the import
    for name in ("jupyter_server_ext.mcp.endpoint", "jupyter_server_ext.mcp.tool_calls"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert build_mcp(RSQLProxy(upstreams=UPSTREAMS), engine=None) is None
    proxy = RSQLProxy(upstreams=UPSTREAMS, mcp_connections={"demo": "sqlite:////srv/demo.db"})
    with pytest.raises(ConfigError, match=r"pip install 'rsql-assistant\[mcp\]'"):
        build_mcp(proxy, engine=None)
