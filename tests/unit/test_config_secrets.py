"""Issue 73, finding 4, the second layer on its own: whatever a message says, the scrubber made
from a configuration masks every secret the configuration holds, so a check whose message does
repeat a value (an engine's, a library's) still shows none. And finding 7's entry checks, one
line per mistake of ``c.RSQLProxyService.static_users``."""

from __future__ import annotations

import hashlib
import io
import logging
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_server_ext.config.check import (
    proxy_config_problems,
    short_tokens,
    static_user_problems,
)
from jupyter_server_ext.config.secrets import (
    MASK,
    Scrubber,
    ScrubFilter,
    key_shaped,
    mask_url,
    scrubber_of,
)

# made, not written, so that no key-shaped literal sits in the source (a secret scanner would
# rightly flag one); the same in every test worker (xdist compares their collections), each in
# the shape of the provider's own keys
KEY = "gsk_" + hashlib.sha1(b"rsql-test groq key").hexdigest()
NAMED_KEY = "sk-proj-" + hashlib.md5(b"rsql-test key as a name").hexdigest()  # noqa: S324
ENV_VALUE = "a-key-only-the-environment-holds"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https//svc:PASS123@host/v1", "https//svc:***@host/v1"),  # a scheme typo
        ("postgresql:/u:PASS123@h/db", "postgresql:/u:***@h/db"),  # a slash missing
        ("redis://:PASS123@h:6379/0", "redis://:***@h:6379/0"),  # a password, no user
        ("svc:PASS123@host", "svc:***@host"),  # no scheme at all
        ("postgresql://u:p@ss/w@h/db", "postgresql://u:***@h/db"),  # '@' and '/' in it, raw
        ("postgresql://h/db?sslpassword=PASS123&x=1", "postgresql://h/db?sslpassword=***&x=1"),
        (f"https://{KEY}@github.com/x", "https://***@github.com/x"),  # a token as the user
        ("postgresql://mcp@db/warehouse", "postgresql://mcp@db/warehouse"),  # a user: kept
        ("https://api.groq.com/openai/v1", "https://api.groq.com/openai/v1"),
    ],
)
def test_a_url_is_shown_with_its_password_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (KEY, True),
        ("sk-proj-Q2x9LmN4pR7sT1vW3yZ5aB8c", True),
        ("0123456789abcdef0123456789abcdef", True),  # secrets.token_hex(16)
        ("GROQ_KEY_A1", False),
        ("llama-3.1-8b-instant", False),
        ("Meta-Llama-3.1-70B-Instruct-Turbo", False),
        ("claude-sonnet-4-5-20250929", False),
    ],
)
def test_what_looks_like_a_key(text: str, key: bool) -> None:
    assert key_shaped(text) is key


def the_config() -> Config:
    c = Config()
    c.RSQLProxy.upstreams = [
        {"name": "a", "base_url": "https://u:BASEPASS@llm.internal/v1", "api_key": "INLINE-KEY-1"},
        {"name": "b", "api_key_env": "RSQL_T_KEY"},  # its value, from the environment
        {"name": "c", "api_key_env": NAMED_KEY},
        {"name": "d", "api_kye": "MISSPELT-KEY-2"},
    ]
    c.RSQLProxy.state_url = "redis://:STATEPASS@cache:6379/0"
    c.RSQLProxy.database_url = "postgresql://rsql:DBPASS@db:54x2/usage"
    c.RSQLProxy.mcp_connections = {"dw": {"url": "postgresql:/r:MCPPASS@db/dw", "role": "r"}}
    c.RSQLProxy.user_id_secret = "PSEUDONYM-KEY"
    c.RSQLProxyService.static_users = {"STATIC-TOKEN-1": {"name": "alice"}}
    return c


SECRETS = [
    "BASEPASS",
    "INLINE-KEY-1",
    ENV_VALUE,
    NAMED_KEY,
    "MISSPELT-KEY-2",
    "STATEPASS",
    "DBPASS",
    "MCPPASS",
    "PSEUDONYM-KEY",
    "STATIC-TOKEN-1",
]


def test_every_secret_of_a_configuration_is_masked_in_any_message() -> None:
    """Messages written as a careless check would (each value repeated as it is, in repr()
    too): none of the ten secrets is left, and what names the setting is."""
    scrub = scrubber_of(the_config(), {"RSQL_T_KEY": ENV_VALUE})
    for secret in SECRETS:
        said = scrub(f"RSQLProxy.x: field 'f' got {secret!r}, which is {secret} again")
        assert secret not in said and said.startswith("RSQLProxy.x: field 'f' got '***'"), said
    # the engine's own words for the name of an unset variable that is a key
    said = scrub(f"upstream 'c': field 'api_key_env' names ${NAMED_KEY}")
    assert said == f"upstream 'c': field 'api_key_env' names ${MASK}"


def test_what_no_configuration_names_is_masked_by_its_shape() -> None:
    scrub = Scrubber()
    said = scrub(f"connecting to postgresql://app:hunter2hunter@db/x failed; key {KEY}")
    assert "hunter2hunter" not in said and KEY not in said
    assert said == f"connecting to postgresql://app:{MASK}@db/x failed; key {MASK}"


def test_an_appended_setting_is_read_for_secrets_too() -> None:
    """`c.RSQLProxy.upstreams.append(...)` is kept by traitlets as a change to apply later."""
    c = Config()
    c.RSQLProxy.upstreams.append({"name": "a", "api_key": "APPENDED-KEY"})
    c.RSQLProxyService.static_users.update({"UPDATED-TOKEN": {"name": "bob"}})
    scrub = scrubber_of(c, {})
    assert scrub("APPENDED-KEY UPDATED-TOKEN") == f"{MASK} {MASK}"


def test_a_file_that_stopped_early_still_has_its_literals_masked() -> None:
    text = 'c.RSQLProxy.user_id_secret = "EARLY-SECRET"\nc.RSQLProxy.x = {"api_key": "K-123456"}\n'
    scrub = scrubber_of(Config(), {}, text)
    assert scrub("KeyError: 'EARLY-SECRET' near K-123456") == f"KeyError: '{MASK}' near {MASK}"


def test_the_log_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ScrubFilter(scrubber_of(the_config(), {})))
    logger = logging.Logger("rsql.test-scrub")
    logger.addHandler(handler)
    logger.warning("database %s unreachable", "postgresql://rsql:DBPASS@db/usage")
    try:
        raise ValueError("bad url redis://:STATEPASS@cache:6379/0")
    except ValueError:
        logger.exception("state failed")
    said = out.getvalue()
    assert "DBPASS" not in said and "STATEPASS" not in said, said
    assert "postgresql://rsql:***@db/usage" in said and "ValueError: bad url" in said, said


def test_a_jupyter_servers_own_check_shows_no_secret_either() -> None:
    """The server extension's start-up check (proxy_config_problems) says the same lines,
    scrubbed the same way."""
    c = Config()
    c.RSQLProxy.upstreams = [
        {"name": "g", "base_url": "https//svc:PW-0a1b2c3d@h/v1", "api_key_env": "RSQL_T_KEY"},
        {"name": "h", "api_key_env": KEY},
    ]
    c.RSQLProxy.state_url = "http://:PW-0a1b2c3d@cache:6379/0"
    said = proxy_config_problems(c, env={"RSQL_T_KEY": ENV_VALUE})
    assert len(said) == 4, said
    assert "PW-0a1b2c3d" not in " ".join(said) and KEY not in " ".join(said), said
    assert "upstream 'g': field 'base_url'" in said[0] and "'api_key_env'" in said[1], said
    # the rest of that upstream's fields are judged too, the key field set aside
    assert said[2] == (
        "upstream 'h': field 'base_url' is required, an http(s) URL like "
        "'https://api.groq.com/openai/v1'"
    ), said


STUDENT = {"name": "ann", "groups": ["students"], "admin": False}


@pytest.mark.parametrize(
    ("users", "said"),
    [
        ({"t1": STUDENT}, []),
        (  # a hub service by its name, as deploy/kubernetes's metrics scraper
            {"t1": {"kind": "service", "name": "rsql-metrics", "admin": True, "scopes": ["x"]}},
            [],
        ),
        (
            {"t1": STUDENT, "t2": {"name": "bea", "groups": "students"}},
            [
                "RSQLProxyService.static_users, entry 2 (user 'bea'): field 'groups' must be a "
                "list of group names, like ['students'], got the str 'students': a string would "
                "be read as its letters"
            ],
        ),
        (
            {"t2": {"name": "cid", "group": ["students"]}},
            [
                "RSQLProxyService.static_users, entry 1 (user 'cid'): unknown field 'group'; "
                "did you mean 'groups'?"
            ],
        ),
        (
            {"t2": {"name": "dan", "admin": "no"}},
            [
                "RSQLProxyService.static_users, entry 1 (user 'dan'): field 'admin' must be True "
                "or False, got the str 'no' (any non-empty string, even 'no', counts as true)"
            ],
        ),
        (
            {"t2": {"name": "ev/e"}, "t3": {"groups": []}, "t4": "eve", "": {"name": "fay"}},
            [
                "RSQLProxyService.static_users, entry 1: field 'name' 'ev/e' holds a '/', which "
                "JupyterHub user names cannot (a hub service is {'kind': 'service', 'name': ...})",
                "RSQLProxyService.static_users, entry 2: field 'name' is required: the user "
                "limits, budgets and the usage log count",
                "RSQLProxyService.static_users, entry 3: expected a user like {'name': 'alice', "
                "'groups': ['students'], 'admin': False}, got a str",
                "RSQLProxyService.static_users, entry 4 (user 'fay'): its token (the entry's "
                "key) must be a non-empty string",
            ],
        ),
        (
            {"t2": {"name": "gil", "groups": ["a", ""], "kind": "robot", "scopes": "x"}},
            [
                "RSQLProxyService.static_users, entry 1 (user 'gil'): field 'groups': item 1 "
                "must be a non-empty string, got the str ''",
                "RSQLProxyService.static_users, entry 1 (user 'gil'): field 'scopes' must be a "
                "list of scopes, like ['x'], got the str 'x': a string would be read as its "
                "letters",
                "RSQLProxyService.static_users, entry 1 (user 'gil'): field 'kind' must be "
                "'user' or 'service', got the str 'robot'",
            ],
        ),
    ],
)
def test_each_static_user_mistake_is_one_line_naming_the_entry(
    users: dict[str, Any], said: list[str]
) -> None:
    assert static_user_problems(users) == said


def test_short_tokens_are_named_by_their_user() -> None:
    users = {"tok-ann": {"name": "ann"}, "x" * 43: {"name": "bob"}, "t": "not a user"}
    assert short_tokens(users) == ["'ann'", "entry 3"]


def test_a_token_written_as_the_name_is_not_shown() -> None:
    """Token and name swapped: the name is what messages print, so it is judged first."""
    users = {"carla": {"name": KEY, "admin": True}}
    assert static_user_problems(users) == [
        "RSQLProxyService.static_users, entry 1: field 'name' looks like a token, not a user "
        "name, and is not shown"
    ]
    assert short_tokens(users) == ["entry 1"]
