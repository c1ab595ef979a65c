"""What the Jupyter server's start made is frozen for the collector once the server runs
(c.RSQLProxy.freeze_startup_objects), so a full collection walks only what came since: without
it each one held the whole server still for about 100 ms (the proxy in a Jupyter server in this
process, pytest-jupyter; a `jupyter server` process: tests/e2e/test_proxy_server.py)."""

from __future__ import annotations

import gc
import time
from typing import Any

from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider


def _config(fp: FakeProvider, **more: Any) -> dict[str, Any]:
    return {"upstreams": upstreams_for(fp), "default_model": "fake-small", **more}


def test_the_servers_start_is_frozen_once_it_runs(
    jupyter_app_factory: Any, fresh_provider: FakeProvider
) -> None:
    assert gc.get_freeze_count() == 0
    try:
        server = jupyter_app_factory(_config(fresh_provider, freeze_startup_objects=True))
        deadline = time.monotonic() + 10
        while gc.get_freeze_count() == 0:  # once the server's loop has run its first turn
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.02)
        # the modules, classes and settings of a server: tens of thousands of objects at least
        assert gc.get_freeze_count() > 20_000
        status, _, _ = server.request("GET", "status")
        assert status == 200  # the server answers as before
    finally:
        gc.unfreeze()  # the rest of this test process's tests find the collector as it was


def test_false_leaves_the_collector_as_it_was(
    jupyter_app_factory: Any, fresh_provider: FakeProvider
) -> None:
    server = jupyter_app_factory(_config(fresh_provider, freeze_startup_objects=False))
    # answered on the server's loop, after anything its start put on the loop has run
    status, _, _ = server.request("GET", "status")
    assert status == 200
    assert gc.get_freeze_count() == 0
