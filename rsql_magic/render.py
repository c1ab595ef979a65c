"""Rendering answers: Markdown with a plain-text fallback, highlighted code, a one-line footer.

Default output is a bundle of ``text/markdown`` + ``text/plain``: JupyterLab, Notebook 7,
VS Code and nbconvert's HTML exporter render Markdown and highlight fenced code in the
frontend's own theme (light or dark). ``mode="html"`` renders HTML here instead (``markdown``
+ pygments with inline styles), for frontends without a Markdown renderer.

Answers are hostile input (see :mod:`rsql_magic.sanitize`): every bundle built here carries
safe Markdown, sanitized HTML and plain text without control characters. So is what the proxy
says about the user (``GET me`` for %ask_status, ``GET me/cost`` for %ask_cost, a policy's
refusal): its Markdown here is shown through :func:`markdown_bundle` too.
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

from rsql_common.fences import SQL_FENCE_LANGUAGES, fenced_blocks

from .client import ChatResult, ProxyClient
from .errors import ProxyError

# code_block is the sanitizer's: answers' fences and ours are drawn alike
from .sanitize import clean_html, code_block, escape_markdown, plain_text, safe_markdown

__all__ = [
    "code_block",
    "cost_markdown",
    "error_bundle",
    "extract_code",
    "fallback_label",
    "footer",
    "markdown_bundle",
    "markdown_table",
    "markdown_to_html",
    "me_markdown",
    "mimebundle",
    "normalize_lang",
    "proxy_answers",
    "refusal_markdown",
    "replayed_label",
    "replayed_notice",
    "table_cell",
    "utc_text",
    "window_until",
]

_LANG_ALIASES = {
    "python": {"python", "py", "python3", "ipython", "pandas"},
    "r": {"r", "rscript", "splus"},
    # the languages extract_sql runs as SQL (one list, rsql_common.fences); a bare fence is no tag
    "sql": SQL_FENCE_LANGUAGES - {""},
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
    if res.mode == "tutor" and not res.replayed_at:  # the course's tutoring instruction went first
        parts.append("tutor mode")
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


def _recorded_when(recorded: list[str]) -> str:
    """``2026-11-22 13:20 UTC`` for the oldest of ``recorded`` (ISO times from the replay file:
    only a validated date-time is shown), else ``?``."""
    times = sorted(t for t in recorded if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d[\w:.+-]*", t))
    return f"{times[0][:10]} {times[0][11:16]} UTC" if times else "?"


def replayed_label(recorded: list[str]) -> str:
    """``replayed (recorded 2026-11-22 13:20 UTC) · no request sent`` (the footer's words)."""
    return f"replayed (recorded {_recorded_when(recorded)}) · no request sent"


def proxy_answers(client: ProxyClient | None, failed: ProxyError | None) -> str:
    """Whether the proxy answered just now (`failed`: how it did not; `client`: None when none
    was found), in the words of ``%ask_status``'s "proxy answers now" and of a replayed
    answer's notice."""
    if failed is None:
        engine = client is not None and client.engine is not None
        return "yes, in this kernel (the in-process engine)" if engine else "yes"
    reason = " ".join((str(failed).splitlines() or [""])[0].split())
    if reason.endswith(":") and ". " in reason:  # "no proxy found. Configure one of:" and a list
        reason = reason.rsplit(". ", 1)[0]
    reason = reason if len(reason) <= 240 else reason[:239] + "…"
    if failed.status == 0:
        return f"no: {reason}"
    if failed.status in (401, 403) and not failed.refused_by_policy:
        return f"it answers, but refuses this kernel's token: {reason}"
    if failed.status in (404, 405):  # a server without `me`: an older proxy, or a provider
        return "it answers, but has no `me` (an older proxy, or not an rsql proxy)"
    return f"it answers with an error: {reason}"


def replayed_notice(
    recorded: list[str], file: str | None, *, mode: str, client: ProxyClient | None
) -> str:
    """The line over a replayed answer, where the user looks first (issue 77): the answer is
    a recording and nothing was sent, and whether the proxy answers now as far as the cell
    found out (`client`'s ``unavailable``: how it did not answer); else replay ``only`` never
    asks it, else it was not asked, and ``%ask_status`` asks it."""
    where = f" from {plain_text(file)}" if file else ""
    line = f"Replayed answer{where}, recorded {_recorded_when(recorded)}: no request was sent."
    failed = client.unavailable if client is not None else None
    if client is not None and failed is not None:
        return f"{line} Proxy answers now: {plain_text(proxy_answers(client, failed))}."
    if mode == "only":
        return f"{line} Replay only: the proxy is never asked."
    return f"{line} The proxy was not asked: %ask_status says whether it answers now."


def extract_code(text: str, lang: str | None = None) -> list[tuple[str, str]]:
    """Fenced code blocks as ``(language, code)``; those in ``lang`` first when given. The
    blocks are those the answer shows (``rsql_common.fences``, the sanitizer's reading)."""
    blocks = [(b.fence.language, b.code.rstrip("\n")) for b in fenced_blocks(text)]
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
    return clean_html(
        markdown.markdown(
            text,
            extensions=["fenced_code", "codehilite", "tables"],
            extension_configs={"codehilite": {"noclasses": True, "guess_lang": False}},
        )
    )


def mimebundle(
    text: str,
    res: ChatResult | None = None,
    *,
    mode: str = "markdown",
    streaming: bool = False,
    notices: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """The display bundle for an answer (``streaming``: a partial answer, marked as such);
    ``notices``: plain lines over it (tutor mode, the course log's notice), each one line."""
    foot = footer(res) if res is not None else ("… streaming" if streaming else "")
    head = [" ".join(plain_text(n).split()) for n in notices if n.strip()]
    plain = plain_text(
        "".join(f"{n}\n" for n in head) + (text + (f"\n\n-- {foot}" if foot else ""))
    )
    bundle: dict[str, Any] = {"text/plain": plain}
    if mode == "text":
        return bundle
    if mode == "html":
        body = "".join(f'<div class="rsql-notice"><b>{_html.escape(n)}</b></div>' for n in head)
        body += markdown_to_html(text)
        if foot:
            body += f'<hr><div style="font-size:85%;opacity:.7">{_html.escape(foot)}</div>'
        bundle["text/html"] = clean_html(body)
    else:
        top = "".join(f"> **{escape_markdown(n)}**\n>\n" for n in head)
        bundle["text/markdown"] = (
            (top.removesuffix(">\n") + "\n" if top else "")
            + safe_markdown(text)
            + (f"\n\n---\n*{escape_markdown(foot)}*" if foot else "")
        )
    return bundle


def error_bundle(partial: str, message: str) -> dict[str, Any]:
    """A failed answer: what had arrived, then the error in bold (Markdown + plain text)."""
    md = safe_markdown(partial).rstrip("\n") + "\n\n" if partial else ""
    plain = plain_text((partial + "\n\n" if partial else "") + message)
    return {"text/markdown": md + f"**{escape_markdown(message)}**", "text/plain": plain}


def markdown_bundle(md: str, plain: str | None = None) -> dict[str, Any]:
    """A Markdown display (status lines, code for the next cell) made safe like an answer."""
    return {
        "text/markdown": safe_markdown(md),
        "text/plain": plain_text(md if plain is None else plain),
    }


# -- what the proxy says about the user: GET me, GET me/cost, a policy's refusal -----------
#
# Every value below comes from the proxy (or a notebook file): hostile text. It goes into
# Markdown raw, with only '|' and newlines escaped so a value stays in its table cell, and the
# caller shows it through markdown_bundle, whose safe_markdown takes out raw HTML, images and
# unsafe links, as it does for answers.

_WINDOW_MODES = {
    "off": "no assistant",
    "local-only": "only the local model",
    "custom": "models and budget of its own",
    "tutor": "hints, not whole solutions",
}


def table_cell(value: Any) -> str:
    """A value as one Markdown table cell: lists joined, ``|`` escaped, one line."""
    if isinstance(value, dict):
        value = ", ".join(f"{k}={v}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        value = ", ".join(map(str, value))
    return "" if value is None else plain_text(str(value)).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table's lines (blank lines around it are the caller's)."""
    out = ["| " + " | ".join(table_cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    return out + ["| " + " | ".join(table_cell(v) for v in row) + " |" for row in rows]


def utc_text(stamp: Any, *, date: bool = True) -> str:
    """``2026-11-23T18:00:00Z`` -> ``2026-11-23 18:00 UTC`` (``18:00:00 UTC`` with `date`
    False, when it is today); anything else as it came."""
    import datetime as dt

    text = str(stamp)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    except ValueError:
        return text
    if not date and t.date() == dt.datetime.now(dt.timezone.utc).date():
        return t.strftime("%H:%M:%S UTC")
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return ""
    if s < 120:
        return f"{s:.0f} s"
    return f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _usd(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "?"
    # cents, or what is below them
    return f"${v:.2f}" if v >= 1 or round(v, 2) == v else f"${v:.4f}"


def window_until(window: dict[str, Any]) -> str:
    """``until 2026-11-23 18:00 UTC (2026-11-23 19:00 CET)``, or "" when it has no end."""
    ends = window.get("ends_at")
    if not ends:
        return ""
    local = window.get("ends_at_local")
    return f"until {utc_text(ends)}" + (f" ({local})" if local else "")


def _limits_rows(limits: list[Any]) -> list[str]:
    known = ["limit", "used", "remaining", "resets_at", "resets_in_seconds", "window"]
    extra: list[str] = []
    for item in limits:
        extra += [k for k in item if k not in known and k not in extra]
    rows = []
    for item in limits:
        resets = utc_text(item["resets_at"], date=False) if item.get("resets_at") else ""
        seconds = item.get("resets_in_seconds")
        if isinstance(seconds, (int, float)) and seconds > 0:
            resets = f"{resets} (in {_duration(seconds)})" if resets else f"in {_duration(seconds)}"
        resets = resets or "-"  # nothing used: nothing to reset
        rows.append(
            [item.get("limit"), item.get("used"), item.get("remaining"), resets, item.get("window")]
            + [item.get(k) for k in extra]
        )
    return markdown_table(["limit", "used", "left", "resets", "window", *extra], rows)


def _item(lines: list[str], text: str) -> None:
    """Append a list item; after a table, past a blank line (else it reads as a table row)."""
    if lines and lines[-1].startswith("|"):
        lines.append("")
    lines.append(text)


def _generic(key: str, val: Any) -> list[str]:
    """A key this kernel does not know (the shape of GET me may grow): shown as it is."""
    if isinstance(val, list) and val and all(isinstance(x, dict) for x in val):
        cols: list[str] = []
        for item in val:
            cols += [c for c in item if c not in cols]
        return [
            "",
            f"**{key}**",
            "",
            *markdown_table(cols, [[item.get(c) for c in cols] for item in val]),
        ]
    if isinstance(val, dict):
        return [f"- **{key}.{k}**: {table_cell(v)}" for k, v in val.items()]
    return [f"- **{key}**: {'none' if val is None else table_cell(val) or '(empty)'}"]


def me_markdown(me: dict[str, Any]) -> list[str]:
    """``GET me`` as Markdown lines, in sections: who you are, the models you may use and the
    defaults, each limit with what is left and when it resets, concurrency, the budget, the
    policy window in force, the context policy; keys not known here follow as they are."""
    lines: list[str] = []
    done = {"user", "name", "username", "identity", "admin", "groups"}
    who = next((me[k] for k in ("user", "name", "username", "identity") if me.get(k)), None)
    if who is not None:
        extra = (["admin"] if me.get("admin") else []) + (
            ["groups: " + table_cell(me["groups"])] if me.get("groups") else []
        )
        lines.append(f"- **you**: {table_cell(who)}" + (f" ({'; '.join(extra)})" if extra else ""))
    else:
        done = set()
    if any(k in me for k in ("models", "default_model", "sql_default_model")):
        done |= {"models", "default_model", "sql_default_model"}
        lines += ["", "**Models**", ""]
        models = me.get("models")
        if isinstance(models, list):
            lines.append(f"- **you may use**: {table_cell(models) or 'none now'}")
        default = table_cell(me.get("default_model")) or "the proxy's default"
        lines.append(f"- **default** (%%ask, chat): {default}")
        if "sql_default_model" in me:
            lines.append(
                f"- **%%sql_ai default**: {table_cell(me.get('sql_default_model')) or 'the default above'}"
            )
    limits = me.get("limits")
    if isinstance(limits, list) and all(isinstance(x, dict) for x in limits):
        done.add("limits")
        lines += ["", "**Limits**", ""]
        lines += _limits_rows(limits) if limits else ["- no request limits"]
    if "concurrency" in me and (me["concurrency"] is None or isinstance(me["concurrency"], dict)):
        done.add("concurrency")
        c = me["concurrency"]
        _item(
            lines,
            "- **requests at once**: "
            + (
                f"{table_cell(c.get('in_flight'))} in flight of {table_cell(c.get('limit'))} allowed"
                if c
                else "no limit"
            ),
        )
    if "budget" in me and (me["budget"] is None or isinstance(me["budget"], dict)):
        done.add("budget")
        b = me["budget"]
        if b and b.get("daily_usd") is not None:
            text = (
                f"{_usd(b.get('spent_usd'))} spent of {_usd(b.get('daily_usd'))} today, "
                f"{_usd(b.get('remaining_usd'))} left"
            )
            if b.get("resets_at"):
                text += f"; resets {utc_text(b['resets_at'])}"
        else:
            text = "none set"
        _item(lines, f"- **budget**: {text}")
    if "prompt_cache" in me and (
        me["prompt_cache"] is None or isinstance(me["prompt_cache"], dict)
    ):
        done.add("prompt_cache")
        _item(lines, f"- **prompt cache today**: {prompt_cache_text(me['prompt_cache'])}")
    if "window" in me and (me["window"] is None or isinstance(me["window"], dict)):
        done.add("window")
        w = me["window"]
        if not w:
            _item(lines, "- **policy window**: none in force")
        else:
            mode = str(w.get("mode") or "")
            lines += [
                "",
                f"**Policy window in force**: {table_cell(w.get('name'))} "
                f"({table_cell(mode)}: {_WINDOW_MODES.get(mode, 'its own rules')})",
                "",
            ]
            if w.get("message"):
                lines.append(f"- **message**: {table_cell(w['message'])}")
            if w.get("starts_at"):
                lines.append(f"- **since**: {utc_text(w['starts_at'])}")
            until = window_until(w)
            lines.append(
                f"- **until**: {until.removeprefix('until ')}"
                if until
                else "- **until**: no end set"
            )
    lines += _course_lines(me, done)
    if "context_policy" in me:
        done.add("context_policy")
        cp = me["context_policy"]
        lines += ["", "**Context policy** (what may leave the kernel)", ""]
        if isinstance(cp, dict) and cp:
            lines += markdown_table(["setting", "value"], [[k, v] for k, v in cp.items()])
        else:
            lines.append("- none set by the admin")
    tail: list[str] = []
    for key, val in me.items():
        if key not in done:
            tail += _generic(key, val)
    if tail:
        lines += ["", "**Also reported by the proxy**", "", *tail]
    return lines


def _course_lines(me: dict[str, Any], done: set[str]) -> list[str]:
    """The course's rules (issue 75): the tutor mode in force and the course log's notice, in
    plain words; each key marked done when it has the shape this kernel knows."""
    lines: list[str] = []
    tutor, log = me.get("tutor"), me.get("course_log")
    if "tutor" in me and (tutor is None or isinstance(tutor, dict)):
        done.add("tutor")
        if not tutor:
            lines += ["", "- **mode**: normal (no tutor window in force)"]
        else:
            until = window_until(tutor)
            lines += [
                "",
                f"**Mode: tutor** (window {table_cell(tutor.get('window')) or '?'}"
                + (f", {until}" if until else "")
                + "): hints, questions and partial code, not whole solutions",
                "",
            ]
            if tutor.get("message"):
                lines.append(f"- **message**: {table_cell(tutor['message'])}")
            lines.append(f"- **agent tools**: {'on' if tutor.get('agent') else 'off'}")
            shown = "names only" if tutor.get("completions") else "off"
            lines.append(f"- **inline completions**: {shown}")
            lines.append("- **%%sql_ai**: shows the approach and a query with blanks; runs nothing")
    if "course_log" in me and (log is None or isinstance(log, dict)):
        done.add("course_log")
        if not log:
            _item(lines, "- **course log**: off (no course staff reads your conversations)")
        else:
            days = log.get("retention_days")
            notice = table_cell(log.get("notice")) or "Your course staff can read your chats."
            lines += [
                "",
                f"**Course log**: {notice}",
                "",
                f"- **course**: {table_cell(log.get('group'))}; read by "
                f"{table_cell(log.get('instructors')) or 'your course staff'}"
                + (f"; kept {table_cell(days)} days" if days else ""),
            ]
    return lines


def prompt_cache_text(cache: dict[str, Any] | None) -> str:
    """What the providers' prompt caches did: the share of the prompts read from them and the
    dollars that saved against the input price (each model's too, when several)."""
    if not cache or not cache.get("read_tokens"):
        return "nothing read from a provider's cache" if cache else "not known (no usage log)"

    def one(c: dict[str, Any]) -> str:
        ratio = c.get("hit_ratio")
        share = f"{ratio:.0%} of prompt tokens" if isinstance(ratio, int | float) else "some"
        return f"{share} read from it, {_usd(c.get('saved_usd'))} saved"

    text = one(cache)
    models = [
        m for m in cache.get("by_model") or [] if isinstance(m, dict) and m.get("read_tokens")
    ]
    if len(models) > 1:
        text += " (" + "; ".join(f"{table_cell(m.get('model'))}: {one(m)}" for m in models) + ")"
    return text


def cost_markdown(cost: dict[str, Any], path: str, labels: dict[str, str] | None = None) -> str:
    """``GET me/cost`` for the notebook at `path`: today and this week (requests, tokens, cost)
    and the dearest cells this week. `labels`: a cell id's first line, when the notebook's file
    could be read."""
    stored = cost.get("notebook")
    head = f"**Spend in this notebook**: {table_cell(path)}"
    if stored and stored != path:
        head += f" (the proxy keeps it as {table_cell(stored)})"
    rows = []
    for key, label in (
        ("today", "today (since 00:00 UTC)"),
        ("week", "this week (since Monday 00:00 UTC)"),
    ):
        got = cost.get(key)
        part = got if isinstance(got, dict) else {}
        found = part.get("prompt_cache")
        cache: dict[str, Any] = found if isinstance(found, dict) else {}
        ratio = cache.get("hit_ratio")
        rows.append(
            [
                label,
                part.get("requests", 0),
                part.get("prompt_tokens", 0),
                part.get("completion_tokens", 0),
                _usd(part.get("cost_usd", 0)),
                f"{ratio:.0%}" if isinstance(ratio, int | float) else "",
                _usd(cache.get("saved_usd", 0)),
            ]
        )
    headers = ["", "requests", "prompt tokens", "completion tokens", "cost"]
    lines = [head, "", *markdown_table([*headers, "from the prompt cache", "saved"], rows)]
    cells = [c for c in cost.get("cells") or [] if isinstance(c, dict)][:20]
    lines += ["", "**Dearest cells this week**", ""]
    if cells:
        labels = labels or {}
        lines += markdown_table(
            ["cell", "starts with", "requests", "cost"],
            [
                [
                    c.get("cell"),
                    labels.get(str(c.get("cell")), ""),
                    c.get("requests"),
                    _usd(c.get("cost_usd")),
                ]
                for c in cells
            ],
        )
    else:
        lines.append("- no request of a known cell this week")
    return "\n".join(lines)


def refusal_markdown(e: ProxyError) -> str | None:
    """A refusal the admin's policy decided, as a note for the cell: a window in force (its
    message, and its end in UTC and the admin's time zone) or a model not allowed (the models
    that are). None for any other error."""
    if not e.refused_by_policy:
        return None
    allowed = e.allowed_models
    if e.code == "policy_window":
        w = e.window or {}
        mode = str(w.get("mode") or "")
        lines = [
            f"**The assistant is not available now**: policy window {table_cell(w.get('name')) or '?'}"
            + (
                f" ({table_cell(mode)}: {_WINDOW_MODES.get(mode, 'its own rules')})" if mode else ""
            ),
            "",
            f"> {table_cell(w.get('message') or e.message)}",
            "",
        ]
        until = window_until(w)
        lines.append(f"It ends {until.removeprefix('until ')}." if until else "It has no end set.")
        if mode != "off" and allowed is not None:
            lines += ["", f"Models you may use meanwhile: {table_cell(allowed) or 'none'}"]
        return "\n".join(lines)
    lines = ["**This model is not allowed for you**", "", f"> {table_cell(e.message)}", ""]
    if allowed is not None:
        lines.append(
            f"Models you may use: {table_cell(allowed) or 'none'}. Name one with "
            "`--model`, or set `%config RSQLMagic.model = '...'`."
        )
    return "\n".join(lines)
