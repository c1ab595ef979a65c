"""Every JupyterLab extension an `[all]` install brings is one JupyterLab loads (issue 77, item 8).

`jupyter labextension list` showed `jupysql-plugin ... X` (incompatible) for every `[all]` user:
JupySQL requires jupysql-plugin, and each of its releases (0.4.5 the newest) asks for React 17
where JupyterLab 4 has React 18. `[all]` now leaves JupySQL out; `[test]` keeps it, for the
tests of JupySQL's connections, so the test venv itself lists the plugin. What a user of
`[all]` sees is rebuilt here: the distributions `[all]` requires, followed through the venv's
installed metadata (pyproject.toml for the project's own extras: an editable install's
metadata may be older than the file), and the JupyterLab extensions they install, linked into a
fresh venv whose packages are the test venv's (one .pth path line, as in
tests/e2e/test_wheel_install.py); its `jupyter labextension list` shows every one of them, and
no X. Which JupyterLab `[all]` resolves from the registry: tests/e2e/test_wheel_resolves.py.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO, missing

pytestmark = pytest.mark.slow

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OURS = canonicalize_name(PROJECT["name"])
LABEXTENSIONS = "share/jupyter/labextensions/"
# a line of `jupyter labextension list`: name, version, enabled or not, OK or X
LISTED = re.compile(r"^\s+(\S+) v\S+ (?:enabled|disabled)\s+(OK|X)\b", re.M)


def project_requirements(extras: set[str]) -> list[Requirement]:
    """What the project requires with `extras` (its own extras expanded), pyproject.toml's."""
    wanted, seen, out = list(extras), set(), []
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in map(Requirement, PROJECT["optional-dependencies"][extra]):
            if canonicalize_name(req.name) == OURS:
                wanted += sorted(req.extras)
            else:
                out.append(req)
    return [*map(Requirement, PROJECT["dependencies"]), *out]


def applies(req: Requirement, extras: set[str]) -> bool:
    env = dict(default_environment())
    return req.marker is None or any(
        req.marker.evaluate({**env, "extra": e}) for e in ["", *extras]
    )


def closure(requirements: list[Requirement]) -> dict[str, md.Distribution]:
    """The installed distributions `requirements` bring, followed through their metadata
    (each with the extras asked of it)."""
    found: dict[str, md.Distribution] = {}
    walked: set[tuple[str, frozenset[str]]] = set()
    todo = [req for req in requirements if applies(req, set())]
    while todo:
        req = todo.pop()
        name, asked = canonicalize_name(req.name), frozenset(req.extras)
        if (name, asked) in walked:
            continue
        walked.add((name, asked))
        try:
            found[name] = md.distribution(req.name)
        except md.PackageNotFoundError:
            missing(f"{req.name}, which [all] requires, is not installed in the test venv")
        todo += [
            sub for sub in map(Requirement, found[name].requires or []) if applies(sub, set(asked))
        ]
    return found


def labextensions_of(dist: md.Distribution) -> dict[str, Path]:
    """The JupyterLab extensions a distribution installs: name -> its folder."""
    out: dict[str, Path] = {}
    for file in dist.files or []:
        path = str(file).replace("\\", "/")
        if LABEXTENSIONS not in path or not path.endswith("/package.json"):
            continue
        name = path.split(LABEXTENSIONS, 1)[1].rsplit("/package.json", 1)[0]
        if name.count("/") <= (1 if name.startswith("@") else 0):  # the extension's own
            out[name] = Path(str(dist.locate_file(file))).resolve().parent
    return out


def test_the_extensions_an_all_install_brings_are_all_compatible(tmp_path: Path) -> None:
    ours = REPO / "rsql_magic" / "labextension"
    if not (ours / "package.json").exists():
        missing("the frontend extension is not built (make setup: scripts/build-frontend.sh)")
    brought = {"@rsql-assistant/jupyterlab": ours}  # what the wheel ships (its own test's)
    for dist in closure(project_requirements({"all"})).values():
        brought.update(labextensions_of(dist))
    # JupyterLab's own pages and the widgets' manager at least: the walk did find extensions
    assert {"@jupyter-widgets/jupyterlab-manager", "@rsql-assistant/jupyterlab"} <= set(brought)
    assert "jupysql-plugin" not in brought, "[all] brings JupySQL's plugin again"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (purelib / "_deps_from_project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for name, folder in brought.items():
        link = venv / LABEXTENSIONS / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(folder)
    home = tmp_path / "home"
    env = {
        "HOME": str(home),
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "PYTHONNOUSERSITE": "1",
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "jupyterlab.labextensions", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, out
    listed = dict(LISTED.findall(out))
    assert set(brought) <= set(listed), out  # JupyterLab finds each one
    assert [name for name, state in listed.items() if state != "OK"] == [], out
    assert "incompatible" not in out, out
