"""The lowest version of each dependency we run is one with no known security advisory (issue 53):
in pyproject.toml (every extra), in the image's requirements.in and in its hash-pinned lock.

FLOORS is the one table of those versions and why; docs/getting-started.md points here. To add an
advisory: raise the floor here, then in pyproject.toml and deploy/image/requirements.in, and
regenerate the lock if its pin is below (docs/deploy/kubernetes.md, "Upgrading").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "deploy" / "image"


@dataclass(frozen=True)
class Floor:
    package: str
    version: str  # the first version past every advisory below
    why: str  # the advisories it clears (GHSA or CVE ids, the fixed version, what they are)
    # later versions that have one of them still (a release line fixed only further on)
    excluded: tuple[str, ...] = ()


FLOORS = (
    Floor(
        "jupyter-server",
        "2.21.1",
        "GHSA-fcw5-x6j4-ccmp / CVE-2026-44727 (2.20.0): stored XSS in the nbconvert handlers, "
        "code execution; CVE-2026-40110 (2.20.0): CORS origin check bypass; GHSA-5789-5fc7-67v3 "
        "/ CVE-2026-35397 (2.18.0): path traversal in the contents API; GHSA-c3mw-737p-c7g2 / "
        "CVE-2026-86049 (2.21.0): a token in the Referer written to the log on a 500; 2.21.1 "
        "loads with tornado 6.5.9 and later (the floor below). Known, no fix yet: PYSEC-2026-3472 "
        "(low), CORS with c.ServerApp.allow_origin_pat, which nothing here sets.",
    ),
    Floor(
        "tornado",
        "6.6.1",
        "GHSA-qjxf-f2mg-c6mc / CVE-2026-31958 and GHSA-78cv-mqj4-43f7 (6.5.5): multipart DoS, "
        "cookie attributes; CVE-2026-49853/49854/49855 (6.5.6): credentials over redirects, C "
        "extension over-read, gzip bomb; GHSA-pw6j-qg29-8w7f (6.5.7); GHSA-mpf4-983q-p7j4, "
        "GHSA-8423-8fgw-73vq, GHSA-wwv5-g3v4-889x (6.5.8): form-body and multipart DoS, cookie "
        "injection; 6.5.9: StaticFileHandler symlinks, URL-argument limits, client body limits; "
        "6.6.0 and 6.6.1: open redirects, percent-decoding DoS in URL parsing.",
    ),
    Floor(
        "jupyterhub",
        "5.5.3",
        "GHSA-3vff-hjqv-m7h8 / CVE-2026-33709 (5.4.4): open redirect; GHSA-m68r-v472-jgq9 / "
        "CVE-2026-40864 (5.4.5): CSRF; GHSA-p43p-whwx-q52h / CVE-2026-54338 (5.5.0): "
        "unauthenticated DoS; GHSA-c4gm-pwx9-9w8j, GHSA-69wv-m5fw-2fhp (5.5.1), "
        "GHSA-mj6q-mp44-53v8 (5.5.2): sharing, filtered admin roles; GHSA-hx46-2cv3-mh6g, "
        "GHSA-5jhc-4h3c-q97h, GHSA-93gc-h923-mp36, GHSA-r764-xgvf-jrfj, GHSA-pvm9-48cg-w76j, "
        "GHSA-x7xh-7hc7-9436 (5.5.3 and 6.1.0): spawner-options DoS and others. 6.0.x has the "
        "last six (fixed in 6.1.0).",
        excluded=("6.0.0", "6.0.1"),
    ),
    Floor(
        "mcp",
        "2.0.0",
        "GHSA-3qhf-m339-9g5v (1.9.4), GHSA-j975-95f5-7wqh (1.10.0), GHSA-9h52-p55h-vw2f (1.23.0), "
        "GHSA-jpw9-pfvf-9f58 / CVE-2026-52869 and GHSA-hvrp-rf83-w775 / CVE-2026-52870 (1.27.2), "
        "GHSA-vj7q-gjh5-988w / CVE-2026-59950 (1.28.1): all before 2.0, which the endpoint needs.",
    ),
    Floor(
        "markdown",
        "3.8.1",
        "GHSA-5wmx-573v-2qwq / CVE-2025-69534 (3.8.1).",
    ),
    Floor(
        "pygments",
        "2.20.0",
        "GHSA-5239-wwwm-4pmq / CVE-2026-4539 (2.20.0): ReDoS; CVE-2022-40896 (2.15.0).",
    ),
    Floor(
        "orjson",
        "3.11.6",
        "GHSA-hx9q-6w63-j58v / CVE-2025-67221 (3.11.6): unbounded recursion on deep JSON; "
        "CVE-2024-27454 (3.9.15).",
    ),
    Floor(
        "nh3",
        "0.3.8",
        "ammonia's GHSA-m6mh-2hw2-555x / RUSTSEC-2026-0213 (4.1.4) and RUSTSEC-2026-0193 (4.1.3): "
        "XSS through SVG animations and MathML (tags our allowlist leaves out); 0.3.8 bundles "
        "ammonia 4.2.",
    ),
    Floor(
        "ipython",
        "8.10",
        "GHSA-29gw-9793-fvw7 / CVE-2023-24816 (8.10.0); GHSA-pq7m-3gw7-gq5x / CVE-2022-21699 "
        "(8.0.1).",
    ),
    Floor(
        "duckdb",
        "1.4.2",
        "GHSA-w2gf-jxc9-pf2q / CVE-2024-41672 (1.1.0): files readable through sniff_csv with "
        "external access off, the wall %%sql_ai relies on; GHSA-vmp8-hg63-v2hp / CVE-2025-64429 "
        "(1.4.2): encryption.",
    ),
    Floor(
        "jupyterlab",
        "4.6.2",
        "CVE-2026-40171, CVE-2026-42266, CVE-2026-42557 (4.5.7); GHSA-vmhf-c436-hxj4 (4.5.9); "
        "DOMPurify CVE-2025-15599 and CVE-2026-0540 (4.6.0); GHSA-pppj-hq3g-57pj, "
        "GHSA-gx64-gj6p-pc4c, GHSA-h5v5-8746-g7mm, GHSA-89vp-jrxv-24w8, GHSA-whvh-wf3x-g77j "
        "(4.6.2): XSS and extension-manager bypasses.",
    ),
    Floor(
        "nbconvert",
        "7.17.1",
        "GHSA-xm59-rqc7-hhvf / CVE-2025-53000 (7.17.0); CVE-2026-39377, CVE-2026-39378, "
        "CVE-2026-23948 (7.17.1).",
    ),
    Floor(
        "redis",
        "5.0",
        "GHSA-24wv-mv5m-xv4h / CVE-2023-28858 and GHSA-8fww-64cx-x8p5 / CVE-2023-28859 (4.5.4): "
        "async replies handed to another command.",
    ),
    # only in the image's lock: what the service's own dependencies bring
    Floor("aiohttp", "3.14.3", "CVE-2026-54273..54280 (3.14.1); CVE-2026-69244 (3.14.3): DoS."),
    Floor(
        "urllib3", "2.7.0", "GHSA-38jv-5279-wg99 (2.6.3); CVE-2026-44431, CVE-2026-44432 (2.7.0)."
    ),
    Floor("jinja2", "3.1.6", "GHSA-cpwx-vrp4-4pq7 / CVE-2025-27516 (3.1.6): sandbox escape."),
)
BY_NAME = {f.package: f for f in FLOORS}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def below_floor(requirement: str) -> str | None:
    """Why `requirement` admits a version with a known advisory, or None when it admits none."""
    req = Requirement(requirement)
    floor = BY_NAME.get(normal(req.name))
    if floor is None:
        return None
    lowest = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    if not lowest or max(lowest) < Version(floor.version):
        return f"{requirement}: needs >= {floor.version} ({floor.why})"
    admitted = [v for v in floor.excluded if req.specifier.contains(v, prereleases=True)]
    if admitted:
        return f"{requirement}: admits {', '.join(admitted)} ({floor.why})"
    return None


def pyproject_requirements() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return list(project["dependencies"]) + [r for group in extras.values() for r in group]


def image_requirements() -> list[str]:
    lines = (IMAGE / "requirements.in").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def locked() -> dict[str, str]:
    text = (IMAGE / "requirements.txt").read_text()
    return {normal(m.group(1)): m.group(2) for m in map(PIN.match, text.splitlines()) if m}


def test_every_dependency_floor_in_pyproject_is_past_its_known_advisories() -> None:
    found = pyproject_requirements()
    assert [r for r in found if below_floor(r)] == [], [below_floor(r) for r in found]
    # each runtime package the table names is declared somewhere (the lock-only ones aside)
    named = {normal(Requirement(r).name) for r in found}
    lock_only = {"aiohttp", "urllib3", "jinja2"}
    assert set(BY_NAME) - lock_only <= named, set(BY_NAME) - lock_only - named


def test_the_images_requirements_and_lock_are_past_their_known_advisories() -> None:
    wanted = image_requirements()
    assert [r for r in wanted if below_floor(r)] == [], [below_floor(r) for r in wanted]
    pins = locked()
    assert {"tornado", "jupyterhub", "orjson", "redis"} <= set(pins)  # the lock was read at all
    stale = [
        f"{name}=={pins[name]}: {below_floor(f'{name}=={pins[name]}')}"
        for name in BY_NAME
        if name in pins and below_floor(f"{name}=={pins[name]}")
    ]
    assert stale == []


def test_a_floor_below_an_advisory_would_be_caught() -> None:
    assert below_floor("tornado>=6.2") is not None
    assert below_floor("jupyter_server>=2.4") is not None
    assert below_floor("jupyterhub>=5.5.3") is not None  # admits 6.0.x
    assert below_floor("jupyterhub==6.0.1") is not None
    assert below_floor("tornado") is not None  # no floor at all
    assert below_floor("jupyterhub>=5.5.3,!=6.0.*") is None
    assert below_floor("Jupyter-Server[x]>=2.21.1") is None
    assert below_floor("pandas>=1.5") is None  # no known advisory: any floor
    assert SpecifierSet(">=5.5.3,!=6.0.*").contains("6.1.1")
