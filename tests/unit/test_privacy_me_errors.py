"""What each failure of ``GET me`` makes of the admin's context policy (rsql_magic/privacy.py):
a refused caller or an unreachable proxy leaves a client that sends nothing, said once by the
request's own error; any other failure fails closed, schemas only, and says so."""

from __future__ import annotations

from typing import Any

import pytest

from rsql_magic.errors import ProxyError
from rsql_magic.privacy import clear_cache, effective_policy


class RefusingProxy:
    """A client whose ``GET me`` fails with `error`: the attributes the policy reader uses."""

    def __init__(self, error: ProxyError) -> None:
        self.base_url = "http://127.0.0.1:9/rsql/"
        self.token = "t0ken"
        self.timeout = 5.0
        self.engine = None
        self.unavailable: ProxyError | None = None
        self.error = error

    def me(self, timeout: float | None = None) -> Any:
        raise self.error


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    clear_cache()
    yield
    clear_cache()


@pytest.mark.parametrize(
    "error",
    [
        ProxyError(401, "invalid token"),
        ProxyError(403, "this token lacks the scope 'access:services!service=rsql'"),
        ProxyError(0, "cannot reach the proxy at http://127.0.0.1:9/rsql/me: refused"),
    ],
    ids=["wrong token", "token without the scope", "unreachable"],
)
def test_a_refused_caller_or_no_proxy_makes_a_client_that_sends_nothing_and_no_note(
    error: ProxyError,
) -> None:
    client = RefusingProxy(error)
    _, notes = effective_policy(client)
    assert client.unavailable is error  # its chat raises this one error, said once
    assert notes == []  # no "sending schemas only" for a request that is never made


@pytest.mark.parametrize("status", [500, 502])
def test_any_other_failure_of_me_fails_closed_and_says_so(status: int) -> None:
    client = RefusingProxy(ProxyError(status, "the proxy is unwell"))
    policy, notes = effective_policy(client)
    assert client.unavailable is None  # the request may still go: with schemas only
    assert not policy.sample_rows and not policy.value_stats and policy.redacts("anything")
    assert len(notes) == 1 and "could not read the admin's context policy" in notes[0]
    assert "sending schemas only, no values" in notes[0]


def test_a_policy_window_refusal_of_me_is_not_a_refused_token() -> None:
    window = ProxyError(403, "exam", code="policy_window")
    client = RefusingProxy(window)
    policy, notes = effective_policy(client)
    assert client.unavailable is None and not policy.sample_rows and notes
