"""A policy window an admin starts at run time is shared between proxy replicas through the
state backend, a real Redis: a window started on one replica refuses its group on the other,
and ending it there lets the group in again on the first. Windows, entitlements and cost per
notebook in one proxy: tests/unit/test_policy_http.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.fake_provider import FakeProvider
from tests.helpers.policy_proxy import proxy_starter


@pytest.fixture
async def start_proxy(
    tmp_path: Path, fresh_provider: FakeProvider
) -> AsyncIterator[Callable[..., Any]]:
    async with proxy_starter(tmp_path, fresh_provider) as start:
        yield start


async def test_a_run_time_window_is_shared_through_the_state_backend(
    start_proxy, redis_url, redis_prefix
) -> None:
    one = await start_proxy(state_url=redis_url, state_prefix=redis_prefix)
    two = await start_proxy(state_url=redis_url, state_prefix=redis_prefix)
    two.now = one.now
    status, _ = await one.call(
        "POST",
        "admin/windows",
        "tok-admin",
        {
            "name": "exam-now",
            "groups": ["students"],
            "minutes": 10,
            "mode": "off",
            "message": "Exam",
        },
    )
    assert status == 200
    await two.engine.windows.refresh(force=True)  # what REFRESH_SECONDS does on its own
    assert (await two.ask("tok-bob"))[1]["error"]["code"] == "policy_window"
    await two.call("POST", "admin/windows/exam-now/end", "tok-admin", {})
    await one.engine.windows.refresh(force=True)
    assert (await one.ask("tok-bob"))[0] == 200
