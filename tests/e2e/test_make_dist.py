"""`make dist` builds only what the wheel needs (issue 77): the frontend and the Python build,
with a venv of its own holding the build tools (build/dist-venv), never the test environment
(before: `.venv` with the `test` extra, 1.9 GB and llama.cpp compiled, to make an 800 kB wheel).

Run as a fresh clone would be: the checkout's files (tracked, and new ones not ignored) copied
to a folder of their own, with no .venv, no build/ and no built extension. Its
frontend/node_modules is the checkout's, linked (`npm ci` from the same lock file would give the
same files; scripts/build-frontend.sh skips it when node_modules is newer than the lock file).
Needs npm and the package registry (the build tools and hatchling come from it): a skip with the
reason on a laptop without them, a failure in CI."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO, child_env, missing
from tests.helpers.dist import require_registry

pytestmark = pytest.mark.slow

NAME = "@rsql-assistant/jupyterlab"
# what may be in the build tools' venv: scripts/dist-requirements.txt and what they depend on
BUILD_TOOLS = {
    "build",
    "jupyter-builder",
    "jupyter-core",
    "packaging",
    "pip",
    "platformdirs",
    "pyproject-hooks",
    "setuptools",
    "traitlets",
}


def fresh_checkout(into: Path) -> Path:
    """The checkout's own files, as a clone of it holds them, at `into`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # deleted in the work tree: the next commit leaves it out too
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def test_make_dist_builds_the_wheel_with_the_build_tools_alone(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        missing("npm is not installed (Node.js ^20.19; scripts/install-system-deps.sh test)")
    modules = REPO / "frontend" / "node_modules"
    if not (modules / ".package-lock.json").exists():
        missing("frontend/node_modules is not installed (make setup)")
    require_registry()
    clone = fresh_checkout(tmp_path / "clone")
    (clone / "frontend" / "node_modules").symlink_to(modules)

    done = subprocess.run(
        ["make", "--no-print-directory", "dist"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=900,
        env=child_env(),
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    # the wheel and the sdist, the wheel carrying the extension JupyterLab loads
    (wheel,) = (clone / "dist").glob("rsql_assistant-*-py3-none-any.whl")
    assert len(list((clone / "dist").glob("rsql_assistant-*.tar.gz"))) == 1
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(f"share/jupyter/labextensions/{NAME}/package.json") for n in names)
    # nothing of the test environment was made: no .venv, and the build tools' venv holds them
    # alone (no JupyterLab, no llama.cpp, no pytest)
    assert not (clone / ".venv").exists()
    listed = subprocess.run(
        [str(clone / "build" / "dist-venv" / "bin" / "python"), "-m", "pip", "list"]
        + ["--format", "json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed)}
    assert installed <= BUILD_TOOLS, installed - BUILD_TOOLS
