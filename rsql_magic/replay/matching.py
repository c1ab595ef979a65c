"""Which recorded answer a chat request matches: its *fingerprint*, a hash of what the model
is shown (:func:`request_view`), and, when nothing matches, short hashes of its parts
(:func:`request_parts`) to say what changed since the closest entry was recorded
(:func:`describe_difference`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "content_text",
    "describe_difference",
    "fingerprint",
    "request_parts",
    "request_view",
]

# the entries' format (their ``v``): bump when the fingerprint changes meaning, and old entries
# then simply never match
FORMAT_VERSION = 1

# Text that varies between runs of the same notebook without changing the question.
_VOLATILE: list[tuple[re.Pattern[str], str]] = [
    # memory addresses in reprs: <Foo object at 0x7f...>
    (re.compile(r"\b0x[0-9a-fA-F]{6,16}\b"), "0x?"),
    # ipykernel's per-process cell files in tracebacks: /tmp/ipykernel_123/456.py
    (re.compile(r"[^\s\"'(]*ipykernel_\d+[/\\]\d+\.py"), "<cell>"),
    (re.compile(r"<ipython-input-\d+-[0-9a-f]+>"), "<cell>"),
    # execution counts move when a cell is added above: In [7], Cell In[7], Out[7]
    (re.compile(r"\b(In|Out) ?\[\d+\]"), r"\1 [n]"),
]
_HEADING = re.compile(r"^(#{1,6} |create (table|view) |question:$)", re.I)


def _normalize(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def content_text(content: Any) -> str:
    """A message's content as text: its parts' text joined, None as empty."""
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def request_view(body: dict[str, Any]) -> dict[str, Any]:
    """What counts in a fingerprint: the model asked for (empty: the proxy's default), each
    message's role and normalized text, temperature and max_tokens.

    Not counted: streaming, cache bypass, the proxy and the user, the time of asking, memory
    addresses, ipykernel's cell file names and execution counts in tracebacks, line endings
    and trailing blanks, and key order. Everything the model is shown counts: a new column, a
    changed dtype, different sample rows or value ranges, another error, another question.
    """
    return {
        "model": str(body.get("model") or ""),
        "messages": [
            {"role": str(m.get("role", "")), "content": _normalize(content_text(m.get("content")))}
            for m in body.get("messages") or []
            if isinstance(m, dict)
        ],
        "params": {
            k: body.get(k) for k in ("temperature", "max_tokens") if body.get(k) is not None
        },
    }


def _hash(obj: Any, n: int = 32) -> str:
    raw = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:n]


def fingerprint(body: dict[str, Any]) -> str:
    """A stable hash of :func:`request_view` of a chat request body."""
    return _hash([FORMAT_VERSION, request_view(body)])


def _sections(text: str) -> Iterator[tuple[str, list[str]]]:
    """Split a message at Markdown headings, ``CREATE TABLE`` lines and ``Question:``."""
    key = "text"
    lines: list[str] = []
    for line in text.split("\n"):
        if _HEADING.match(line):
            if lines:
                yield key, lines
            key, lines = _section_key(line), [line]
        else:
            lines.append(line)
    if lines:
        yield key, lines


def _section_key(line: str) -> str:
    line = line.lstrip("# ").strip()
    if line.lower().startswith("create "):
        return " ".join(line.split("(")[0].split()[:3])  # CREATE TABLE name
    if line.lower() == "question:":
        return "question"
    return re.sub(r"\d[\d,.]*", "N", line)[:100]  # the same frame with more rows: same key


def _frame_parts(lines: list[str]) -> dict[str, list[str]]:
    """A frame section's columns (names and types), column stats and sample rows."""
    names, stats, rows = [], [], []
    in_rows = False
    for line in lines[1:]:
        if re.match(r"^first \d+ rows:", line):
            in_rows = True
        elif in_rows:
            rows.append(line)
        elif line.startswith("- "):
            names.append(line.split(",")[0])
            stats.append(line)
    return {"columns": names, "column stats": stats, "sample rows": rows}


def request_parts(body: dict[str, Any]) -> dict[str, str]:
    """Short hashes of each part of a request, to say what changed when nothing matches."""
    view = request_view(body)
    out = {"model": _hash(view["model"], 10), "parameters": _hash(view["params"], 10)}
    for i, m in enumerate(view["messages"], 1):
        for key, lines in _sections(m["content"]):
            label = f"{m['role']} message {i}: {key}"
            out[label] = _hash(lines, 10)
            if re.search(r"\b(DataFrame|data\.frame|tibble|LazyFrame)\b", key):
                for sub, sub_lines in _frame_parts(lines).items():
                    out[f"{label} / {sub}"] = _hash(sub_lines, 10)
    return out


def describe_difference(want: dict[str, str], have: dict[str, str]) -> list[str]:
    """What differs between two :func:`request_parts`, most specific first."""
    out: list[str] = []
    for key, h in want.items():
        if key not in have:
            out.append(f"new: {key}")
        elif have[key] != h:
            subs = [k for k in want if k.startswith(key + " / ") and have.get(k) != want[k]]
            if not subs:
                out.append(f"changed: {key}")
    out += [f"gone: {k}" for k in have if k not in want]
    return out
