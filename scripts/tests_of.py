"""Where a module's tests are: a starting list of the test files that exercise one module of
the four packages.

    python scripts/tests_of.py jupyter_server_ext/engine/failover.py
    python scripts/tests_of.py rsql_sql.checks.guard rsql_magic/session/cells.py

The tests are named for what a user would notice (a budget, a hostile answer, a browser), not
for the module they run, so a module's path does not give its tests' names. This answers the
other way round, for each module given, in three kinds:

- ``imports``: test files that import the module, themselves or through a helper of
  tests/helpers/ that imports it (the tests that call its code in the test's process);
- ``cites``: the tests docs/security.md gives for a surface whose row names the module (the
  attacks tried on it, end-to-end ones included, which reach it over HTTP and import nothing);
- ``names``: other test files whose text names the module's path (a docstring or comment saying
  the test is about it), end-to-end ones mostly.

Unit and end-to-end files are listed apart (``make test-fast`` runs the first). Read from the
source alone: nothing is imported or run, so what reaches a module only at run time is not seen
(a fixture that loads the extension with ``%load_ext rsql_magic``, a kernel, server or command
the test starts, a test importing the package whose code calls the module): ``cites`` and
``names`` are there for those, and a change still wants the whole suite. Exit status 2 names a
path that is not a module of the packages.
"""

from __future__ import annotations

import argparse
import ast
import functools
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("rsql_common", "rsql_sql", "rsql_magic", "jupyter_server_ext")
TESTS = REPO / "tests"


class NotAModule(ValueError):
    """A path or dotted name that names no module of the four packages."""


def module_name(given: str) -> str:
    """`given` (a file path, from the current folder or the checkout's root, or a dotted name) as
    a dotted module name; a package's ``__init__.py`` is the package. NotAModule if no such
    module exists."""
    text = given.strip()
    if text.endswith(".py") or "/" in text:
        path = Path(text)
        if not path.is_absolute():
            path = Path.cwd() / path if (Path.cwd() / path).exists() else REPO / path
        try:
            parts = list(path.resolve().relative_to(REPO).with_suffix("").parts)
        except ValueError:
            raise NotAModule(f"{given}: not a file of this checkout ({REPO})") from None
    else:
        parts = text.split(".")
    if parts and parts[-1] == "__init__":
        parts.pop()
    name = ".".join(parts)
    if not parts or parts[0] not in PACKAGES:
        raise NotAModule(f"{given}: not in one of the packages {', '.join(PACKAGES)}")
    base = REPO.joinpath(*parts)
    if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
        raise NotAModule(f"{given}: no module {name} (no {base.relative_to(REPO)}.py)")
    return name


@functools.cache  # each file is read once however many modules are asked about
def imported(path: Path) -> frozenset[str]:
    """The modules a file imports, every name it could mean: ``from a.b import c`` is a.b and
    a.b.c (c may be a module or a name in a.b); relative imports resolved against its own."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    own = _dotted(path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up from the file's own package
                anchor = own.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(names)


@dataclass
class Found:
    """What tests_of found for one module: test files (paths from the repo) in each kind."""

    module: str
    imports: set[str] = field(default_factory=set)
    cites: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)


def _dotted(path: Path) -> str:
    """A file's module name: tests/helpers/x.py is tests.helpers.x, an __init__.py its package."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "__pycache__" not in p.parts)


def _helpers_importing(module: str) -> set[str]:
    """Helper modules (tests.helpers.x) that import `module` (:func:`_covers`) or a helper that
    does."""
    helpers = {_dotted(p): imported(p) for p in (TESTS / "helpers").rglob("*.py")}
    found: set[str] = set()
    grew = True
    while grew:
        grew = False
        for name, imports in helpers.items():
            if name not in found and (_covers(imports, module) or imports & found):
                found.add(name)
                grew = True
    return found


def _covers(imports: Iterable[str], module: str) -> bool:
    """An import of `module` or of a name in it; for a package, of anything in it too."""
    below = module + "."
    return any(name == module or name.startswith(below) for name in imports)


def _spoken(module: str) -> re.Pattern[str]:
    """How the docs and the tests' prose write the module: its path (rsql_sql/checks/guard.py, a
    package as its folder, rsql_sql/checks/), or that path below its package (engine/failover.py)
    where no other package has a file or folder of that path (two have mcp/)."""
    parts = module.split(".")
    is_package = REPO.joinpath(*parts, "__init__.py").is_file()
    below = "/".join(parts[1:])
    tail = "/" if is_package else ".py"
    if not below:
        return re.compile(r"(?<![\w/])" + re.escape(parts[0] + "/"))
    elsewhere = [
        package
        for package in PACKAGES
        if package != parts[0] and REPO.joinpath(package, below + tail.rstrip("/")).exists()
    ]
    package = re.escape(parts[0] + "/")
    prefix = package if elsewhere else f"(?:{package})?"
    return re.compile(r"(?<![\w/])" + prefix + re.escape(below + tail))


@functools.cache
def _security_rows() -> tuple[str, ...]:
    page = REPO / "docs" / "security.md"
    lines = page.read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line.startswith("|"))


def tests_of(module: str) -> Found:
    """The test files of `module` (a dotted name :func:`module_name` gave)."""
    found = Found(module)
    helpers = _helpers_importing(module)
    pattern = _spoken(module)
    for row in _security_rows():
        cells = row.split("|")
        if len(cells) > 2 and pattern.search(cells[1]):
            for cited in re.findall(r"(tests/(?:unit|e2e)/test_\w+\.py)\b", cells[-2]):
                found.cites.add(cited)
    for path in _test_files():
        rel = str(path.relative_to(REPO))
        imports = imported(path)
        if _covers(imports, module) or imports & helpers:
            found.imports.add(rel)
        elif pattern.search(path.read_text(encoding="utf-8")):
            found.names.add(rel)
    found.cites -= found.imports
    found.names -= found.cites
    return found


def report(found: Found) -> str:
    lines = [found.module]
    for kind in ("imports", "cites", "names"):
        files = sorted(getattr(found, kind))
        if not files:
            continue
        for half in ("unit", "e2e"):
            mine = [f for f in files if f.startswith(f"tests/{half}/")]
            if mine:
                lines.append(f"  {kind} ({half}, {len(mine)}):")
                lines.extend(f"    {f}" for f in mine)
    if len(lines) == 1:
        lines.append("  no test imports, cites or names it")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="+", help="a module's file path or dotted name")
    args = parser.parse_args(argv)
    try:
        names = [module_name(given) for given in args.modules]
    except NotAModule as e:
        print(f"tests_of: {e}", file=sys.stderr)
        return 2
    print("\n\n".join(report(tests_of(name)) for name in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
