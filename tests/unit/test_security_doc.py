"""docs/security.md keeps up with the code: every route the proxy serves and every command it
installs has a row, and every test and source file a row names exists. A new surface without
its row, or a row that cites a test or a module renamed away, fails here."""

from __future__ import annotations

import ast
import re
from importlib import metadata

from jupyter_server_ext.dashboard.course_pages import ROUTES as COURSE_PAGES
from jupyter_server_ext.dashboard.handlers import ROUTES as DASHBOARD_ROUTES
from jupyter_server_ext.handlers.admin import ADMIN_ROUTES
from jupyter_server_ext.handlers.apis import API_ROUTES
from jupyter_server_ext.handlers.courses import COURSE_ROUTES
from jupyter_server_ext.handlers.endpoints import ROUTES as PROXY_ROUTES
from jupyter_server_ext.probes import HEALTH_LIVE, HEALTH_READY
from tests.helpers import REPO

DOC = (REPO / "docs" / "security.md").read_text()
CITED = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
# a source file a row names, as `engine/core.py` or `mark.ts`: relative to the repository, a
# package, the engine or the frontend's sources, or (a bare name) anywhere in them
SOURCE = re.compile(r"`([\w][\w/.-]*\.(?:py|ts|tsx|sh))`")
SOURCE_ROOTS = ("", "jupyter_server_ext/", "jupyter_server_ext/engine/", "rsql_magic/", "frontend/")
SOURCE_ROOTS += ("frontend/src/", "rsql_sql/", "rsql_common/")
# where the files rows name are (the frontend's node_modules left out)
SOURCE_DIRS = ("jupyter_server_ext", "rsql_magic", "rsql_sql", "rsql_common", "scripts", "docs")
SOURCE_DIRS += ("frontend/src",)
# what users and admins write themselves, named as theirs
USERS_FILES = {"rsql_config.py", "jupyter_server_config.py", "jupyterhub_config.py"}


def route_pattern(path: str) -> re.Pattern[str]:
    """A route as the document writes it: each group as `{name}` (`v1/models/{id}`)."""
    out, i = "", 0
    for m in re.finditer(r"\([^)]*\)\??|/\?", path):
        out += re.escape(path[i : m.start()])
        out += r"\{\w+\}" if m.group().startswith("(") else "/?"
        i = m.end()
    return re.compile("`(?:[A-Z]+ )?" + out + re.escape(path[i:]) + "[`,]")


def test_every_route_has_a_row() -> None:
    # the hub service's own routes too: the orchestrator's probes and the browser login's landing
    own = [(path, None) for path in (HEALTH_LIVE, HEALTH_READY, "oauth_callback")]
    routes = [
        *PROXY_ROUTES,
        *API_ROUTES,
        *ADMIN_ROUTES,
        *COURSE_ROUTES,
        *DASHBOARD_ROUTES,
        *COURSE_PAGES,
        *own,
    ]
    missing = [path for path, _ in routes if not route_pattern(path).search(DOC)]
    assert missing == [], f"routes without a row in docs/security.md: {missing}"


def test_every_installed_command_has_a_row() -> None:
    scripts = [
        ep.name
        for ep in metadata.distribution("rsql-assistant").entry_points
        if ep.group == "console_scripts"
    ]
    assert scripts  # the check reads something
    missing = [name for name in scripts if f"`{name}" not in DOC]
    assert missing == [], f"commands without a row in docs/security.md: {missing}"


def test_every_cited_test_exists() -> None:
    cited = CITED.findall(DOC)
    assert len(cited) > 50  # the table is read: a broken pattern would find nothing
    defined: dict[str, set[str]] = {}
    for path, _ in cited:
        if path not in defined and (REPO / path).is_file():
            tree = ast.parse((REPO / path).read_text())
            defined[path] = {
                n.name
                for n in ast.walk(tree)
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    gone = [f"{path}::{name}" for path, name in cited if name not in defined.get(path, set())]
    assert gone == [], f"docs/security.md cites tests that do not exist: {gone}"


def missing_sources(doc: str, files: set[str]) -> list[str]:
    """The source files `doc` names that are none of `files` (the repository's, by path)."""
    names = {f.rsplit("/", 1)[-1] for f in files}
    missing = []
    for path in dict.fromkeys(SOURCE.findall(doc)):
        if path.startswith("tests/") or path in USERS_FILES:
            continue  # tests: test_every_cited_test_exists
        found = path in names if "/" not in path else any(r + path in files for r in SOURCE_ROOTS)
        if not found:
            missing.append(path)
    return missing


def test_every_source_file_a_row_names_exists() -> None:
    files = {str(p.relative_to(REPO)) for top in SOURCE_DIRS for p in (REPO / top).rglob("*")}
    assert len(SOURCE.findall(DOC)) > 100  # the rows are read
    missing = missing_sources(DOC, files)
    assert missing == [], f"docs/security.md names source files that do not exist: {missing}"
    # the check can fail: a module renamed away is reported, wherever the row puts it
    renamed = "| a row (`engine/leaving.py`, `core.py`, `gone.ts`) |"
    assert missing_sources(renamed, files) == ["engine/leaving.py", "gone.ts"]


def test_the_check_sees_a_route_without_a_row() -> None:
    assert route_pattern("admin/users/([^/]+)/activity").search(
        "| `GET admin/users/{user}/activity` |"
    )
    assert not route_pattern("admin/secrets").search(DOC)
