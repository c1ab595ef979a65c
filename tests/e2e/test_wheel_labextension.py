"""The wheel carries the built frontend extension where JupyterLab looks for prebuilt ones
(``share/jupyter/labextensions/@rsql-assistant/jupyterlab``, with its ``install.json``), so a
`pip install` user never needs node; and nothing of the frontend's build tree comes with it.

In tests/e2e because building a wheel runs pip: a unit test starts no process."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import REPO, missing

NAME = "@rsql-assistant/jupyterlab"
SHARED = f"share/jupyter/labextensions/{NAME}/"


def test_the_wheel_ships_the_built_extension(tmp_path: Path) -> None:
    if not (REPO / "rsql_magic" / "labextension" / "package.json").exists():
        missing("the frontend extension is not built (make setup: scripts/build-frontend.sh)")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("rsql_assistant-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        data = next(n.split(SHARED)[0] for n in names if SHARED in n)
        meta = json.loads(zf.read(f"{data}{SHARED}package.json"))
        install = json.loads(zf.read(f"{data}{SHARED}install.json"))
        # the inline completions' settings (frontend/schema/completion.json): without it the
        # Settings Editor has no page for them and the provider reads no user setting
        settings = json.loads(zf.read(f"{data}{SHARED}schemas/{NAME}/completion.json"))
    assert meta["name"] == NAME
    # the entry point JupyterLab loads is in the wheel
    assert f"{data}{SHARED}{meta['jupyterlab']['_build']['load']}" in names
    assert install["packageName"] == "rsql-assistant"
    source = json.loads((REPO / "frontend" / "schema" / "completion.json").read_text())
    assert settings["properties"] == source["properties"]
    assert {"enabled", "liveContext", "debounceMs"} <= set(settings["properties"])
    # built once, in shared data: not again inside the package, and no sources or node_modules
    assert not [n for n in names if n.startswith(("rsql_magic/labextension/", "frontend/"))]
    assert not [n for n in names if "node_modules" in n]
