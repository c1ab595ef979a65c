"""Every module type-checks: mypy with the configuration in pyproject.toml (``[tool.mypy]``:
all four packages and bench/, whose scripts drive them; strict on the engine, the state
backends, the stores, the shared leaves and the kernel's session, SQL and agent layers, checked
elsewhere). A change that loses a type, or adds a ``# type: ignore`` without a reason, fails
here, so CI runs the type checker with the tests."""

from __future__ import annotations

import re

import pytest

from tests.helpers import REPO, require


def test_mypy_finds_nothing_in_any_module() -> None:
    require("mypy", reason="the 'test' extra")
    from mypy import api

    out, err, status = api.run(
        ["--config-file", str(REPO / "pyproject.toml"), "--no-error-summary"]
    )
    assert status == 0, out + err


@pytest.mark.parametrize(
    "folder", ["rsql_common", "rsql_sql", "rsql_magic", "jupyter_server_ext", "bench"]
)
def test_every_type_ignore_says_why(folder: str) -> None:
    bare = [
        f"{path.relative_to(REPO)}:{n}"
        for path in (REPO / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "type: ignore" in line and not re.search(r"type: ignore\[[\w, -]+\]\s+#\s*\S", line)
    ]
    assert bare == [], f"a `# type: ignore[code]` needs `# why` after it: {bare}"
