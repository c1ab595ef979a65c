"""Rendering answers: Markdown with a plain-text fallback, highlighted code, a one-line footer.

Default output is a bundle of ``text/markdown`` + ``text/plain``: JupyterLab, Notebook 7,
VS Code and nbconvert's HTML exporter render Markdown and highlight fenced code in the
frontend's own theme (light or dark). ``mode="html"`` renders HTML here instead (``markdown``
+ pygments with inline styles), for frontends without a Markdown renderer.

Answers are hostile input (see :mod:`rsql_magic.sanitize`): every bundle built here carries
safe Markdown, sanitized HTML and plain text without control characters.
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

from .client import ChatResult

# code_block is the sanitizer's: answers' fences and ours are drawn alike
from .sanitize import clean_html, code_block, escape_markdown, plain_text, safe_markdown

__all__ = ["code_block", "error_bundle", "extract_code", "fallback_label", "footer", "markdown_bundle",
           "markdown_to_html", "mimebundle", "normalize_lang", "replayed_label"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.#-]*)[^\n]*\n(.*?)(?:\n```|\Z)", re.S)

_LANG_ALIASES = {
    "python": {"python", "py", "python3", "ipython", "pandas"},
    "r": {"r", "rscript", "splus"},
    "sql": {"sql", "sqlite", "postgresql", "postgres", "duckdb", "mysql", "tsql"},
}


def normalize_lang(lang: str) -> str:
    """The language a code fence's tag names: ``python``, ``r`` or ``sql`` for their aliases
    (``py``, ``rscript``, ``postgresql`` ...), else the tag itself, lower-cased."""
    tag = lang.strip().lower()
    return next((name for name, aliases in _LANG_ALIASES.items() if tag in aliases), tag)


def footer(res: ChatResult) -> str:
    """``model · 123 → 45 tokens · $0.0001 · cache hit · 1.2 s`` (missing parts left out).

    An answer from the proxy's local fallback model (``X-RSQL-Fallback``) says so first: the
    user should know a small local model, not the usual provider, wrote it.
    """
    parts: list[str] = []
    if res.fallback and not res.replayed_at:
        parts.append(fallback_label(res.fallback))
    if res.model:
        parts.append(res.model)
    u = res.usage or {}
    pt, ct = u.get("prompt_tokens"), u.get("completion_tokens")
    if pt is not None or ct is not None:
        parts.append(f"{pt if pt is not None else '?'} → {ct if ct is not None else '?'} tokens")
    elif u.get("total_tokens") is not None:
        parts.append(f"{u['total_tokens']} tokens")
    if res.replayed_at:
        # from the replay store: no request reached the proxy, so no cost, cache or latency
        parts.append(replayed_label([res.replayed_at]))
        return " · ".join(parts)
    if res.cost_usd is not None:
        parts.append(f"${res.cost_usd:.4f}" if res.cost_usd < 1 else f"${res.cost_usd:.2f}")
    parts.append("cache hit" if res.cache_hit else "cache miss")
    parts.append(f"{res.latency_s:.1f} s")
    if res.upstream:
        parts.append(f"via {res.upstream}")
    return " · ".join(parts)


def fallback_label(upstream: str) -> str:
    """``answered by the local fallback model (local)``; the name is the proxy's header value,
    cut short and stripped of anything but name characters."""
    name = re.sub(r"[^A-Za-z0-9_.:/@+-]", "", str(upstream))[:60] or "?"
    return f"answered by the local fallback model ({name})"


def replayed_label(recorded: list[str]) -> str:
    """``replayed (recorded 2026-11-22 13:20 UTC) · no request sent`` for the oldest of
    ``recorded`` (ISO times from the replay file: only a validated date-time is shown)."""
    times = sorted(t for t in recorded if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d[\w:.+-]*", t))
    when = f"{times[0][:10]} {times[0][11:16]} UTC" if times else "?"
    return f"replayed (recorded {when}) · no request sent"


def extract_code(text: str, lang: str | None = None) -> list[tuple[str, str]]:
    """Fenced code blocks as ``(language, code)``; those in ``lang`` first when given."""
    blocks = [(m.group(1).lower(), m.group(2).rstrip("\n")) for m in _FENCE.finditer(text)]
    if lang:
        names = _LANG_ALIASES.get(lang, {lang})
        hits = [b for b in blocks if b[0] in names]
        if hits:
            return hits
    return blocks


def markdown_to_html(text: str) -> str:
    """Model Markdown -> sanitized HTML with pygments-highlighted code (inline styles: no CSS
    needed). Raw HTML in ``text`` is shown as text, images as links (see ``safe_markdown``)."""
    text = safe_markdown(text)
    try:
        import markdown
    except ImportError:
        return clean_html(f"<pre>{_html.escape(text)}</pre>")
    return clean_html(markdown.markdown(
        text,
        extensions=["fenced_code", "codehilite", "tables"],
        extension_configs={"codehilite": {"noclasses": True, "guess_lang": False}},
    ))


def mimebundle(text: str, res: ChatResult | None = None, *, mode: str = "markdown",
               streaming: bool = False) -> dict[str, Any]:
    """The display bundle for an answer (``streaming``: a partial answer, marked as such)."""
    foot = footer(res) if res is not None else ("… streaming" if streaming else "")
    plain = plain_text(text + (f"\n\n-- {foot}" if foot else ""))
    bundle: dict[str, Any] = {"text/plain": plain}
    if mode == "text":
        return bundle
    if mode == "html":
        body = markdown_to_html(text)
        if foot:
            body += f'<hr><div style="font-size:85%;opacity:.7">{_html.escape(foot)}</div>'
        bundle["text/html"] = clean_html(body)
    else:
        bundle["text/markdown"] = safe_markdown(text) + (
            f"\n\n---\n*{escape_markdown(foot)}*" if foot else "")
    return bundle


def error_bundle(partial: str, message: str) -> dict[str, Any]:
    """A failed answer: what had arrived, then the error in bold (Markdown + plain text)."""
    md = (safe_markdown(partial).rstrip("\n") + "\n\n" if partial else "")
    plain = plain_text((partial + "\n\n" if partial else "") + message)
    return {"text/markdown": md + f"**{escape_markdown(message)}**", "text/plain": plain}


def markdown_bundle(md: str, plain: str | None = None) -> dict[str, Any]:
    """A Markdown display (status lines, code for the next cell) made safe like an answer."""
    return {"text/markdown": safe_markdown(md),
            "text/plain": plain_text(md if plain is None else plain)}
