"""What the configuration holds that no message may show: keys, tokens, passwords.

Two layers (issue 73, finding 4), the second holding where the first is wrong:

1. the checks' own messages never repeat a secret-bearing value: a URL is shown with its
   password masked (``mask_url``, lenient enough for a malformed one), a field that may hold
   the key itself (``api_key_env``, an upstream's ``name``) is not shown at all;
2. every configuration message, and every line the service logs, passes through one
   ``Scrubber`` (``scrubber_of``) that knows every secret the configuration holds (upstream
   keys, the values of the variables ``api_key_env`` names, passwords in any URL, the
   pseudonym key, static users' tokens, a value in a misspelled key field) and masks them,
   with any ``user:password@`` and any string shaped like a provider's key.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from traitlets.config.loader import LazyConfigValue

MASK = "***"
# shorter values are masked only by the patterns: masking "ab" by value would garble every line
MIN_SECRET = 4

# Providers' key formats (OpenAI, Anthropic, Groq, xAI, Gemini, Hugging Face, GitHub, GitLab,
# Perplexity, NVIDIA, Replicate, Cerebras, Fireworks, Stripe, Slack): masked wherever they appear
_KEY = re.compile(
    r"(?<![A-Za-z0-9])(?:sk-(?:proj-|ant-|live-|test-|or-v1-)?|gsk_|xai-|AIza|hf_|gh[pousr]_"
    r"|github_pat_|glpat-|pplx-|nvapi-|r8_|csk-|fw_|[sr]k_(?:live|test)_|xox[abposr]-)"
    r"[A-Za-z0-9_\-]{16,}"
)
# `user:password@` in a URL or not, its scheme malformed or absent (`https//u:p@h`,
# `postgresql:/u:p@h/db`, `redis://:p@h`): the user is kept, the password (up to the last '@'
# of the word: a raw '@' in a password) masked. A "password" starting with '/' is a URL's
# `://` (`postgresql://mcp@db`: a user, no password)
_USERINFO = re.compile(
    r"(?P<head>(?:[A-Za-z][A-Za-z0-9+.\-]*:?/+)?[^\s:/@'\"<>]*)"
    r":(?P<secret>[^\s/'\"<>][^\s'\"<>]*)@(?=[^\s@'\"<>])"
)
# `scheme://userinfo@`: a token used as the user name (`https://TOKEN@host`)
_LONE_USERINFO = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*:?/+)(?P<secret>[^\s:/@'\"<>]+)@(?=[^\s@'\"<>])"
)
_PLAIN_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,31}")
# a query parameter carrying a credential (`?password=...`, `&sslpassword=`, `?token=`)
_SECRET_PARAM = re.compile(
    r"(?P<head>[?&;][^=&\s'\"#]*(?:pass|pwd|secret|token|key|sig|auth)[^=&\s'\"#]*=)"
    r"(?P<secret>[^&\s'\"#]+)",
    re.I,
)
# a setting or field whose value is itself a secret, by its name's end (api_key, user_id_secret,
# password; not api_key_env, user_id_secret_file or token_limits)
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:api_?key|key|keys|token|tokens|secret|password|passwd|pwd|credentials?)$",
    re.I,
)
# what a misspelled field holding a secret is close to ("api_kye", "apikey", "passwrd")
_SECRET_FIELDS = ("api_key", "api_key_env", "password", "token", "secret")
# an upstream's fields whose values are not secrets (a URL's password is found in any string)
_PLAIN_UPSTREAM_FIELDS = frozenset(
    (
        "name provider account models limits token_limits prices api_version auth max_in_flight "
        "model_path n_ctx max_rss_mb n_threads repeat_penalty stop_loops chat_format "
        "context_windows responses_api"
    ).split()
)
_PLAIN_USER_FIELDS = frozenset(("name", "groups", "admin", "kind", "scopes"))
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# a string made to be unguessable: long, letters and digits, hardly a separator (a model's or
# a file's name has several)
_RANDOM = re.compile(r"[A-Za-z0-9_\-+=.~]{24,}")


def key_shaped(text: str) -> bool:
    """Whether `text` looks like a key or token rather than a name: a provider's key format,
    or a long random string of letters and digits."""
    if _KEY.search(text):
        return True
    if not _RANDOM.fullmatch(text) or sum(text.count(c) for c in "-_.") > 3:
        return False
    return any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def env_name_problem(value: str) -> str:
    """Why `value` cannot be the name of the variable holding a key ("" when it can): what a
    message says in its place, never the value (it may be the key itself)."""
    if not _ENV_NAME.fullmatch(value):
        return (
            "must name an environment variable (letters, digits and _); the value given is not "
            "one, and is not shown: it may be the key itself"
        )
    if key_shaped(value):
        return (
            "must name an environment variable, such as GROQ_KEY; the value given looks like a "
            "key, and is not shown"
        )
    return ""


def _mask_userinfo(m: re.Match[str]) -> str:
    return f"{m.group('head')}:{MASK}@"


def _mask_lone(m: re.Match[str]) -> str:
    user = m.group("secret")
    return (
        m.group(0)
        if _PLAIN_USER.fullmatch(user) and not key_shaped(user)
        else m.group("head") + MASK + "@"
    )


def _mask_param(m: re.Match[str]) -> str:
    return m.group("head") + MASK


def mask_patterns(text: str) -> str:
    """`text` with every password of a URL (or of a `user:password@host`), every credential in
    a query string and every provider-shaped key masked: what a message may show of a URL."""
    if "@" in text:  # what both userinfo patterns need: most lines are spared their search
        text = _USERINFO.sub(_mask_userinfo, text)
        text = _LONE_USERINFO.sub(_mask_lone, text)
    if "=" in text:
        text = _SECRET_PARAM.sub(_mask_param, text)
    return _KEY.sub(MASK, text)


def mask_url(url: str) -> str:
    """A URL as a message may show it: its password (and a user part that is a token) masked,
    found even in a malformed URL (``https//svc:PASS@host``, ``postgresql:/u:PASS@h/db``)."""
    return mask_patterns(url)


def url_secrets(text: str) -> list[str]:
    """The passwords, tokens and credentials `text` holds in URL form: what ``mask_url`` hides."""
    found = [m.group("secret") for m in _USERINFO.finditer(text)]
    found += [
        m.group("secret")
        for m in _LONE_USERINFO.finditer(text)
        if not _PLAIN_USER.fullmatch(m.group("secret")) or key_shaped(m.group("secret"))
    ]
    found += [m.group("secret") for m in _SECRET_PARAM.finditer(text)]
    return found


class Scrubber:
    """Masks every secret it was given, and every secret-shaped pattern (``mask_patterns``), in
    a message: the last step before a configuration message is printed or logged."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            # as written, as repr() shows it inside a message, as a one-line message has it
            for form in (secret, repr(secret)[1:-1], " ".join(secret.split())):
                if len(form) >= MIN_SECRET:
                    forms.add(form)
        self._exact = re.compile(_trie_pattern(forms)) if forms else None
        self.count = len(forms)

    def __call__(self, text: str) -> str:
        if self._exact is not None:
            text = self._exact.sub(MASK, text)
        return mask_patterns(text)


def _plain(value: Any) -> Any:
    """A configuration value as what it adds: `c.X.items.append(...)` or `.update(...)` (a
    LazyConfigValue, read without applying it: applying caches the result) as its items."""
    if not isinstance(value, LazyConfigValue):
        return value
    lazy = value.to_dict()  # traitlets' own account of what it adds
    items = [
        *lazy.get("prepend", ()),
        *(item for _, item in lazy.get("inserts", ())),
        *lazy.get("extend", ()),
    ]
    update = lazy.get("update")
    if isinstance(update, Mapping) and not items:
        return dict(update)
    return items + (list(update) if update else [])


def _trie_pattern(words: set[str]) -> str:
    """One regular expression matching each of `words`, the longest where several start at one
    place (a secret holding another is masked whole). Written as a trie: a plain alternation of
    500 tokens costs 50 us a log line (re tries each at every position); this, a few."""
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def pattern(node: dict[str, Any]) -> str:
        # iterative over a chain of single children (a token's tail): recursion only where
        # words part, which is as deep as the words are many at most
        out = ""
        while len(node) == 1 and "" not in node:
            ((char, node),) = node.items()
            out += re.escape(char)
        if not node or list(node) == [""]:
            return out
        alternatives = "|".join(re.escape(c) + pattern(n) for c, n in sorted(node.items()) if c)
        # a word ending here, and longer ones going on: the optional group is greedy
        return out + f"(?:{alternatives}){'?' if '' in node else ''}"

    try:
        return pattern(root)
    except RecursionError:  # thousands of words each the start of the next: not worth a trie
        return "|".join(map(re.escape, sorted(words, key=len, reverse=True)))


def _strings(value: Any, depth: int = 0) -> Iterable[str]:
    """Every string in a configuration value (keys of dicts too), to a bounded depth."""
    if depth > 20:  # a configuration is a few levels deep; a cycle or a monster is not walked
        return
    value = _plain(value)
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(k, depth + 1)
            yield from _strings(v, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item, depth + 1)


def _secret_field(name: Any) -> bool:
    """Whether a field of this name holds a secret: by its name, or as a misspelling of one."""
    if not isinstance(name, str):
        return False
    return bool(_SECRET_NAME.search(name)) or bool(
        difflib.get_close_matches(name.lower(), _SECRET_FIELDS, n=1, cutoff=0.75)
    )


def _upstream_secrets(entry: Mapping[Any, Any], env: Mapping[str, str]) -> Iterable[str]:
    for field, value in entry.items():
        if field == "api_key_env" and isinstance(value, str):
            if env.get(value):
                yield env[value]
            if env_name_problem(value):  # not a variable's name: perhaps the key itself
                yield value
        elif field not in _PLAIN_UPSTREAM_FIELDS and _secret_field(field):
            yield from _strings(value)  # api_key, or a misspelling of it


def config_secrets(config: Mapping[str, Any], env: Mapping[str, str], text: str = "") -> set[str]:
    """Every secret a configuration holds: `config` (a traitlets Config: its sections, valid or
    not), `env` (the variables its upstreams name) and `text` (the file's source, for a file that
    stopped before its settings were made: its quoted strings in key form or with passwords)."""
    found: set[str] = set()
    for values in config.values():
        if not isinstance(values, Mapping):
            found.update(s for s in _strings(values) if key_shaped(s))
            continue
        for name, value in values.items():
            value = _plain(value)
            if name == "upstreams" and isinstance(value, list | tuple):
                for entry in value:
                    if isinstance(entry, Mapping):
                        found.update(_upstream_secrets(entry, env))
            elif name == "static_users" and isinstance(value, Mapping):
                for token, user in value.items():
                    found.update(_strings(token))
                    if isinstance(user, Mapping):
                        for field, v in user.items():
                            if field not in _PLAIN_USER_FIELDS:
                                found.update(_strings(v))
            elif _secret_field(name):
                found.update(_strings(value))
            # within any other setting: a field named as a secret (an MCP connection's, say)
            elif isinstance(value, Mapping | list | tuple):
                found.update(_named_secrets(value))
            for s in _strings(value):  # passwords in URLs, keys in any field or URL's path
                found.update(url_secrets(s))
                found.update(p for p in re.split(r"[/?&=#@:]", s) if key_shaped(p))
    for quoted in re.findall(r"'([^'\\\n]*)'|\"([^\"\\\n]*)\"", text):
        for s in quoted:
            found.update(url_secrets(s))
            if key_shaped(s):
                found.add(s)
    # a literal written after a secret's name: `"api_key": "..."`, `user_id_secret = "..."`
    for m in re.finditer(r"(\w+)[\"']?\s*[:=]\s*[\"']([^\"'\n]+)[\"']", text):
        field, value = m.groups()
        # api_key_env holds a variable's name, which a message must show ("$GROQ_KEY is not
        # set"); only a value that is no variable's name may be the key itself
        if field == "api_key_env" and not env_name_problem(value):
            continue
        if _secret_field(field):
            found.add(value)
    return found


def _named_secrets(value: Any, depth: int = 0) -> Iterable[str]:
    """Strings under a secret-named field anywhere inside `value`."""
    if depth > 20:
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if _secret_field(k):
                yield from _strings(v)
            else:
                yield from _named_secrets(v, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _named_secrets(item, depth + 1)


def scrubber_of(config: Mapping[str, Any], env: Mapping[str, str], text: str = "") -> Scrubber:
    """The scrubber for a configuration (``config_secrets``)."""
    return Scrubber(config_secrets(config, env, text))


class ScrubFilter(logging.Filter):
    """A log handler's filter: each record's message, and its traceback, scrubbed before any
    handler writes it (a library's error can repeat a URL with its password)."""

    def __init__(self, scrub: Scrubber) -> None:
        super().__init__()
        self.scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        said = record.getMessage()
        clean = self.scrub(said)
        if clean != said or record.args:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def scrub_logs(scrub: Scrubber, *loggers: logging.Logger) -> None:
    """Put `scrub` on `loggers` (the root logger when none) and on every handler they have, in
    place of one put there before: every line the process logs through them is scrubbed. On the
    logger too, because a handler may be replaced: traitlets builds an application's handler
    anew when its configuration sets the log level, and then logs the whole configuration
    through the new one ("Config changed", at DEBUG)."""
    for logger in loggers or (logging.getLogger(),):
        for holder in (logger, *logger.handlers):
            for old in [f for f in holder.filters if isinstance(f, ScrubFilter)]:
                holder.removeFilter(old)
            holder.addFilter(ScrubFilter(scrub))
