"""The wheel as `make dist` builds it, and the package registry a user's pip asks: what the
install tests share (tests/e2e/test_wheel_install.py, test_wheel_resolves.py, test_make_dist.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.helpers import REPO, missing

# where a user's pip looks, with no configuration of its own (pip's default index)
PYPI = "https://pypi.org/simple/"


def build_dist(out: Path) -> Path:
    """The sdist and the wheel scripts/dist.sh (what `make dist` runs once the frontend is
    built) makes from the checkout into `out`, with the test venv's Python: the wheel."""
    if not (REPO / "rsql_magic" / "labextension" / "package.json").exists():
        missing("the frontend extension is not built (make setup: scripts/build-frontend.sh)")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "dist.sh"), sys.prefix, str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = out.glob("rsql_assistant-*.whl")
    assert len(list(out.glob("rsql_assistant-*.tar.gz"))) == 1
    return built


def require_registry() -> None:
    """Skip (fail in CI) when PyPI does not answer: a laptop offline, not a mistake of ours."""
    request = urllib.request.Request(PYPI + "pip/", headers={"Accept": "text/html"})
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            answer.read(1)
    except (urllib.error.URLError, OSError) as exc:
        missing(f"the package registry {PYPI} does not answer ({exc})")


def users_pip_env(**extra: str) -> dict[str, str]:
    """The environment of a user's pip: no configuration file (this machine's may name other
    indexes, wheel folders or constraints) and no PIP_* variable; proxies and HOME (pip's own
    cache) as they are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env
