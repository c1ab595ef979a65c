"""The wheel `make dist` builds gives the whole product outside a checkout, and a checkout whose
frontend was never built says so.

The wheel (scripts/dist.sh, what `make dist` runs after building the frontend) is installed into
a fresh venv outside the checkout, and every command runs there with its working folder outside
the checkout, with a scratch HOME and Jupyter folders: `jupyter labextension list` shows the
JupyterLab extension enabled and OK, `jupyter server extension list` the server extension
enabled and OK, IPython loads the magics, `rsql-proxy --help` / `--check-config` work, and
every other command pyproject.toml names answers `--help` (its module shipped and importable).

How the fresh venv gets its dependencies: installing them from the package index (the wheel's
own dependencies plus JupyterLab and ipykernel) took 55 s on the 2-core test machine, and
`[all]` without compiling llama.cpp 105 s; the test would need the network for it. So the venv
gets the wheel alone (`pip install --no-deps`; the whole test then takes about 30 s), and the
project's .venv site-packages through one plain path line in a .pth file: Python processes
.pth files only in site folders, so the editable install's .pth inside .venv is not processed
and the checkout is not importable there (asserted: every package of ours imports from the
fresh venv). The console scripts of jupyter_core, jupyter_server,
jupyterlab and IPython are copied from .venv with the fresh venv's Python in their first line,
as pip would have written them. The dependencies' metadata is checked against pyproject.toml
here; tests/e2e/test_wheel_resolves.py resolves them against the registry as a user's pip would.

The checkout case: a fresh venv with `pip install -e` of the checkout, without the extension
JupyterLab would load (an editable install made before the frontend was built holds none), then
the extension linked the way scripts/build-frontend.sh links it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO, free_port, missing, stop_process, upstreams_for
from tests.helpers.dist import build_dist
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import outputs_text

pytestmark = pytest.mark.slow

NAME = "@rsql-assistant/jupyterlab"
# the console scripts a full install would have put in the venv's bin/ (their packages' own)
SCRIPTS = ("jupyter", "jupyter-labextension", "jupyter-server", "ipython")
OURS = ("rsql_common", "rsql_sql", "rsql_magic", "jupyter_server_ext")
NOTICE = f"not built: JupyterLab finds no {NAME}"


@dataclass
class Venv:
    """A fresh venv outside the checkout and how to run things in it."""

    prefix: Path
    home: Path

    @property
    def python(self) -> str:
        return str(self.prefix / "bin" / "python")

    def env(self, **extra: str) -> dict[str, str]:
        """Nothing of the test's environment: no PYTHONPATH, no venv, no keys, a scratch HOME."""
        return {
            "HOME": str(self.home),
            "PATH": f"{self.prefix / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "IPYTHONDIR": str(self.home / ".ipython"),
            "JUPYTER_CONFIG_DIR": str(self.home / "jupyter-config"),
            "JUPYTER_DATA_DIR": str(self.home / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(self.home / "jupyter-runtime"),
            "RSQL_LOCAL_MODEL": "off",
            **extra,
        }

    def run(self, *argv: str, timeout: float = 120, **env: str) -> str:
        """Run a command of the venv from its HOME; its output (stdout and stderr)."""
        proc = subprocess.run(
            [str(self.prefix / "bin" / argv[0]), *argv[1:]],
            cwd=self.home,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # no terminal colours
        assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{out[-3000:]}"
        return out

    def pip_install(self, *args: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "--python", self.python, "install", "-q", "--no-deps"]
            + list(args),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def make_venv(root: Path) -> Venv:
    """A venv with no pip, the test's .venv packages visible through a plain .pth path line."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    venv = Venv(root / "venv", root / "home")
    venv.home.mkdir()
    purelib = Path(
        sysconfig.get_paths(vars={"base": str(venv.prefix), "platbase": str(venv.prefix)})[
            "purelib"
        ]
    )
    (purelib / "_deps_from_project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for name in SCRIPTS:
        source = Path(sys.prefix) / "bin" / name
        body = source.read_text().split("\n", 1)[1]
        (venv.prefix / "bin" / name).write_text(f"#!{venv.python}\n{body}")
        (venv.prefix / "bin" / name).chmod(0o755)
    return venv


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel scripts/dist.sh builds (`make dist` runs it once the frontend is built)."""
    return build_dist(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def wheel_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    venv = make_venv(tmp_path_factory.mktemp("wheel-venv"))
    venv.pip_install(str(wheel))
    return venv


def imported_from(venv: Venv) -> dict[str, str]:
    code = "import importlib, json; print(json.dumps({n: importlib.import_module(n).__file__ for n in %r}))"
    return json.loads(venv.run("python", "-c", code % (OURS,)).strip().splitlines()[-1])


def test_the_wheel_gives_the_whole_product_in_a_fresh_venv(wheel: Path, wheel_venv: Venv) -> None:
    prefix = str(wheel_venv.prefix)
    # our packages come from the wheel, never from the checkout
    for name, file in imported_from(wheel_venv).items():
        assert file.startswith(prefix) and not file.startswith(str(REPO)), (name, file)

    # JupyterLab finds the prebuilt extension in the venv, from this Python package
    out = wheel_venv.run("jupyter", "labextension", "list")
    assert f"{prefix}/share/jupyter/labextensions" in out, out
    line = next((ln for ln in out.splitlines() if NAME in ln), "")
    assert re.search(r"\benabled\b.*\bOK\b.*\(python, rsql-assistant\)", line), out

    # the server extension is enabled by the wheel's jupyter_server_config.d file and loads
    out = wheel_venv.run("jupyter", "server", "extension", "list")
    assert f"{prefix}/etc/jupyter" in out, out
    assert re.search(r"jupyter_server_ext\s+enabled", out), out
    assert re.search(r"jupyter_server_ext \S+ OK", out), out

    # the magics load in IPython; a wheel install has no notice about an unbuilt frontend
    magics = (
        "%load_ext rsql_magic\n"
        "m = get_ipython().magics_manager.magics\n"
        "print('MAGICS', sorted(m['line']), sorted(m['cell']))\n"
        "%ask_status"
    )
    out = wheel_venv.run("ipython", "--no-banner", "-c", magics)
    shown = next(ln for ln in out.splitlines() if ln.startswith("MAGICS"))
    for magic in ("'ask'", "'ask_status'", "'ask_cost'", "'sql_ai'", "'ask_chat'"):
        assert magic in shown, out
    assert "batch run" in out and NOTICE not in out, out

    # the in-process engine the kernel finds by its entry point, from the wheel's metadata
    code = (
        "from importlib.metadata import entry_points\n"
        "(ep,) = entry_points(group='rsql_assistant.in_process')\n"
        "print('EP', ep.name, ep.dist.locate_file(''), ep.load().__file__)"
    )
    out = wheel_venv.run("python", "-c", code)
    _, name, dist, module = next(ln for ln in out.splitlines() if ln.startswith("EP")).split()
    assert name == "engine" and dist.startswith(prefix) and module.startswith(prefix), out

    # the standalone proxy: its help, and a configuration checked as start-up would
    assert "--check-config" in wheel_venv.run("rsql-proxy", "--help")
    config = wheel_venv.home / "rsql_config.py"
    config.write_text(
        'c.RSQLProxy.upstreams = [{"name": "local-test", "base_url": "http://127.0.0.1:9/v1",'
        ' "api_key_env": "TEST_PROVIDER_KEY", "models": ["test-model"]}]\n'
    )
    out = wheel_venv.run(
        "rsql-proxy", "--check-config", "--config", str(config), TEST_PROVIDER_KEY="sk-test"
    )
    assert "local-test" in out, out
    # every command pyproject.toml names runs from the wheel (its module is in it and imports)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"rsql-proxy", "rsql-replay", "rsql-eval", "rsql-mcp", "rsql-provenance"} <= set(scripts)
    for script in sorted(set(scripts) - {"rsql-proxy"}):
        assert f"usage: {script}" in wheel_venv.run(script, "--help"), script

    # what the index would resolve: the wheel asks for pyproject.toml's dependencies and extras
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA")))
    requires = {
        (canonicalize_name(r.name), str(r.specifier))
        for r in map(Requirement, fields(meta, "Requires-Dist"))
        if r.marker is None
    }
    for dep in map(Requirement, project["dependencies"]):
        assert (canonicalize_name(dep.name), str(dep.specifier)) in requires, dep
    assert set(project["optional-dependencies"]) <= set(fields(meta, "Provides-Extra"))


def fields(meta: bytes, name: str) -> list[str]:
    """The values of a METADATA field."""
    return [ln.split(": ", 1)[1] for ln in meta.decode().splitlines() if ln.startswith(f"{name}: ")]


@pytest.fixture(scope="module")
def checkout_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """`pip install -e` of the checkout into a fresh venv, without the extension JupyterLab would
    load: an editable install made before the frontend was built holds none (one made after
    holds a copy of that build, removed here)."""
    venv = make_venv(tmp_path_factory.mktemp("checkout-venv"))
    venv.pip_install("-e", str(REPO))
    shutil.rmtree(venv.prefix / "share" / "jupyter" / "labextensions", ignore_errors=True)
    yield venv


def ask_status_in_kernel(venv: Venv) -> str:
    """What `%ask_status` shows in a real kernel of the venv's Python (run as nbclient runs one)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    from tests.helpers.kernels import kernel_sockets, make_notebook

    kernels = venv.home / "kernels"
    (kernels / "fresh").mkdir(parents=True, exist_ok=True)
    argv = [venv.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "fresh venv", "language": "python"}
    (kernels / "fresh" / "kernel.json").write_text(json.dumps(spec))
    nb = make_notebook(["%load_ext rsql_magic", "%ask_status"])
    specs = KernelSpecManager(kernel_dirs=[str(kernels)])
    with kernel_sockets() as config:
        km = AsyncKernelManager(kernel_name="fresh", kernel_spec_manager=specs, config=config)
        client = NotebookClient(nb, km=km, timeout=120)
        client.execute(env=venv.env(), cwd=str(venv.home), cleanup_kc=True)
    return outputs_text(nb.cells[1])


def server_log_at_start(venv: Venv, provider: FakeProvider) -> str:
    """The log of a Jupyter server of the venv (the extensions its config enables), once it
    listens."""
    cfg = venv.home / "jupyter_server_config.py"
    cfg.write_text(f"c.RSQLProxy.upstreams = {upstreams_for(provider)!r}\n")
    log = venv.home / "server.log"
    proc = subprocess.Popen(
        [
            venv.python,
            "-m",
            "jupyter_server",
            "--no-browser",
            f"--port={free_port()}",
            "--ip=127.0.0.1",
            "--allow-root",
            f"--config={cfg}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={venv.home}",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=venv.env(),
        cwd=venv.home,
    )
    try:
        deadline = time.monotonic() + 60
        while "is running at" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
    finally:
        stop_process(proc)
    return log.read_text(errors="replace")


def test_a_checkout_without_the_built_extension_says_so(
    checkout_venv: Venv, provider: FakeProvider
) -> None:
    prefix = str(checkout_venv.prefix)
    for name, file in imported_from(checkout_venv).items():  # editable: from the checkout
        assert file.startswith(str(REPO)), (name, file)
    fix = f"`bash scripts/build-frontend.sh {prefix}` (needs npm)"

    shown = ask_status_in_kernel(checkout_venv)
    assert shown.count(NOTICE) == 1, shown
    assert f"JupyterLab extension**: {NOTICE}" in shown, shown  # the row's Markdown
    assert fix in shown and f"the checkout {REPO}" in shown, shown
    assert f"{prefix}/share/jupyter/labextensions" in shown, shown

    log = server_log_at_start(checkout_venv, provider)
    assert "rsql proxy at" in log, log  # the server extension loaded
    (line,) = [ln for ln in log.splitlines() if NOTICE in ln]
    assert f"rsql: the JupyterLab extension is {NOTICE}" in line and fix in line, line

    # built and linked as scripts/build-frontend.sh links it: the notice is gone
    if not (REPO / "rsql_magic" / "labextension" / "package.json").exists():
        missing("the frontend extension is not built (make setup: scripts/build-frontend.sh)")
    link = checkout_venv.prefix / "share" / "jupyter" / "labextensions" / NAME
    link.parent.mkdir(parents=True)
    link.symlink_to(REPO / "rsql_magic" / "labextension")
    shown = ask_status_in_kernel(checkout_venv)
    assert "batch run" in shown and NOTICE not in shown, shown
