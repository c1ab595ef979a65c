"""The order end-to-end modules start in: the longest first.

`make test` runs these modules on two workers, a module on one of them (``--dist loadfile``: its
shared server, hub or database stays one). A worker takes the next module when it is almost
done with its own, in the order of the collection, so a long module taken last runs on alone
while the other worker waits. pytest-xdist's own order (most tests first) put the soak, one
test of 73 s, last. Longest first leaves only short modules for the end and both workers finish
within a few seconds of each other (``--no-loadscope-reorder`` keeps this order).
"""

from __future__ import annotations

import pytest

# Seconds a module took in `make test` (two workers, 2026-11-26): only the order matters, so a
# module missing here, or grown a little, costs nothing; one that grows past the others wants
# its place here.
SECONDS: dict[str, int] = {
    "test_inline_browser": 108,
    "test_soak": 73,
    "test_provenance_browser": 70,
    "test_local_model": 72,
    "test_proposal_browser": 62,
    "test_hub": 50,
    "test_local_model_loops": 49,
    "test_replicas": 40,
    "test_ai_tools": 39,
    "test_dashboard": 37,
    "test_replay_notebooks": 36,
    "test_hub_tokens": 32,
    "test_client_matrix": 30,
    "test_eval_cli": 28,
    "test_kernel_policy_nb": 26,
    "test_ask_proxy": 23,
    "test_abuse_proxy": 23,
    "test_chat_clipboard": 22,
    "test_ask_kernel": 22,
    "test_wheel_install": 22,
    "test_make_dist": 35,  # measured alone (issue 77), as the two below
    "test_wheel_resolves": 30,
    "test_abuse_sql": 21,
    "test_privacy_kernel": 21,
    "test_chat_browser": 20,
    "test_rsql_mcp": 20,
    "test_frontend_unit": 19,
}


# Before all the others, whatever their length: the two modules that generate with the local
# model use every core (llama.cpp's threads spin), and side by side on two cores each took twice
# as long and pressed on its tests' time bounds (test_local_model: 72 s alone, 140 s beside the
# other). The loops module, one test, goes first; the other worker then has the longest modules,
# and test_local_model, 4th, is taken only once the loops module is done.
FIRST = ("test_local_model_loops",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each end-to-end module keeps its tests together and in their order; FIRST, then the
    modules longest first (a stable sort: the rest keep the collection's order, after the unit
    tests)."""

    def key(item: pytest.Item) -> tuple[int, int, int]:
        if item.path.parent.name != "e2e":
            return (0, 0, 0)
        stem = item.path.stem
        return (1, 0 if stem in FIRST else 1, -SECONDS.get(stem, 0))

    items.sort(key=key)
