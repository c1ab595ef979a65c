"""The frontend extension's own unit tests (frontend/test/, vitest in jsdom): what goes into an
accepted cell, one decision per proposal, the proposal drawn as text only, where the cell goes.

In tests/e2e because npm is a program of its own: a unit test starts no process. `make setup`
installs frontend/node_modules from the lock file; without npm or node_modules the test skips
with the reason, and in CI it fails."""

from __future__ import annotations

import shutil
import subprocess

from tests.helpers import REPO, missing

FRONTEND = REPO / "frontend"


def test_the_frontend_unit_tests_pass() -> None:
    npm = shutil.which("npm")
    if npm is None:
        missing("npm is not installed (Node.js ^20.19; scripts/install-system-deps.sh test)")
    if not (FRONTEND / "node_modules" / ".bin" / "vitest").exists():
        missing("frontend/node_modules is not installed (make setup)")
    proc = subprocess.run(
        [npm, "test", "--silent"],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, f"npm test in frontend/:\n{out}"
    assert "failed" not in proc.stdout and " passed" in proc.stdout, out
