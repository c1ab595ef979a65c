"""Redaction of personal data in outgoing requests, and its reversal in answers.

The admin names pattern types once (``c.RSQLProxy.redact_patterns``): built-in ones (email,
phone, card, iban, ipv4) and custom regular expressions. Every match in what a request sends
upstream is replaced by a typed placeholder (``<email-1>``), the same value by the same
placeholder throughout the request, so the model can still refer to it. Built-in types check
more than a shape (Luhn for cards, mod-97 for IBANs, a phone's plausible layout), so ordinary
numbers, dates, ids and amounts pass untouched.

The answer may use the placeholders; ``Restorer`` puts the real values back for the user who
sent them, in plain text only: never in a block the kernel takes as SQL, nor for SQL clients
(their SQL runs: a value mapped into it would be data turned into code), nor in a link or
image target, a URL or an HTML attribute (where a click or an image load would send it out).
It works on a stream too, holding back a placeholder split across chunks until it is complete.

Pattern-based: it finds what looks like the configured types, not every personal datum (a
name in free text is not caught unless a custom pattern describes it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from rsql_common.fences import (
    Fence,
    fence_open,
    is_sql_language,
    may_become_fence_line,
    split_lines,
)

from ..errors import ConfigError, Problems
from .mapback_context import RestoreContext

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    # issuers' prefixes and lengths (Visa 4: 13/16/19, Amex 34/37: 15, others 14-19 from 2, 3,
    # 5 or 6), so a long id that happens to pass Luhn is not taken for a card; a run of one
    # digit passes Luhn too but is filler
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1 or digits[0] not in "23456":
        return False
    if digits[0] == "4" and len(digits) not in (13, 16, 19):
        return False
    if digits[:2] in ("34", "37") and len(digits) != 15:
        return False
    return _luhn(digits)


# letters as ISO 13616 numbers them (A=10 ... Z=35); str.translate does the whole IBAN in one call,
# which keeps a text full of IBAN-like groups cheap to scan
_IBAN_LETTERS = {ord(ch): str(10 + i) for i, ch in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}


def _iban_ok(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not (compact.isascii() and compact.isalnum()):
        return False
    moved = compact[4:] + compact[:4]
    return int(moved.translate(_IBAN_LETTERS)) % 97 == 1


_DATE_LIKE = re.compile(r"^(\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")


def _phone_ok(text: str) -> bool:
    """A plausible phone layout: international (+CC ...), a parenthesized area code, a national
    number with a trunk 0 (030 1234567, 06 12 34 56 78) or the North American 555-123-4567.
    Plain digit runs (ids), dates, amounts and versions have none of these shapes."""
    digits = re.sub(r"\D", "", text)
    if _DATE_LIKE.match(text):
        return False
    if text.startswith("+"):
        return 9 <= len(digits) <= 15
    if text.startswith("("):
        return 7 <= len(digits) <= 12
    if re.fullmatch(r"\d{3}([-. ])\d{3}\1\d{4}", text):
        return True
    first = re.match(r"\d+", text)
    if re.fullmatch(r"\d{4}(?:[ .-]\d{4})+", text):
        return False  # groups of four are how IBANs and card numbers are written, not phones
    return (
        first is not None
        and first.group().startswith("0")
        and len(first.group()) >= 2
        and (9 <= len(digits) <= 12)
        and bool(re.search(r"[ .-]", text))
    )


@dataclass(frozen=True)
class Pattern:
    """One redaction type: its name (the placeholder's and the metric label's), a regular
    expression, and an optional check a match must pass."""

    name: str
    regex: re.Pattern[str]
    check: Callable[[str], bool] | None = None


BUILTIN: dict[str, Pattern] = {
    p.name: p
    for p in (
        Pattern(
            "email",
            re.compile(
                r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b"
            ),
        ),
        Pattern(
            "iban",
            re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
            _iban_ok,
        ),
        # card layouts only: one run of digits, groups of four, or Amex's 4-6-5
        Pattern(
            "card",
            re.compile(
                r"(?<![\d.,+-])(?:\d{13,19}|\d{4}(?:([ -])\d{4}(?:\1\d{4}){1,2}(?:\1\d{1,3})?)|\d{4}([ -])\d{6}\2\d{4,5})"  # noqa: E501 (one alternation, read whole)
                r"(?![\d.,]\d|\d)"
            ),
            _card_ok,
        ),
        Pattern(
            "ipv4",
            re.compile(
                r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                r"(?![\d]|\.\d)"
            ),
        ),
        Pattern(
            "phone",
            re.compile(
                # a bare number starts with two digits or more: "0 1 2 3" is no phone number
                r"(?<![\w+.,/-])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,14}|\(\d{1,4}\)[ .-]?\d{1,14}|\d{2,14})"  # noqa: E501 (one alternation, read whole)
                r"(?:[ .-]\d{1,8}){0,5}"
                r"(?![\w]|[.,/-]\d)"
            ),
            _phone_ok,
        ),
    )
}


def _find(p: Pattern, text: str) -> list[tuple[int, int]]:
    """Spans of `p` in `text` that pass its check.

    A match that fails the check must not hide a valid one it overlaps: a phone number
    followed by a card number first matches as one over-long "phone". So after a failure the
    same start is tried ending at each earlier separator, then the next start."""
    out: list[tuple[int, int]] = []
    pos = 0
    while pos <= len(text):
        m = p.regex.search(text, pos)
        if m is None:
            break
        start, end = m.span()
        if end == start:
            pos = start + 1
            continue
        if p.check is None or p.check(m.group()):
            out.append((start, end))
            pos = end
            continue
        found = 0
        for stop in range(end - 1, start, -1):
            if text[stop].isalnum():  # only a cut at a separator is a candidate of its own
                continue
            shorter = p.regex.match(text, start, stop)
            if shorter is not None and shorter.end() == stop and p.check(shorter.group()):
                found = stop
                break
        if found:
            out.append((start, found))
            pos = found
        else:
            pos = start + 1
    return out


def parse_redact_patterns(raw: Any) -> tuple[Pattern, ...]:
    """Validate ``c.RSQLProxy.redact_patterns``: built-in names, or {"name", "regex"} dicts;
    ConfigProblems names every pattern that is wrong."""
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"RSQLProxy.redact_patterns: expected a list, got {type(raw).__name__}")
    problems = Problems()
    parsed = [problems.run(partial(_pattern, item, i), None) for i, item in enumerate(raw)]
    out = [p for p in parsed if p is not None]
    names = [p.name for p in out]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"RSQLProxy.redact_patterns: pattern {name!r} is listed twice")
    problems.refuse()
    return tuple(out)


def _pattern(item: Any, i: int) -> Pattern:
    """One entry of ``redact_patterns``: a built-in's name, or a custom {"name", "regex"}."""
    where = f"RSQLProxy.redact_patterns[{i}]"
    if isinstance(item, str):
        if item not in BUILTIN:
            raise ConfigError(
                f"{where}: unknown pattern {item!r}; built-in patterns: {', '.join(BUILTIN)}, or give "
                '{"name": "...", "regex": "..."}'
            )
        return BUILTIN[item]
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: expected a built-in name or a dict, got {type(item).__name__}")
    unknown = sorted(set(item) - {"name", "regex"}, key=str)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r}; a custom pattern has 'name' and 'regex'"
        )
    name, regex = item.get("name"), item.get("regex")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{where}: field 'name' must be a short lower-case identifier (it names the "
            f"placeholder and a metric label), got {name!r}"
        )
    if name in BUILTIN:
        raise ConfigError(f"{where}: name {name!r} is a built-in pattern; choose another name")
    if not isinstance(regex, str) or not regex:
        raise ConfigError(f"{where} ({name!r}): field 'regex' must be a non-empty string")
    try:
        compiled = re.compile(regex)
    except re.error as exc:
        raise ConfigError(f"{where} ({name!r}): bad regular expression {regex!r}: {exc}") from None
    if compiled.match(""):
        raise ConfigError(f"{where} ({name!r}): regular expression {regex!r} matches empty text")
    return Pattern(name, compiled)


CONTEXT_POLICY_DEFAULTS: dict[str, Any] = {
    "sample_rows": True,
    "value_stats": True,
    "redact_columns": [],
}


def parse_context_policy(raw: Any) -> dict[str, Any]:
    """Validate ``c.RSQLProxy.context_policy``, naming every wrong field; the defaults filled in."""
    if raw is None:
        raw = {}
    where = "RSQLProxy.context_policy"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a dict, got {type(raw).__name__}")
    problems = Problems()
    for unknown in sorted(set(raw) - set(CONTEXT_POLICY_DEFAULTS), key=str):
        problems.append(
            f"{where}: unknown field {unknown!r}; known fields: "
            + ", ".join(CONTEXT_POLICY_DEFAULTS)
        )
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in CONTEXT_POLICY_DEFAULTS.items()}
    for key in ("sample_rows", "value_stats"):
        if key in raw:
            if isinstance(raw[key], bool):
                out[key] = raw[key]
            else:
                problems.append(f"{where}['{key}']: expected True or False, got {raw[key]!r}")
    if "redact_columns" in raw:
        cols = raw["redact_columns"]
        if isinstance(cols, (list, tuple)) and all(isinstance(c, str) and c for c in cols):
            out["redact_columns"] = list(cols)
        else:
            problems.append(
                f"{where}['redact_columns']: expected a list of column names or glob patterns "
                f"like '*email*', got {cols!r}"
            )
    problems.refuse()
    return out


@dataclass
class Redactor:
    """The placeholders of one request: value -> placeholder, and counts per type."""

    patterns: tuple[Pattern, ...]
    placeholders: dict[str, str] = field(default_factory=dict)  # value -> <type-n>
    counts: dict[str, int] = field(default_factory=dict)
    _next: dict[str, int] = field(default_factory=dict)

    def text(self, text: str) -> str:
        """`text` with every match replaced; overlapping matches: the earlier, then the longer."""
        if not self.patterns or not text:
            return text
        spans = [(start, end, p.name) for p in self.patterns for start, end in _find(p, text)]
        if not spans:
            return text
        spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        out, pos = [], 0
        for start, end, name in spans:
            if start < pos:
                continue
            out.append(text[pos:start])
            out.append(self._placeholder(text[start:end], name))
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _placeholder(self, value: str, kind: str) -> str:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        found = self.placeholders.get(value)
        if found is None:
            n = self._next[kind] = self._next.get(kind, 0) + 1
            found = self.placeholders[value] = f"<{kind}-{n}>"
        return found

    def messages(self, messages: Any) -> Any:
        """A redacted copy of chat messages: their text (string content and text parts), what
        else a provider reads as the user's words (a file's name, an image's URL but a data:
        URL's bytes), and the tool calls an assistant turn carries (a function's arguments,
        each string value when they are JSON; a free-form tool's input). The caller's own
        objects are never changed (an in-process caller still holds them)."""
        if not isinstance(messages, list):
            return messages
        out = []
        for m in messages:
            if not isinstance(m, dict):
                out.append(m)
                continue
            m = dict(m)
            content = m.get("content")
            if isinstance(content, str):
                m["content"] = self.text(content)
            elif isinstance(content, list):
                m["content"] = [self._part(part) for part in content]
            calls = m.get("tool_calls")
            if isinstance(calls, list):
                m["tool_calls"] = [self._call(call) for call in calls]
            out.append(m)
        return out

    def _part(self, part: Any) -> Any:
        if not isinstance(part, dict):
            return part
        if isinstance(part.get("text"), str):
            return {**part, "text": self.text(part["text"])}
        file, image = part.get("file"), part.get("image_url")
        if isinstance(file, dict) and isinstance(file.get("filename"), str):
            return {**part, "file": {**file, "filename": self.text(file["filename"])}}
        if isinstance(image, dict) and isinstance(image.get("url"), str):
            url = image["url"]
            if not url.startswith("data:"):  # base64 bytes hold no words, and may look like some
                return {**part, "image_url": {**image, "url": self.text(url)}}
        return part

    def _call(self, call: Any) -> Any:
        """A tool call with its arguments (or a free-form tool's input) redacted."""
        if not isinstance(call, dict):
            return call
        for kind, field_ in (("function", "arguments"), ("custom", "input")):
            body = call.get(kind)
            if isinstance(body, dict) and isinstance(body.get(field_), str):
                return {**call, kind: {**body, field_: self.arguments(body[field_])}}
        return call

    def arguments(self, text: str) -> str:
        """A tool call's arguments: each string in them when they are JSON (a placeholder put
        over a number would break the JSON), else the text."""
        try:
            value = json.loads(text)
        except ValueError:
            return self.text(text)
        if not isinstance(value, dict | list):
            return self.text(text)
        return json.dumps(self.everything(value), ensure_ascii=False)

    def tools(self, tools: Any) -> Any:
        """A redacted copy of a request's tool definitions: what the model reads of them as
        words (a tool's description, and the descriptions and titles in its schema); names,
        types and enums stay, as the calls must use them."""
        if not isinstance(tools, list):
            return tools
        return [self._described(t) for t in tools]

    def _described(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._described(v) for v in value]
        if not isinstance(value, dict):
            return value
        return {
            k: self.text(v)
            if k in ("description", "title") and isinstance(v, str)
            else self._described(v)
            for k, v in value.items()
        }

    def inputs(self, value: Any) -> Any:
        """A legacy `prompt` or an embeddings `input`: a string or a list of strings (token ids
        pass as they are)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.text(v) if isinstance(v, str) else v for v in value]
        return value

    def everything(self, value: Any) -> Any:
        """A redacted copy of any JSON value: every string in it (object keys kept), as a
        stored response is kept at rest."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.everything(v) for v in value]
        if isinstance(value, dict):
            return {k: self.everything(v) for k, v in value.items()}
        return value

    def restorer(self) -> Restorer:
        return Restorer({v: k for k, v in self.placeholders.items()})


_PLACEHOLDER = re.compile(r"<[a-z][a-z0-9_]{0,31}-\d{1,9}>")
# a tail that may still become a placeholder when the next chunk comes
_PARTIAL = re.compile(r"<(?:[a-z][a-z0-9_]{0,31}(?:-\d{0,9})?)?$")


class Restorer:
    """Maps placeholders back to their values in answer text, in plain text only.

    A placeholder stays as it is where its value could leave the user's screen or run:
    in a block the kernel takes as SQL (``extract_sql``'s own grammar, and any fence tagged
    with an SQL language), a link or image target, an autolink or bare URL, or an HTML tag's
    attributes (``RestoreContext``, which reads the answer as the user gets it).

    Fences are read as the answer draws them (``rsql_common.fences``, the sanitizer's grammar),
    so a block the chat shows and offers as SQL is one here too.

    Fed piece by piece (a stream), it holds back what is not yet decidable: a partial
    placeholder at the end, and a line whose start may still open or close a fence
    (``- ```sql`` split anywhere) until it ends or can no longer become one."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.pending = ""
        self.fence: Fence | None = None  # the open fence
        self.at_line_start = True
        self.context = RestoreContext()

    def feed(self, text: str) -> str:
        buf = self.pending + text
        cut = len(buf)
        m = _PARTIAL.search(buf)
        if m is not None:
            cut = m.start()
        line_start = max(buf.rfind("\n", 0, cut), buf.rfind("\r", 0, cut)) + 1
        if line_start == 0 and not self.at_line_start:
            line_start = -1  # the line began in an earlier piece, already judged
        if line_start >= 0 and may_become_fence_line(buf[line_start:cut]):
            cut = line_start
        self.pending = buf[cut:]
        return self._emit(buf[:cut])

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        return self._emit(rest)

    def _emit(self, text: str) -> str:
        if not text:
            return text
        out = []
        for line in split_lines(text):
            if self.at_line_start and self._take_fence_line(line):
                out.append(self._keep(line))
            else:
                out.append(self._keep(line) if self.in_sql else self._swap(line))
            self.at_line_start = line.endswith(("\n", "\r"))
        return "".join(out)

    def _take_fence_line(self, line: str) -> bool:
        """Whether ``line`` opens or closes a fence (the state follows); it is kept as it is."""
        if self.fence is not None:
            if not self.fence.closed_by(line):
                return False
            self.fence = None
            return True
        self.fence = fence_open(line)
        return self.fence is not None

    @property
    def in_sql(self) -> bool:
        """Inside a fence tagged with one of the kernel's SQL languages (a bare fence too), or
        anything sql-ish."""
        if self.fence is None:
            return False
        language = self.fence.language
        return is_sql_language(language) or language.startswith("sql")

    def _keep(self, text: str) -> str:
        self.context.feed(text)
        return text

    def _swap(self, text: str) -> str:
        if "<" not in text:
            return self._keep(text)
        out, pos = [], 0
        for m in _PLACEHOLDER.finditer(text):
            out.append(self._keep(text[pos : m.start()]))
            value = self.values.get(m.group()) if self.context.plain() else None
            out.append(self._keep(m.group() if value is None else value))
            pos = m.end()
        out.append(self._keep(text[pos:]))
        return "".join(out)


def restore_text(text: str, values: dict[str, str]) -> str:
    r = Restorer(values)
    return r.feed(text) + r.flush()
