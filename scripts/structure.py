"""Report the codebase's structure: import circles, imports against the layers, private names
used across modules, the engine's parts reached from outside it, and the longest files.

    python scripts/structure.py           # a report
    python scripts/structure.py --check   # exit 1 if any rule of docs/architecture.md is broken

The rules it checks are the ones docs/architecture.md asks a contributor to keep; the test
suite runs ``--check`` (tests/unit/test_structure.py), so a change that breaks one fails CI.
It reads the source with :mod:`ast` and imports nothing.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rsql_common", "rsql_sql", "rsql_magic", "jupyter_server_ext")
# A file a newcomer reads in one sitting, by today's formatter (issue 41 put it back at 600
# after files had grown to 700: each was split by what it holds, not squeezed).
MAX_LINES = 600

# The engine's parts (attributes of an Engine a caller must not touch): outside the engine, only
# the composition root (wiring) builds with them; everyone else calls the Engine's methods
# (engine/admin.py holds the admin endpoints', dashboard's and probes').
ENGINE_PARTS = frozenset(
    "limiter pool windows alerts metrics usage state health replies transports forwarder "
    "caches models redaction admission offload bodies prices savings notebooks hosted".split()
)
ENGINE_BUILDERS = ("jupyter_server_ext.engine", "jupyter_server_ext.wiring")
# The engine knows only chat (issue 78): the modules of a request's walk import no API's code
# (its format, its edge, what is sent as it came); an API hands the engine what it needs of it
# as data on the request or as its reader (``apis.native``)
CHAT_PATH = tuple(
    f"jupyter_server_ext.engine.{m}"
    for m in "core parsing replies model_choice failover request_state admission_step redaction "
    "prompt_cache".split()
)
API_ROOMS = ("jupyter_server_ext.engine.apis",)
# The one admission (issue 78): the limiter's admissions are asked for by the admission step
# alone, whose door is Engine.admit / Engine.admitted; every other module holds the Admitted
# it is handed and ends it there (the limiter's own ending is private to it)
ADMISSIONS = frozenset({"admit", "count", "counted", "hold"})
ADMITTERS = ("jupyter_server_ext.engine.admission", "jupyter_server_ext.engine.admission_step")

# What each layer may import, by module prefix: a module belongs to the longest prefix that
# matches its name and may import its own layer and the ones listed (the standard library and
# third-party packages are not checked). `None` marks a top layer, which may import anything;
# a module under no prefix is unchecked. docs/architecture.md explains the layers.
K, S = "rsql_magic", "jupyter_server_ext"
# the SQL package both stand on: the databases, the walls, schema capture, %%sql_ai's loop, the
# warehouse tools and rsql-mcp; the kernel runs it, and so does the proxy's {proxy}mcp endpoint
Q = "rsql_sql"
# pure, dependency-free leaves both packages read the same way, in a package of their own
# (rsql_common): which fences hold SQL (the kernel runs them; the proxy must never map a value
# into them), text for a terminal, the stages where %%sql_ai's SQL fails (the words an
# escalation header may carry), the one token estimate, the context policy, and the roots of
# the user-side error tree
SHARED = ("rsql_common",)
# Which package may import which, whatever the layers say (a top layer, `None` below, may import
# anything within its own package's rule): the kernel and the proxy never import each other, so
# either installs, tests and changes alone; the kernel finds the in-process engine by its entry
# point name (client/proxy.py), never by an import.
PACKAGE_IMPORTS: dict[str, tuple[str, ...]] = {
    "rsql_common": (),
    Q: ("rsql_common",),
    K: ("rsql_common", Q),
    S: ("rsql_common", Q),
}
# what the kernel's session stands on, and what a layer on the session may import (the chat
# panel, the agent, rsql-eval)
UNDER_SESSION = (
    Q,
    f"{K}.defaults",
    f"{K}.errors",
    f"{K}.sanitize",
    f"{K}.prompt",
    f"{K}.client",
    f"{K}.render",
    f"{K}.privacy",
    f"{K}.replay",
    f"{K}.context",
)
ON_SESSION = (*UNDER_SESSION, f"{K}.session", *SHARED)

LAYERS: dict[str, tuple[str, ...] | None] = {
    **dict.fromkeys(SHARED, ()),
    # one layer: its modules list themselves bottom up in rsql_sql/__init__.py
    Q: SHARED,
    # the proxy: a framework-free core, backends that plug into its interfaces, the handlers
    # both hosts share, then the hosts (extension, service, inprocess, admin_cli: unchecked)
    f"{S}.engine": SHARED,
    # the engine's rooms, bottom up; its top-level modules (core, request_state, model_choice,
    # redaction, failover, replies, settings, info_endpoints, ...) may use every room
    f"{S}.engine.errors": (),
    f"{S}.engine.interface": SHARED,
    f"{S}.engine.bodies": (f"{S}.engine.errors", *SHARED),
    f"{S}.engine.upstreams": (f"{S}.engine.errors", f"{S}.engine.interface", f"{S}.engine.bodies"),
    f"{S}.engine.admission": (f"{S}.engine.errors", f"{S}.engine.upstreams"),
    f"{S}.engine.accounting": (
        f"{S}.engine.errors",
        f"{S}.engine.interface",
        f"{S}.engine.bodies",  # json_codec: the usage journal's rows
        f"{S}.engine.upstreams",
    ),
    f"{S}.engine.monitoring": (
        f"{S}.engine.errors",
        f"{S}.engine.interface",
        f"{S}.engine.upstreams",
        *SHARED,  # rsql_common.settings: the alerts' settings are declared where they are read
    ),
    f"{S}.engine.privacy": (
        f"{S}.engine.errors",
        f"{S}.engine.interface",
        f"{S}.engine.bodies",
        *SHARED,
    ),
    # a course's rules (issue 75): the tutor mode's instruction, put first on every API, and its
    # names-only completions; the course log of what students asked and were answered
    f"{S}.engine.courses": (
        f"{S}.engine.errors",
        f"{S}.engine.interface",
        f"{S}.engine.bodies",
        f"{S}.engine.admission",
        *SHARED,  # the token estimate: the instruction is reserved as a prompt's text is
    ),
    # the APIs besides chat completions, one folder each, above the engine's one path: their
    # edges (translated, inline.edge) answer on Engine.chat (core), which imports none of them
    f"{S}.engine.apis": (
        f"{S}.engine.errors",
        f"{S}.engine.interface",
        f"{S}.engine.bodies",
        f"{S}.engine.admission",
        f"{S}.engine.courses",
        f"{S}.engine.settings",
        f"{S}.engine.core",
    ),
    # an API's format, both directions: pure, on the chat answers' readers (apis.chat, which
    # needs nothing); the Messages API shares its tool_use block and stop reasons with the
    # Anthropic upstream, which speaks it too
    f"{S}.engine.apis.chat": (),
    f"{S}.engine.apis.messages": (
        f"{S}.engine.errors",
        f"{S}.engine.bodies",
        f"{S}.engine.upstreams.anthropic.request",
        f"{S}.engine.upstreams.anthropic.stop_reasons",
        f"{S}.engine.apis.chat",
    ),
    f"{S}.engine.apis.responses": (
        f"{S}.engine.errors",
        f"{S}.engine.bodies",
        f"{S}.engine.apis.chat",
    ),
    # what a request sent as it came needs, beyond its format: the API's part of apis.native,
    # its hosted tools reserved by the admin's settings for them
    f"{S}.engine.apis.messages.native": (
        f"{S}.engine.errors",
        f"{S}.engine.bodies",
        f"{S}.engine.admission",
        f"{S}.engine.apis.messages",
    ),
    f"{S}.engine.apis.responses.native": (
        f"{S}.engine.errors",
        f"{S}.engine.bodies",
        f"{S}.engine.admission",
        f"{S}.engine.apis.responses",
    ),
    # stored responses: each its owner's, in the state backend
    f"{S}.engine.apis.responses.stored": (
        f"{S}.engine.errors",
        f"{S}.engine.bodies",
        f"{S}.engine.admission",
    ),
    f"{S}.engine.apis.inline.completion": (
        f"{S}.engine.errors",
        f"{S}.engine.bodies",
        f"{S}.engine.settings",  # InlineSettings, the admin's (what the engine holds)
    ),
    f"{S}.state": (f"{S}.engine",),
    f"{S}.store": (f"{S}.engine",),
    # the configuration: c.RSQLProxy, its features' settings (base classes of it, one module
    # each; the admin's MCP connections, checked at start-up as the SQL package's databases say)
    # and every configuration problem at once, for --check-config and both hosts' start-up
    f"{S}.config": (f"{S}.engine", f"{Q}.databases"),
    # a user's server passing the editor's inline suggestions on to the hub service (extension
    # host)
    f"{S}.hub_relay": (f"{S}.engine",),
    # configuration split from wiring: the wiring builds an Engine with its backends
    f"{S}.wiring": (f"{S}.engine", f"{S}.config", f"{S}.state", f"{S}.store"),
    f"{S}.auth": (f"{S}.engine", f"{S}.config"),
    # the hub service's liveness and readiness probes (service host)
    f"{S}.probes": (f"{S}.engine", f"{S}.handlers"),
    # what points users' AI tools at the proxy: pure, read by both hosts and the hub's set-up
    f"{S}.ai_environment": (),
    # the handlers both hosts share; the routes gather them (and the dashboard's and MCP's)
    f"{S}.handlers": (f"{S}.engine", f"{S}.config", f"{S}.auth"),
    f"{S}.dashboard": (f"{S}.engine", f"{S}.config", f"{S}.auth", f"{S}.handlers"),
    # {proxy}mcp: the warehouse tools for users' agents, on the engine's limits, windows and
    # usage log; the tools themselves are the SQL package's (rsql_sql), with %%sql_ai's guard
    f"{S}.mcp": (
        f"{S}.engine",
        f"{S}.config",
        f"{S}.auth",
        f"{S}.handlers",
        Q,
        *SHARED,
    ),
    # the kernel side, bottom up; its defaults, declared once, a leaf every layer reads
    f"{K}.defaults": (f"{Q}.defaults",),  # %%sql_ai's are the SQL package's, named here
    # the one error tree, the SQL package's errors re-exported; it names the stages SQL fails at
    f"{K}.errors": (f"{Q}.errors", *SHARED),
    f"{K}.sanitize": SHARED,  # fences as Markdown draws them, the one grammar
    f"{K}.prompt": SHARED,  # the prompts' layout, which the proxy splits at (prompt_layout)
    # the Jupyter server a kernel runs under, from its runtime file
    f"{K}.discovery": (f"{K}.errors",),
    # the in-process engine is found by its entry point name, never imported (client/proxy.py)
    f"{K}.client": (f"{K}.defaults", f"{K}.errors", f"{K}.discovery"),
    f"{K}.render": (f"{K}.errors", f"{K}.sanitize", f"{K}.client", *SHARED),
    f"{K}.privacy": (f"{K}.errors", *SHARED),
    f"{K}.replay": (f"{K}.errors", f"{K}.client", *SHARED),
    f"{K}.replay_cli": (f"{K}.errors", f"{K}.replay", *SHARED),
    # rsql-provenance: the assistant's marks on a notebook's cells, checked with the proxy
    f"{K}.provenance": (f"{K}.errors", f"{K}.discovery", f"{K}.client", *SHARED),
    f"{K}.context": (f"{K}.defaults", f"{K}.errors", f"{K}.privacy", Q, *SHARED),
    f"{K}.session": UNDER_SESSION,
    # the agent: read-only tools over the session, the turn that calls them, and the same SQL
    # tools served over MCP
    f"{K}.agent": ON_SESSION,
    # the kernel's operations (asking, %%sql_ai's question, an agent turn), each taking one
    # request object: what the magics, the chat panel and rsql-eval all call
    f"{K}.operations": (*ON_SESSION, f"{K}.agent"),
    # the chat panel stands on the operations (its agent mode on the agent); the magics, every
    # one of them, on top
    f"{K}.chat": (*ON_SESSION, f"{K}.agent", f"{K}.operations"),
    # rsql-eval: the same operations as the magics (%%sql_ai's, and the agent's turn) over a
    # question set
    f"{K}.eval": (*ON_SESSION, f"{K}.agent", f"{K}.operations"),
    f"{K}.magics": None,
}


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    imports: set[str] = field(default_factory=set)  # our modules this one imports
    private: list[str] = field(default_factory=list)  # "line: what" for private names used
    engine_parts: list[str] = field(default_factory=list)  # "line: what" for engine.<part>
    admissions: list[str] = field(default_factory=list)  # "line: what" for limiter.admit(...)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(mod: Module, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = mod.name.split(".")
    if mod.path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def load(root: Path = ROOT) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            name = module_name(path, root)
            text = path.read_text()
            modules[name] = Module(name, path.relative_to(root), text.count("\n") + 1)
    for mod in modules.values():
        tree = ast.parse((root / mod.path).read_text())
        imported_modules: set[str] = set()  # local names bound to our modules
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in PACKAGES:
                        mod.imports.add(alias.name)
                        imported_modules.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(mod, node.level, node.module)
                if target.split(".")[0] not in PACKAGES:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:  # `from pkg import module`
                        mod.imports.add(sub)
                        imported_modules.add(alias.asname or alias.name)
                    else:
                        mod.imports.add(target)
                        if _is_private(alias.name):
                            mod.private.append(f"{node.lineno}: from {target} import {alias.name}")
        own = _defined_here(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in imported_modules:
                mod.private.append(f"{node.lineno}: {node.value.id}.{node.attr}")
            elif node.attr not in own and not _is_self(node.value):
                # another module's object reached into: `db._connection()`, `resp.fp._sock`
                mod.private.append(f"{node.lineno}: {ast.unparse(node)}")
        if mod.name.startswith("jupyter_server_ext.") and not mod.name.startswith(ENGINE_BUILDERS):
            mod.engine_parts = _engine_parts(tree)
        if not mod.name.startswith(ADMITTERS):
            mod.admissions = _admissions(tree)
        mod.imports.discard(mod.name)
        mod.imports = {i for i in mod.imports if i in modules}
    return modules


def _engine_parts(tree: ast.AST) -> list[str]:
    """`engine.<part>` / `x.engine.<part>` in a module: an Engine's part reached into."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr in ENGINE_PARTS):
            continue
        holder = node.value
        name = holder.attr if isinstance(holder, ast.Attribute) else getattr(holder, "id", "")
        if name == "engine":
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def _admissions(tree: ast.AST) -> list[str]:
    """`limiter.admit(...)` / `x.limiter.count(...)` in a module: an admission built by hand."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ADMISSIONS:
            continue
        holder = node.func.value
        name = holder.attr if isinstance(holder, ast.Attribute) else getattr(holder, "id", "")
        if name in ("limiter", "lim"):
            found.append(f"{node.lineno}: {ast.unparse(node.func)}")
    return found


def _defined_here(tree: ast.AST) -> set[str]:
    """Private names this file defines itself (functions, classes, attributes it assigns)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted.

    An import of ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, but a package's
    ``__init__`` importing its own submodules is how packages work, so those edges count only
    where the submodule imports the package back by name.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in modules[v].imports:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    return out


def layer_of(name: str) -> str | None:
    best = None
    for prefix in LAYERS:
        if (name == prefix or name.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return best


def layer_breaks(modules: dict[str, Module]) -> list[str]:
    out = []
    for mod in modules.values():
        layer = layer_of(mod.name)
        if layer is None or LAYERS[layer] is None:
            continue
        allowed = (layer, *LAYERS[layer])
        for imp in sorted(mod.imports):
            if not any(imp == a or imp.startswith(a + ".") for a in allowed):
                out.append(f"{mod.name} imports {imp}")
    return out


def package_breaks(modules: dict[str, Module]) -> list[str]:
    out = []
    for mod in modules.values():
        own = mod.name.split(".")[0]
        allowed = (own, *PACKAGE_IMPORTS.get(own, ()))
        out += [
            f"{mod.name} imports {i}" for i in sorted(mod.imports) if i.split(".")[0] not in allowed
        ]
    return out


def report(modules: dict[str, Module]) -> dict[str, list[str]]:
    return {
        "import circles": [" <-> ".join(c) for c in cycles(modules)],
        "imports between packages": package_breaks(modules),
        "imports against the layers": layer_breaks(modules),
        "private names from another module": [
            f"{m.name}:{p}" for m in modules.values() for p in m.private
        ],
        "the engine's parts reached from outside it": [
            f"{m.name}:{p}" for m in modules.values() for p in m.engine_parts
        ],
        "the engine's chat path importing an API": [
            f"{m.name} imports {i}"
            for m in modules.values()
            if m.name in CHAT_PATH
            for i in sorted(m.imports)
            if i.startswith(API_ROOMS)
        ],
        "admissions outside the admission step": [
            f"{m.name}:{p}" for m in modules.values() for p in m.admissions
        ],
        f"files over {MAX_LINES} lines": [
            f"{m.path} ({m.lines})"
            for m in sorted(modules.values(), key=lambda m: -m.lines)
            if m.lines > MAX_LINES
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if any rule is broken")
    parser.add_argument("--longest", type=int, default=8, help="list this many longest files")
    args = parser.parse_args(argv)
    modules = load()
    problems = report(modules)
    for title, rows in problems.items():
        print(f"{title}: {len(rows)}")
        for row in rows:
            print(f"  {row}")
    print("longest files:")
    for m in sorted(modules.values(), key=lambda m: -m.lines)[: args.longest]:
        print(f"  {m.lines:5d}  {m.path}")
    return 1 if args.check and any(problems.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
