"""``{rsql-settings}``: the reference of a traitlets Configurable's settings, built from the
traits' ``help`` when the site is built, so the pages cannot drift from the code.

In a MyST page::

    ```{rsql-settings} jupyter_server_ext.config.proxy.RSQLProxy
    ```

gives one entry per setting, in the order the class defines them: its name as users write it
(``RSQLProxy.upstreams``), type, default and help. Each entry is a ``confval`` object of
Sphinx's standard domain, so any page can link one with ``{confval}`RSQLProxy.upstreams```
and a link to a setting that does not exist fails the build (nitpicky).

:func:`settings` is also what ``tests/unit/test_settings_documented.py`` reads: a setting with
an empty help fails that test, and the build here refuses it too.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.domains.std import StandardDomain
from sphinx.errors import ExtensionError
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_id
from traitlets import HasTraits, TraitType

# the packages whose traits are ours; traits inherited from traitlets' or IPython's own classes
# (Application.log_level, Magics.shell) are documented by those projects
OWN_PACKAGES = ("rsql_magic", "jupyter_server_ext")
_CODE = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True)
class Setting:
    """One configurable trait as users see it."""

    section: str  # the class name users configure: RSQLProxy, RSQLMagic, SqlAIMagics, ...
    name: str
    kind: str  # the trait's type: List, Unicode, Float, ...
    default: str  # its default as Python would write it, or a note when computed at start
    help: str  # the trait's help, dedented
    bound: str = ""  # the range its trait declares (``bound``: ">= 0", "> 0", ...), if any

    @property
    def full_name(self) -> str:
        return f"{self.section}.{self.name}"


def import_class(path: str) -> type[HasTraits]:
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    if not (inspect.isclass(cls) and issubclass(cls, HasTraits)):
        raise ExtensionError(f"rsql-settings: {path} is not a traitlets class")
    return cls


def _own(klass: type) -> bool:
    return klass.__module__.split(".")[0] in OWN_PACKAGES


def _default(cls: type[HasTraits], name: str, trait: TraitType[Any, Any]) -> str:
    # a default computed when the object is made (@default) depends on the environment: say
    # so instead of showing the placeholder the trait was declared with; the help says how
    if name in getattr(cls, "_trait_default_generators", {}):
        return "computed at start: see the help"
    return str(trait.default_value_repr())


def settings(cls: type[HasTraits], section: str | None = None) -> list[Setting]:
    """Every ``config=True`` trait that ``cls`` or one of our base classes defines, in the
    order the classes define them: the class's own first (the settings a reader looks for,
    upstreams and limits), then each base class's (one feature's settings each)."""
    out: list[Setting] = []
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not _own(klass):
            continue
        for name, value in vars(klass).items():
            if name in seen or not isinstance(value, TraitType):
                continue
            trait = cls.class_traits()[name]  # the subclass's view (its defaults, if overridden)
            if not trait.metadata.get("config"):
                continue
            seen.add(name)
            out.append(
                Setting(
                    section=section or cls.__name__,
                    name=name,
                    kind=type(trait).__name__,
                    default=_default(cls, name, trait),
                    help=inspect.cleandoc(trait.help or ""),
                    bound=str(trait.metadata.get("bound") or ""),
                )
            )
    return out


def _inline(text: str) -> list[nodes.Node]:
    """Text with `backticked` spans as code; nothing else of the help is read as markup."""
    out: list[nodes.Node] = []
    pos = 0
    for m in _CODE.finditer(text):
        if m.start() > pos:
            out.append(nodes.Text(text[pos : m.start()]))
        out.append(nodes.literal(m.group(1), m.group(1)))
        pos = m.end()
    if pos < len(text):
        out.append(nodes.Text(text[pos:]))
    return out


class SettingsDirective(SphinxDirective):
    """``{rsql-settings} module.Class``, optional ``:section: Name`` (the name users write)."""

    required_arguments = 1
    has_content = False
    option_spec = {"section": lambda arg: (arg or "").strip()}

    def run(self) -> list[nodes.Node]:
        cls = import_class(self.arguments[0].strip())
        std: StandardDomain = self.env.get_domain("std")  # type: ignore[assignment]
        out: list[nodes.Node] = []
        for s in settings(cls, self.options.get("section") or None):
            if not s.help:
                # the unit test says the same; the build refuses an undocumented setting too
                raise self.error(f"{s.full_name} has no help: write one in its trait")
            node_id = make_id(self.env, self.state.document, "confval", s.full_name)
            desc = addnodes.desc(
                domain="std",
                objtype="confval",
                desctype="confval",
                noindex=False,
                classes=["std", "confval", "rsql-setting"],
            )
            sig = addnodes.desc_signature("", "", ids=[node_id])
            sig += addnodes.desc_name(s.full_name, s.full_name)
            desc += sig
            body = addnodes.desc_content()
            meta = nodes.paragraph()
            meta += nodes.strong("Type:", "Type:")
            meta += nodes.Text(" ")
            meta += nodes.literal(s.kind, s.kind)
            meta += nodes.Text(" · ")
            meta += nodes.strong("Default:", "Default:")
            meta += nodes.Text(" ")
            meta += nodes.literal(s.default, s.default)
            if s.bound:  # checked at start-up and by --check-config (RSQLProxy.range_problems)
                meta += nodes.Text(" · ")
                meta += nodes.strong("Range:", "Range:")
                meta += nodes.Text(" ")
                meta += nodes.literal(s.bound, s.bound)
            body += meta
            for para in re.split(r"\n\s*\n", s.help):
                p = nodes.paragraph()
                p.extend(_inline(" ".join(line.strip() for line in para.splitlines())))
                body += p
            desc += body
            self.set_source_info(desc)
            std.note_object("confval", s.full_name, node_id, location=desc)
            out.append(desc)
        return out


def setup(app: Sphinx) -> dict[str, Any]:
    if "confval" not in StandardDomain.object_types:  # built in since Sphinx 7.4
        app.add_object_type("confval", "confval", objname="configuration value")
    app.add_directive("rsql-settings", SettingsDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
