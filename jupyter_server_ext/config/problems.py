"""A configuration's problems, collected one line each (``Problems``), and the checks whose
messages would otherwise show a secret: an upstream's fields that may hold its key, and URLs
that may hold a password (issue 73), each shown masked (``config.secrets``)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from functools import partial
from typing import Any

from ..engine import ConfigError, parse_upstreams
from ..engine.errors import ConfigProblems, Problems, problems_of
from ..engine.upstreams.specs import UpstreamSpec, duplicate_names, parse_upstream
from .secrets import env_name_problem, key_shaped, mask_url

# the collector and its error are the engine's (its parsers collect too); named here for config
__all__ = [
    "POSTGRES_SCHEMES",
    "URL_SCHEME",
    "ConfigError",
    "ConfigProblems",
    "Problems",
    "problems_of",
    "database_url_problem",
    "state_url_problem",
    "upstream_specs",
    "url_problem",
]


def upstream_specs(raw: Any, env: Mapping[str, str]) -> tuple[UpstreamSpec, ...]:
    """``parse_upstreams``, its messages kept from showing a secret: a field that may hold the
    key itself (``api_key_env``, ``name``) is judged here and never shown, and each upstream is
    checked with its ``base_url``'s password masked. Every upstream's problem is named, not only
    the first's."""
    if not isinstance(raw, list | tuple):
        return parse_upstreams(raw, env)  # says what it expected; shows only the type
    problems = Problems()
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            problems.run(partial(parse_upstream, item, i, env), None)
            continue
        own = _secret_field_problems(item, i)
        problems.extend(own)
        name = item.get("name")
        if isinstance(name, str) and key_shaped(name):
            continue  # its other lines would have to name it
        # the rest of its fields judged too, each field said above standing in as a valid one
        masked = dict(item)
        if isinstance(item.get("base_url"), str):
            masked["base_url"] = mask_url(item["base_url"])
        elif "base_url" in item:
            masked["base_url"] = "https://base-url.invalid"
        var = item.get("api_key_env")
        if isinstance(var, str) and var and env_name_problem(var):
            masked.pop("api_key_env")
            masked.setdefault("api_key", "-")
        problems.run(partial(parse_upstream, masked, i, env), None)
    problems.extend(duplicate_names(raw))
    problems.refuse()
    return parse_upstreams(raw, env)  # the real values


def _secret_field_problems(item: Mapping[str, Any], index: int) -> list[str]:
    """The mistakes of an upstream's fields that would have a message show a secret: a key
    written as its name, in api_key_env, or a base_url that is not a string."""
    name = item.get("name")
    out: list[str] = []
    if isinstance(name, str) and key_shaped(name):
        where = f"RSQLProxy.upstreams[{index}]"
        out.append(
            f"{where}: field 'name' looks like a key, not an alias, and is not shown; a name is "
            "a short alias such as 'groq-a1' (the key goes in the variable api_key_env names)"
        )
    else:
        where = f"upstream {name!r}" if isinstance(name, str) else f"RSQLProxy.upstreams[{index}]"
    var = item.get("api_key_env")
    if isinstance(var, str) and var and env_name_problem(var):
        out.append(f"{where}: field 'api_key_env' {env_name_problem(var)}")
    base_url = item.get("base_url")
    if "base_url" in item and not isinstance(base_url, str):
        out.append(
            f"{where}: field 'base_url' must be an http(s) URL (a string), got "
            f"{'an' if type(base_url).__name__[0] in 'aeiou' else 'a'} {type(base_url).__name__}"
        )
    return out


# a URL's scheme, even with a slash missing (postgresql:/u:p@h/db): not a file name
URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]+:/")


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def state_url_problem(url: str) -> str:
    """Why ``state_url`` cannot be read ("" when it can, or is empty), its password masked."""
    if not url:
        return ""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return f"RSQLProxy.state_url must be a redis:// URL, got {mask_url(url)!r}"
    return url_problem("state_url", url)


def database_url_problem(url: str) -> str:
    """Why ``database_url`` cannot be read ("" when it can, or is empty: the default SQLite)."""
    if ("://" in url or URL_SCHEME.match(url)) and not url.startswith(
        ("sqlite:", *POSTGRES_SCHEMES)
    ):
        return f"RSQLProxy.database_url must be sqlite:///PATH or postgresql://..., got {mask_url(url)!r}"
    return url_problem("database_url", url) if url.startswith(POSTGRES_SCHEMES) else ""


def url_problem(setting: str, url: str) -> str:
    """Why a service's URL cannot be read ("" when it can): a port that is no number. The URL is
    shown with its password masked."""
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018  # reading it checks it (0 to 65535)
    except ValueError:
        return f"RSQLProxy.{setting} {mask_url(url)!r}: its port is not a number from 0 to 65535"
    return ""
