"""Every setting is documented: each ``config=True`` trait of the proxy (``c.RSQLProxy``,
``c.RSQLProxyService``) and of the magics (``%config RSQLMagic``, ``SqlAIMagics``) has a help,
and every class with settings is on a reference page of the site.

The reference pages are generated from those helps when the site is built
(``docs/_ext/rsql_settings.py``), so a help is the documentation: an empty one would leave a
setting unexplained, and a class on no page would leave all of its settings out.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import sys
from types import ModuleType

from traitlets.config import Configurable

from tests.helpers import REPO

PACKAGES = ("rsql_magic", "jupyter_server_ext")
DIRECTIVE = re.compile(r"^```\{rsql-settings\}\s+(\S+)", re.M)


def _extension() -> ModuleType:
    path = REPO / "docs" / "_ext" / "rsql_settings.py"
    spec = importlib.util.spec_from_file_location("rsql_settings", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("rsql_settings", module)
    spec.loader.exec_module(module)
    return module


def _documented() -> dict[str, type]:
    """The classes the site's reference pages show, by their dotted path."""
    found: dict[str, type] = {}
    for page in (REPO / "docs").rglob("*.md"):
        for path in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            module, _, name = path.rpartition(".")
            found[path] = getattr(importlib.import_module(module), name)
    return found


def _classes_with_settings() -> list[type]:
    """Every class of ours that declares a ``config=True`` trait, found in the source (so a new
    one is found without a list to keep) and then imported."""
    out: list[type] = []
    for package in PACKAGES:
        for source in sorted((REPO / package).rglob("*.py")):
            text = source.read_text(encoding="utf-8")
            if ".tag(config=True" not in text:
                continue
            module = ".".join(source.relative_to(REPO).with_suffix("").parts)
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ClassDef) and ".tag(config=True" in (
                    ast.get_source_segment(text, node) or ""
                ):
                    cls = getattr(importlib.import_module(module), node.name)
                    if isinstance(cls, type) and issubclass(cls, Configurable):
                        out.append(cls)
    return out


def test_the_reference_pages_show_the_four_configurables() -> None:
    names = {cls.__name__ for cls in _documented().values()}
    assert names == {"RSQLProxy", "RSQLProxyService", "RSQLMagic", "SqlAIMagics"}, names


def test_every_class_with_settings_is_on_a_reference_page() -> None:
    documented = list(_documented().values())
    classes = _classes_with_settings()
    assert classes, "no configurable found: the search is broken"
    # AskSettings is documented through RSQLMagic, which inherits it: a subclass counts
    missing = [
        f"{c.__module__}.{c.__qualname__}"
        for c in classes
        if not any(issubclass(d, c) for d in documented)
    ]
    assert missing == [], (
        f"classes with settings on no page of docs/ ({{rsql-settings}}): {missing}"
    )


def test_every_setting_has_a_help() -> None:
    ext = _extension()
    undocumented: list[str] = []
    total = 0
    for cls in _documented().values():
        for setting in ext.settings(cls):
            total += 1
            if not setting.help.strip():
                undocumented.append(setting.full_name)
    assert total > 80, f"only {total} settings found: the search is broken"
    assert undocumented == [], f"settings without a help (write one in the trait): {undocumented}"


def test_a_trait_without_help_is_reported() -> None:
    """The check above can fail: a configurable with an empty help is caught."""
    from traitlets import Integer

    class Probe(Configurable):
        documented = Integer(1, help="How many probes run at once.").tag(config=True)
        silent = Integer(2).tag(config=True)

    Probe.__module__ = "rsql_magic.probe"  # one of ours, as far as the extension can tell
    names = {s.name: s.help for s in _extension().settings(Probe)}
    assert names == {"documented": "How many probes run at once.", "silent": ""}


def test_settings_come_in_the_order_the_class_defines_them() -> None:
    from jupyter_server_ext.config.proxy import RSQLProxy

    names = [s.name for s in _extension().settings(RSQLProxy)]
    own = [n for n in names if n in RSQLProxy.class_own_traits(config=True)]
    assert own[:3] == ["upstreams", "default_model", "max_wait_seconds"]
    # its own first, where a reader looks for upstreams and limits; then the ones of its base
    # classes of ours (one feature's settings each: alerts, request bounds, completions, the
    # course log)
    assert names[: len(own)] == own
    ours = [b for b in RSQLProxy.__mro__[1:] if b.__module__.startswith("jupyter_server_ext.")]
    assert len(ours) >= 4
    features = [base.class_own_traits(config=True) for base in ours]
    assert set(names[len(own) :]) == {name for traits in features for name in traits}
    assert "inline_completions" in names[len(own) :]
    assert set(names) == set(RSQLProxy.class_traits(config=True))


def test_a_settings_range_is_shown_where_its_trait_declares_it() -> None:
    # the reference shows the bound start-up enforces, read from the same trait
    from jupyter_server_ext.config.proxy import RSQLProxy

    shown = {s.name: s.bound for s in _extension().settings(RSQLProxy)}
    assert shown["breaker_threshold"] == ">= 1"
    assert shown["lease_seconds"] == "> 0"
    assert shown["default_model"] == ""
    problems = RSQLProxy(breaker_threshold=0).range_problems()
    assert problems == ["RSQLProxy.breaker_threshold must be >= 1, got 0"]
