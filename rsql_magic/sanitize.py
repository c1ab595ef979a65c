"""Make model text safe to show: every answer is hostile input.

A model's answer can be steered by text hidden in the data it was shown, and notebook
frontends trust what a live kernel displays: JupyterLab renders the Markdown and HTML of
outputs produced in the session without its own sanitizer, and ipywidgets' ``HTML`` sets
``innerHTML``. Script in that page can drive the user's kernels and terminals, and an image
pointing elsewhere leaks data the moment it is shown. So every path that shows model (or
data) text goes through one of these:

- :func:`clean_html`: the last step for *all* HTML we display (``nh3``, the Rust ``ammonia``
  sanitizer, with an allowlist of tags and attributes). Links keep ``http``, ``https`` and
  ``mailto`` URLs only and get ``rel="noopener noreferrer"``; images become links; ``style``
  is kept only for a few properties whose values cannot load anything or leave their box.
- :func:`safe_markdown`: Markdown that is still Markdown (the frontend renders and highlights
  it), with raw HTML shown as text, images turned into links and links other than
  ``http``/``https``/``mailto`` shown as text.
- :func:`escape_markdown` (plain text inside Markdown) and :func:`plain_text` (no terminal
  control sequences in ``text/plain``).
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

import nh3

from rsql_common.fences import CONTROL_CHARACTERS, fenced_blocks

__all__ = ["clean_html", "code_block", "escape_markdown", "plain_text", "safe_markdown"]

# An image becomes a link whose text starts with this (words, not an emoji: many Linux
# desktops have no font for it)
IMAGE_MARK = "image: "

# -- HTML --------------------------------------------------------------------------------

_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "caption",
    "code",
    "dd",
    "del",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "samp",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
}
_ATTRS = {
    "*": {"class", "style", "title"},
    "a": {"href"},
    "ol": {"start"},
    "table": {"border"},
    "td": {"align", "colspan", "rowspan"},
    "th": {"align", "colspan", "rowspan"},
}
_SCHEMES = {"http", "https", "mailto"}
_SAFE_URL = re.compile(r"(?:https?://|mailto:)\S", re.I)
_IMG_URL = re.compile(r"https?://\S", re.I)

# Classes: our own (rsql-*), the highlighter's wrapper, pandas' tables, code languages.
# Anything else could borrow the page's own classes (JupyterLab's dialogs, overlays).
_CLASS = re.compile(r"rsql-[a-z0-9-]+|codehilite|dataframe|language-[A-Za-z0-9_+#.-]+")

# Inline styles are kept because highlighted code (pygments) and our own layout use them
# and html output must look right without a stylesheet (nbconvert exports, ipywidgets).
# Only properties that cannot fetch anything (no url(), no images) or move content out of
# its box (no position, z-index, negative margins), each with a plain value.
_STYLE_PROPS = {
    "background",
    "background-color",
    "border",
    "border-radius",
    "color",
    "font-size",
    "font-style",
    "font-weight",
    "line-height",
    "margin",
    "opacity",
    "padding",
    "text-align",
    "text-decoration",
    "vertical-align",
    "white-space",
}
_TOKEN = (
    r"(?:#[0-9a-fA-F]{3,8}|\d*\.?\d+(?:px|em|rem|%|pt)?|[a-zA-Z]+(?:-[a-zA-Z]+)*"
    r"|rgba?\(\s*\d*\.?\d+%?(?:\s*,\s*\d*\.?\d+%?){2,3}\s*\))"
)
_STYLE_VALUE = re.compile(rf"{_TOKEN}(?:\s+{_TOKEN})*")
_BAD_KEYWORDS = re.compile(r"url|expression|image|var|attr|env", re.I)


def _filter_style(value: str) -> str | None:
    kept = []
    for decl in value.split(";"):
        prop, sep, val = decl.partition(":")
        prop, val = prop.strip().lower(), val.strip()
        if not sep or prop not in _STYLE_PROPS or not _STYLE_VALUE.fullmatch(val):
            continue
        if _BAD_KEYWORDS.search(val):
            continue
        kept.append(f"{prop}: {val}")
    return "; ".join(kept) or None


def _filter_attr(tag: str, attr: str, value: str) -> str | None:
    """Per-value checks nh3's allowlist cannot express."""
    if attr == "href":
        # absolute http(s)/mailto only: relative URLs would open files of the Jupyter server
        return value if _SAFE_URL.match(value.strip()) else None
    if attr == "src":  # only on <img> in the first pass, before images become links
        return value if _IMG_URL.match(value.strip()) else None
    if attr == "class":
        kept = [c for c in value.split() if _CLASS.fullmatch(c)]
        return " ".join(kept) or None
    if attr == "style":
        return _filter_style(value)
    if attr in ("colspan", "rowspan", "start", "border"):
        return value if re.fullmatch(r"\d{1,3}", value.strip()) else None
    if attr == "align":
        return value if value.strip().lower() in ("left", "right", "center", "justify") else None
    return value


_COMMON: dict[str, Any] = dict(
    attribute_filter=_filter_attr,
    url_schemes=_SCHEMES,
    link_rel="noopener noreferrer",
    # a click opens a new tab instead of leaving the notebook
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
)
# ammonia's serialiser writes attributes as name="value" with '"' escaped: this matches it
_IMG = re.compile(r'<img((?:\s+[^\s=>]+="[^"]*")*)\s*/?>')
_ATTR = re.compile(r'([^\s=>]+)="([^"]*)"')


def _img_to_link(m: re.Match[str]) -> str:
    attrs = {k: _html.unescape(v) for k, v in _ATTR.findall(m.group(1))}
    src, alt = attrs.get("src", ""), attrs.get("alt", "")
    label = _html.escape(IMAGE_MARK + (alt or src or "image"))
    if not src:
        return label
    return f'<a href="{_html.escape(src, quote=True)}">{label}</a>'


def clean_html(html: str) -> str:
    """Sanitize HTML for display (allowlisted tags and attributes, safe links, no images)."""
    if "<img" in html.lower():
        # first pass: normalise, so that every image is a plain <img src alt>; then each
        # becomes a link (not loaded) and the final pass checks the result like anything else
        html = nh3.clean(
            html, tags=_TAGS | {"img"}, attributes={**_ATTRS, "img": {"src", "alt"}}, **_COMMON
        )
        html = _IMG.sub(_img_to_link, html)
    return nh3.clean(html, tags=_TAGS, attributes=_ATTRS, **_COMMON)


# -- text --------------------------------------------------------------------------------


def plain_text(text: str) -> str:
    """``text`` without control characters (newlines normalised to ``\\n``, tabs kept): C0
    controls, DEL and C1 controls are terminal escape sequences (colours, hidden text, titles,
    clipboard writes) in text/plain outputs and terminal IPython. The list is the fence
    grammar's, so fences read in raw answers are the ones drawn from this text."""
    return CONTROL_CHARACTERS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


_MD_PUNCT = re.compile(r"([\\`*_\[\]!$~|])")


def escape_markdown(text: str) -> str:
    """Plain text as inline Markdown that renders as itself (one line: newlines become spaces)."""
    text = plain_text(text).replace("\n", " ").replace("&", "&amp;").replace("<", "&lt;")
    return _MD_PUNCT.sub(r"\\\1", text)


# -- Markdown ----------------------------------------------------------------------------
#
# The output stays Markdown for the frontend to render, so it must be safe under *its*
# parser (marked in JupyterLab, markdown-it in VS Code, mistune in nbconvert), not just
# ours. Each rule is therefore chosen so that a difference between parsers can only make
# the result look odd, never let something through:
#
# - Fenced code is re-emitted with a fence of our own at column 0 between blank lines, so
#   every parser sees exactly the blocks we saw, and their text is shown verbatim.
# - Outside those, '<' and '&' are written as entities: no raw HTML, no autolinks, no
#   entity tricks (e.g. "javascript&#58;") anywhere.
# - An inline code span is kept as it is when its text holds nothing that would need
#   escaping, else it becomes <code> with every punctuation character as an entity (the
#   only raw HTML in the output, ours).
# - Every link needs "](" (inline link) or "]:" (reference definition) in the source; at
#   each such place the destination must start with http://, https:// or mailto:, or the
#   bracket's partner is written as an entity, which no parser reads as syntax.
# - Every image needs "![": it becomes a link "[<image mark> alt](url)".

_BACKTICKS = re.compile(r"`+")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_INLINE = re.compile(r"\\[!-/:-@\[-`{-~]|`+|[&<]|!\[")
_LINK_AT = re.compile(r"\]([(:])")
_SAFE_DEST = re.compile(r"\s*(?:https?://|mailto:)", re.I)
_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")


def code_block(code: str, lang: str) -> str:
    """``code`` in a Markdown fence tagged ``lang``, longer than any backtick run inside."""
    longest = max((len(r) for r in _BACKTICKS.findall(code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{code}\n{fence}"


def _blocks(text: str) -> list[tuple[str, str]]:
    """Split into ("prose", text) and ("code", fenced block) parts, fences as Markdown draws
    them (``rsql_common.fences``), each code part re-drawn with a fence of ours."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for block in fenced_blocks(text):
        if block.start > pos:
            # without its last newline (plain_text's: every line ends in "\n")
            parts.append(("prose", text[pos : block.start - 1]))
        parts.append(("code", code_block(block.code, block.fence.tag)))
        pos = block.end
    if pos < len(text):
        parts.append(("prose", text[pos:]))
    return parts


def _code_span(raw: str, content: str) -> str:
    if not any(s in content for s in ("<", "&", "](", "]:", "![")):
        return raw
    text = content.replace("\n", " ")
    if text.startswith(" ") and text.endswith(" ") and text.strip():
        text = text[1:-1]
    return "<code>" + _PUNCT.sub(lambda c: f"&#{ord(c.group(0))};", text) + "</code>"


def _closing_ticks(s: str, start: int, n: int) -> int | None:
    """Start of the next run of exactly ``n`` backticks in the same paragraph."""
    blank = _BLANK_LINE.search(s, start)
    end = blank.start() if blank else len(s)
    for m in _BACKTICKS.finditer(s, start, end):
        if len(m.group(0)) == n:
            return m.start()
    return None


def _prose(s: str) -> str:
    out: list[str] = []
    pos = 0
    while True:
        m = _INLINE.search(s, pos)
        if m is None:
            out.append(s[pos:])
            break
        out.append(s[pos : m.start()])
        tok = m.group(0)
        pos = m.end()
        if tok == "\\<":
            out.append("&lt;")
        elif tok == "\\&":
            out.append("&amp;")
        elif tok[0] == "\\":
            out.append(tok)
        elif tok == "&":
            out.append("&amp;")
        elif tok == "<":
            out.append("&lt;")
        elif tok == "![":
            out.append("[" + IMAGE_MARK)
        else:  # a run of backticks: a code span when a run of the same length closes it
            close = _closing_ticks(s, pos, len(tok))
            if close is None:
                out.append(tok)
            else:
                out.append(_code_span(s[m.start() : close + len(tok)], s[pos:close]))
                pos = close + len(tok)
    text = "".join(out)

    def link(m: re.Match[str]) -> str:
        if _SAFE_DEST.match(text, m.end()):
            return m.group(0)
        return "]&#40;" if m.group(1) == "(" else "]&#58;"

    return _LINK_AT.sub(link, text)


def safe_markdown(text: str) -> str:
    """Model Markdown -> Markdown with no raw HTML, no images and only web or mail links."""
    out = ""
    for kind, part in _blocks(plain_text(text)):
        if kind == "code":
            out = (out.rstrip("\n") + "\n\n" if out else "") + part + "\n\n"
        else:
            out += _prose(part.lstrip("\n") if out else part)
    return out
