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

# Seconds a module took in `make test` (two workers, 2026-11-28): only the order matters, so a
# module missing here, or grown a little, costs nothing; one that grows past the others wants
# its place here.
SECONDS: dict[str, int] = {
    "test_inline_browser": 111,
    "test_local_model": 92,
    "test_soak": 77,
    "test_provenance_browser": 65,
    "test_hub": 53,
    "test_proposal_browser": 53,
    "test_replicas": 45,
    "test_wheel_resolves": 39,
    "test_ai_tools": 39,
    "test_eval_cli": 34,
    "test_dashboard": 34,
    "test_replay_notebooks": 33,
    "test_engine_stamping_redis": 29,
    "test_privacy_proxy": 28,
    "test_hub_tokens": 26,
    "test_client_matrix": 26,
    "test_providers_selfhosted": 25,
    "test_frontend_unit": 25,
    "test_abuse_proxy": 24,
    "test_kernel_policy_nb": 23,
    "test_wheel_install": 22,
    "test_abuse_sql": 22,
    "test_render_browser": 22,
    "test_chat_kernel": 21,
    "test_sql_kernel": 21,
    "test_chat_browser": 21,
    "test_ask_kernel": 20,
    "test_chat_clipboard": 20,
    "test_rsql_mcp": 19,
    "test_make_dist": 19,
}


# Before all the others, whatever their length: the two modules that generate with the local
# model use every core, and side by side on two cores each took twice as long and pressed on its
# tests' time bounds (test_local_model: 72 s alone, 140 s beside the other, when every model ran
# two threads; their multi-model tests now give each model one, `n_threads`). The loops module,
# one test, goes first; the other worker then has the longest modules, and test_local_model,
# second here, is taken only once the loops module is done.
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
