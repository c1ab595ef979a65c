"""The transport interface and the one place that picks a transport for an upstream."""

from __future__ import annotations

import inspect
import socket

import pytest

from jupyter_server_ext.engine.accounting.pricing import FREE, PriceBook
from jupyter_server_ext.engine.errors import UpstreamFailure
from jupyter_server_ext.engine.upstreams.specs import parse_upstreams
from jupyter_server_ext.engine.upstreams.transport import Transports
from jupyter_server_ext.engine.upstreams.transport.local import LocalTransport
from jupyter_server_ext.engine.upstreams.transport.protocol import Transport
from jupyter_server_ext.engine.upstreams.transport.remote import HTTPTransport

REMOTE, LOCAL = parse_upstreams(
    [
        {
            "name": "remote",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key": "sk-test",
            "models": ["m"],
        },
        {"name": "local", "provider": "llama_cpp", "models": ["smollm2-135m"]},
    ],
    {},
)


def test_spec_says_whether_it_runs_here() -> None:
    assert LOCAL.local and not REMOTE.local


async def test_the_factory_picks_by_spec() -> None:
    transports = Transports()
    try:
        assert isinstance(transports.for_spec(REMOTE), HTTPTransport)
        assert isinstance(transports.for_spec(LOCAL), LocalTransport)
        assert transports.for_spec(REMOTE) is transports.for_spec(REMOTE)  # one per kind
    finally:
        await transports.close()


@pytest.mark.parametrize("cls", [HTTPTransport, LocalTransport])
def test_both_transports_have_the_interface(cls: type) -> None:
    for name in ("send", "get_models", "close"):
        wanted = inspect.signature(getattr(Transport, name))
        got = inspect.signature(getattr(cls, name))
        assert list(got.parameters) == list(wanted.parameters), (cls.__name__, name)
        assert inspect.iscoroutinefunction(getattr(cls, name))


async def test_the_local_transport_serves_chat_only() -> None:
    local = LocalTransport()
    try:
        with pytest.raises(UpstreamFailure) as err:
            await local.send(
                LOCAL, {"input": "x"}, stream=False, timeout=1.0, endpoint="embeddings"
            )
        assert err.value.kind == "unserved" and err.value.status == 404
        assert await local.get_models(LOCAL, 1.0) == 200  # no key to disable
    finally:
        await local.close()


async def test_the_http_health_check_says_0_when_nothing_answers() -> None:
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = parse_upstreams(
        [
            {
                "name": "gone",
                "base_url": f"http://127.0.0.1:{port}/v1",
                "api_key": "sk-test",
                "models": ["m"],
            },
        ],
        {},
    )[0]
    http = HTTPTransport(connect_timeout=1.0)
    try:
        assert await http.get_models(spec, 1.0) == 0
    finally:
        await http.close()


def test_local_upstreams_are_free() -> None:
    assert PriceBook((REMOTE, LOCAL)).known("anything", "local") == FREE
