"""The end-to-end modules' start order (tests/e2e/conftest.py): it names modules that exist,
and keeps each module's tests together and in their order."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.e2e.conftest import FIRST, SECONDS, pytest_collection_modifyitems
from tests.helpers import REPO

E2E = REPO / "tests" / "e2e"


def test_every_module_the_order_names_exists() -> None:
    # a renamed module would silently lose its place and could end the run alone again
    assert [m for m in (*SECONDS, *FIRST) if not (E2E / f"{m}.py").exists()] == []


def _item(path: Path, name: str) -> Any:
    return SimpleNamespace(path=path, name=name)


def test_the_local_model_first_then_the_longest_each_whole_and_unit_tests_before() -> None:
    longest, second = [
        m for m in sorted(SECONDS, key=SECONDS.__getitem__, reverse=True) if m not in FIRST
    ][:2]
    items = [
        _item(E2E / "test_not_named.py", "a"),
        _item(E2E / f"{second}.py", "b1"),
        _item(E2E / f"{second}.py", "b2"),
        _item(REPO / "tests" / "unit" / "test_x.py", "u"),
        _item(E2E / f"{longest}.py", "c1"),
        _item(E2E / f"{longest}.py", "c2"),
        _item(E2E / f"{FIRST[0]}.py", "f"),
    ]
    pytest_collection_modifyitems(items)
    assert [i.name for i in items] == ["u", "f", "c1", "c2", "b1", "b2", "a"]
