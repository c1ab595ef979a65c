"""A server stopped while its engine is still starting (the extension starts it on the server's
first loop turn, not on the first request): the stop waits for the start, then closes what it
started. Before, the start went on after the close and left its background tasks (alerts, the
usage log's flusher) on a loop about to close."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jupyter_server_ext.config.proxy import RSQLProxy
from jupyter_server_ext.handlers.base import ProxyContext
from jupyter_server_ext.wiring import build_engine
from tests.helpers import upstreams_for
from tests.helpers.fake_provider import FakeProvider


async def test_a_stop_during_the_start_leaves_no_background_task(
    tmp_path: Path, fresh_provider: FakeProvider
) -> None:
    proxy = RSQLProxy(
        upstreams=upstreams_for(fresh_provider), default_model="fake-small", health_check_seconds=0
    )
    engine = build_engine(proxy, default_database=f"sqlite:///{tmp_path / 'usage.sqlite'}")
    ctx = ProxyContext(engine=engine, proxy=proxy)
    before = asyncio.all_tasks()
    starting = asyncio.ensure_future(ctx.ready())  # as the extension does when the server starts
    await asyncio.sleep(0)  # the start is under way: the usage log opens in a thread
    assert not starting.done()
    await ctx.close()  # the host's stop, at once
    await asyncio.wait({starting})
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert left == [], [t.get_coro() for t in left]
