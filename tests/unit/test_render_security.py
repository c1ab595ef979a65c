"""Model text is hostile: every piece of HTML or Markdown built from it is made safe.

Each payload goes through every way an answer is shown: the Markdown bundle of ``%%ask``
(checked by rendering it with a real Markdown parser, without our HTML sanitizer, so the
Markdown layer is proved on its own), the HTML bundle, the text bundle, and the chat panel
(answers, errors, footers, SQL results), plus the sanitizer's own functions. The real-browser
proof (JupyterLab and Chromium) is ``tests/e2e/test_render_browser.py``.
"""

from __future__ import annotations

import re
import sqlite3
from html import unescape
from html.parser import HTMLParser
from typing import Any

import markdown
import pytest

from rsql_magic.client import ChatResult
from rsql_magic.magics.ask import render_me
from rsql_magic.render import error_bundle, markdown_bundle, markdown_to_html, mimebundle
from rsql_magic.sanitize import (
    IMAGE_MARK,
    clean_html,
    escape_markdown,
    plain_text,
    safe_markdown,
)
from tests.helpers import FAKE_KEY, require
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.kernels import chat_panel_for
from tests.helpers.payloads import EVIL, PAYLOADS, pwn

# tags and attributes that can run script, fetch, submit or restyle the page
BAD_TAGS = {
    "script",
    "iframe",
    "frame",
    "form",
    "style",
    "img",
    "svg",
    "math",
    "object",
    "embed",
    "link",
    "meta",
    "base",
    "input",
    "button",
    "video",
    "audio",
    "source",
    "details",
    "textarea",
    "select",
    "template",
}
URL_ATTRS = {
    "src",
    "srcset",
    "background",
    "poster",
    "action",
    "formaction",
    "data",
    "srcdoc",
    "xlink:href",
    "ping",
    "lowsrc",
    "dynsrc",
}


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))

    handle_startendtag = handle_starttag


def elements(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    scan = _Scan()
    scan.feed(html)
    scan.close()
    return scan.elements


def dangers(html: str) -> list[str]:
    """What in ``html`` could run script, load something or leave the output's box."""
    found = []
    for tag, attrs in elements(html):
        if tag in BAD_TAGS:
            found.append(f"<{tag}>")
        for name, value in attrs:
            v = (value or "").strip().lower()
            if name.startswith("on"):
                found.append(f"{tag} {name}")
            elif name in URL_ATTRS:
                found.append(f"{tag} {name}={value}")
            elif name == "href" and not v.startswith(("http://", "https://", "mailto:")):
                found.append(f"{tag} href={value}")
            elif name == "style" and any(w in v for w in ("url(", "position", "expression")):
                found.append(f"{tag} style={value}")
            elif name in ("id", "name"):  # DOM clobbering of the page's globals
                found.append(f"{tag} {name}={value}")
    return found


def links(html: str) -> list[dict[str, str | None]]:
    return [dict(attrs) for tag, attrs in elements(html) if tag == "a"]


def as_html(md: str) -> str:
    """Markdown rendered by a real parser with raw HTML on and no sanitizer after it."""
    return markdown.markdown(md, extensions=["fenced_code", "tables"])


def as_html_commonmark(md: str) -> str:
    """The same with a CommonMark parser (mistune, as nbconvert's HTML export uses it)."""
    require("mistune", reason="nbconvert's Markdown parser")
    import mistune

    return mistune.create_markdown(escape=False, plugins=["table", "strikethrough", "url"])(md)


def result(**kw: Any) -> ChatResult:
    base: dict[str, Any] = dict(
        text="",
        model="fake-small",
        usage={"prompt_tokens": 1, "completion_tokens": 2},
        cost_usd=0.0001,
        cache_hit=False,
        latency_s=0.5,
        upstream="a1",
        request_id="r1",
    )
    base.update(kw)
    return ChatResult(**base)


ALL = "\n\n".join(PAYLOADS.values())


# -- each payload through each %%ask render mode ------------------------------------------


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_markdown_mode_payload(name: str) -> None:
    text = f"Here is the answer.\n\n{PAYLOADS[name]}\n\nThe end."
    md = mimebundle(text, result(text=text))["text/markdown"]
    html = as_html(md)
    assert dangers(html) == [], (md, html)
    assert dangers(as_html_commonmark(md)) == [], (md, as_html_commonmark(md))
    # no raw HTML left in the Markdown outside code blocks, but our own inline <code>
    prose = re.sub(r"^(`{3,})[^\n]*\n.*?^\1$", "", md, flags=re.M | re.S)
    assert prose.replace("<code>", "").replace("</code>", "").count("<") == 0, md
    assert "javascript:" not in " ".join(str(a.get("href")) for a in links(html))
    assert "Here is the answer." in html and "The end." in html


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_html_mode_payload(name: str) -> None:
    text = f"Here is the answer.\n\n{PAYLOADS[name]}\n\nThe end."
    html = mimebundle(text, result(text=text), mode="html")["text/html"]
    assert dangers(html) == [], html
    for a in links(html):
        assert a.get("rel") == "noopener noreferrer" and a.get("target") == "_blank", a
    assert "Here is the answer." in html and "The end." in html


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_clean_html_payload(name: str) -> None:
    """The HTML sanitizer alone, on the raw payload (no Markdown step before it)."""
    html = clean_html(markdown.markdown(PAYLOADS[name]))
    assert dangers(html) == [], html


def test_text_mode_has_no_control_characters() -> None:
    text = "ok\x1b]0;title\x07\x1b[8mhidden\x1b[0m\r\nnext\x9b31m\x00"
    bundle = mimebundle(text, result(text=text), mode="text")
    assert set(bundle) == {"text/plain"}
    assert bundle["text/plain"].startswith("ok]0;title[8mhidden[0m\nnext31m")
    assert not any(
        ord(c) < 32 and c not in "\n\t" or 0x7F <= ord(c) <= 0x9F for c in bundle["text/plain"]
    )


def test_images_become_links_not_loads() -> None:
    md = safe_markdown(f"see ![chart]({EVIL}/md.png?q=secret) and ![ref][r]\n\n[r]: {EVIL}/r.png")
    assert f"[{IMAGE_MARK}chart]({EVIL}/md.png?q=secret)" in md and "![" not in md
    html = markdown_to_html(f"see ![chart]({EVIL}/md.png?q=secret)")
    assert links(html) == [
        {"href": f"{EVIL}/md.png?q=secret", "target": "_blank", "rel": "noopener noreferrer"}
    ]
    assert "<img" not in html
    # raw <img> in HTML handed to the sanitizer: a link to the image, not the image
    html = clean_html(f'<p><img src="{EVIL}/img.png?q=1&amp;r=2" alt="plot" onerror="x()"></p>')
    assert html == (
        f'<p><a href="{EVIL}/img.png?q=1&amp;r=2" target="_blank" '
        f'rel="noopener noreferrer">{IMAGE_MARK}plot</a></p>'
    )
    # data: and relative images: no link (nothing of theirs is kept but the text)
    assert clean_html('<img src="data:image/png;base64,AAAA" alt="d">') == f"{IMAGE_MARK}d"
    assert clean_html('<img src="/files/secret.png">') == f"{IMAGE_MARK}image"


def test_links_kept_only_for_web_and_mail() -> None:
    md = safe_markdown(
        "[ok](https://example.org/a?b=1&c=2) [mail](mailto:a@example.org) "
        "[rel](/files/x) [js](javascript:alert(1)) [js2](JaVaScRiPt:alert(1)) "
        "[sp]( javascript:alert(1)) [vb](vbscript:x) [f](file:///etc/passwd)"
    )
    html = as_html(md)
    assert [a["href"] for a in links(html)] == [
        "https://example.org/a?b=1&c=2",
        "mailto:a@example.org",
    ]
    assert "[js](javascript:alert(1))" in unescape(html)  # shown as text: the user sees it
    html = markdown_to_html("[ok](https://example.org/) [js](javascript:alert(1))")
    assert links(html) == [
        {"href": "https://example.org/", "target": "_blank", "rel": "noopener noreferrer"}
    ]
    out = clean_html(
        '<a href="javascript:alert(1)">a</a><a href=" data:text/html,x">b</a>'
        '<a href="/api/kernels">c</a><a href="https://x.example/" rel="opener">d</a>'
    )
    assert [a.get("href") for a in links(out)] == [None, None, None, "https://x.example/"]
    assert all(a["rel"] == "noopener noreferrer" for a in links(out))


def test_code_survives_and_is_highlighted() -> None:
    answer = (
        "In R, `x <- c(1, 2)` assigns; `a & b` and `[x](y)` are code too.\n\n"
        "```r\nx <- c(1, 2)\nif (x[1] < 2 && TRUE) print('<b>&amp;</b>')\n```\n\n"
        "Use `groupby`:\n\n1. first\n   ```python\n   df[df.a < 3]\n   ```\n"
    )
    md = safe_markdown(answer)
    # fenced code is kept verbatim (the frontend highlights it), at column 0
    assert "```r\nx <- c(1, 2)\nif (x[1] < 2 && TRUE) print('<b>&amp;</b>')\n```" in md
    assert "```python\ndf[df.a < 3]\n```" in md
    assert "Use `groupby`:" in md  # harmless inline code stays as written
    html = as_html(md)
    codes = [unescape(c) for c in re.findall(r"<code[^>]*>(.*?)</code>", html, re.S)]
    assert codes[:3] == ["x <- c(1, 2)", "a & b", "[x](y)"] and links(html) == []
    assert codes[3] == "x <- c(1, 2)\nif (x[1] < 2 && TRUE) print('<b>&amp;</b>')\n"
    assert codes[4] == "groupby" and codes[5] == "df[df.a < 3]\n"
    highlighted = markdown_to_html(answer)
    assert "style=" in highlighted and "<pre" in highlighted and dangers(highlighted) == []
    text = unescape(re.sub(r"<[^>]+>", "", highlighted))
    assert "print('<b>&amp;</b>')" in text and "x <- c(1, 2) assigns" in text


def test_fence_in_answer_cannot_close_ours() -> None:
    code = "print('```')\n````\n<img src=x onerror=alert(1)>"
    md = safe_markdown(f"~~~python\n{code}\n~~~\nafter <b>")
    fence = md.split("python", 1)[0]
    assert fence == "`````" and f"{fence}python\n{code}\n{fence}" in md
    assert md.endswith("after &lt;b>")
    assert dangers(as_html(md)) == []


def test_style_filter() -> None:
    keep = '<span style="color: #008000; font-weight: bold">if</span>'
    assert clean_html(keep) == keep
    out = clean_html(
        '<div style="color:red; position:fixed; top:0; background:url(https://e/x);'
        " background-image:url(https://e/y); margin:-500px; padding: 4px 8px;"
        ' border: 1px solid #FF0000; color: var(--x); font-size: 85%">x</div>'
    )
    assert out == (
        '<div style="color: red; padding: 4px 8px; border: 1px solid #FF0000; '
        'font-size: 85%">x</div>'
    )
    assert clean_html('<p style="background:rgba(100,130,200,.12)">q</p>') == (
        '<p style="background: rgba(100,130,200,.12)">q</p>'
    )
    # classes: ours, the highlighter's and pandas' only (not the page's own UI classes)
    assert clean_html('<div class="jp-Dialog rsql-md codehilite lm-Widget">x</div>') == (
        '<div class="rsql-md codehilite">x</div>'
    )
    assert clean_html('<p id="__pwned" name="x">clobber</p>') == "<p>clobber</p>"


def test_footer_and_errors_are_text() -> None:
    hostile = f"<img src=x onerror=alert(1)> [x](javascript:alert(1)) ![i]({EVIL}/f.png) *b* $x$"
    res = result(text="fine", model=hostile, upstream="<script>alert(1)</script>")
    md = mimebundle("fine", res)["text/markdown"]
    assert dangers(as_html(md)) == [] and links(as_html(md)) == []
    assert "<" not in md and IMAGE_MARK not in md  # all of it text: not even a link
    html = mimebundle("fine", res, mode="html")["text/html"]
    assert dangers(html) == [] and "&lt;img src=x onerror=alert(1)&gt;" in html
    bundle = error_bundle(f"partial {PAYLOADS['img-onerror']}", f"rsql: {hostile}")
    assert dangers(as_html(bundle["text/markdown"])) == []
    assert links(as_html(bundle["text/markdown"])) == []
    assert bundle["text/markdown"].endswith("**") and "partial" in bundle["text/markdown"]
    assert escape_markdown("a_b*c [d](e) <f> & `g` $h$ ~i~ |j|\nk") == (
        "a\\_b\\*c \\[d\\](e) &lt;f> &amp; \\`g\\` \\$h\\$ \\~i\\~ \\|j\\| k"
    )
    assert plain_text("a\x1b[31mb\r\nc\x07") == "a[31mb\nc"


def test_status_and_next_cell_markdown() -> None:
    me = {
        "user": "<img src=x onerror=alert(1)>",
        "groups": ["[g](javascript:alert(1))"],
        "limits": [{"limit": "<script>x</script>", "remaining": "![i](https://evil.example/l)"}],
    }
    md = markdown_bundle("\n".join(render_me(me)))["text/markdown"]
    html = as_html(md)
    assert dangers(html) == [] and links(html) == [{"href": "https://evil.example/l"}]
    assert IMAGE_MARK in html  # the image is that link, not loaded
    code = "SELECT '<img src=x onerror=alert(1)>' AS x  -- ```\n"
    bundle = markdown_bundle("**Next cell**:\n\n```sql\n" + code + "```")
    assert code.rstrip("\n") in bundle["text/markdown"]  # verbatim inside the code block
    assert dangers(as_html(bundle["text/markdown"])) == []


# -- the chat panel ----------------------------------------------------------------------


def widget_html(panel: Any) -> list[str]:
    """Every HTML value the panel's widgets hold, recursively."""
    import ipywidgets as W

    out: list[str] = []

    def walk(w: Any) -> None:
        if isinstance(w, W.HTML):
            out.append(w.value)
        for child in getattr(w, "children", ()):
            walk(child)

    walk(panel.widget)
    return out


def test_chat_answer_footer_and_status(shell: Any, fresh_provider: FakeProvider) -> None:
    p = chat_panel_for(shell, fresh_provider)
    fresh_provider.script(f"Answer start.\n\n{ALL}\n\nAnswer end.")
    assert p.send(f'question <img src=x onerror="{pwn("question")}">') and p.wait(30)
    turn = p.turns[-1]
    assert turn.state == "done"
    html = "".join(widget_html(p))
    assert dangers(html) == [], dangers(html)
    assert "Answer start." in turn.answer_html.value and "Answer end." in turn.answer_html.value
    assert f'href="{EVIL}/md.png?q=secret"' in turn.answer_html.value  # the image, as a link
    assert "fake-small" in turn.footer.value
    # the user's own question is shown as text too (the answer's payloads show as text as well:
    # the question's is told apart by its words and its tag)
    assert "question &lt;img src=x onerror=" in html and ".push('question')" in html


def test_chat_error_text_and_partial_answer(shell: Any, fresh_provider: FakeProvider) -> None:
    # the provider's error names the (hostile) model: the panel shows it as text
    p = chat_panel_for(shell, fresh_provider, model=f'<img src=x onerror="{pwn("model")}">')
    assert p.send("anything?") and p.wait(30)
    turn = p.turns[-1]
    assert turn.state == "error" and "does not exist" in turn.answer_html.value
    assert "&lt;img src=x onerror=" in turn.answer_html.value
    # an answer that dies half-way: what arrived is shown, sanitized, with the error
    p2 = chat_panel_for(shell, fresh_provider)
    fresh_provider.set_fault("a1", "die_mid_stream", count=1)
    fresh_provider.script(" ".join([PAYLOADS["img-onerror"], PAYLOADS["md-js-link"]] * 20))
    assert p2.send("again?") and p2.wait(30)
    assert p2.turns[-1].state == "error"
    # what arrived before the cut is there, as text
    partial = p2.turns[-1].answer_html.value
    assert "md js link" in partial and "&lt;img src=x onerror=" in partial, partial
    for h in (p.status.value, p2.status.value, *widget_html(p), *widget_html(p2)):
        assert dangers(h) == [], h


def test_chat_sql_result_frame_is_escaped(shell: Any, fresh_provider: FakeProvider) -> None:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    col = '"<img src=x onerror=alert(1)>"'
    conn.execute(f"CREATE TABLE t (id INTEGER, {col} TEXT)")
    conn.execute(
        "INSERT INTO t VALUES (1, ?), (2, ?)",
        (f"<script>{pwn('cell')}</script>", f"<a href='javascript:{pwn('cell')}'>x</a>"),
    )
    shell.user_ns["conn"] = conn
    p = chat_panel_for(shell, fresh_provider, sql="conn")
    fresh_provider.script(f"Rows:\n\n```sql\nSELECT id, {col} FROM t ORDER BY id\n```\n")
    assert p.send("show t") and p.wait(30)
    frame = p.run_sql()
    assert frame is not None and len(frame) == 2
    out = p.turns[-1].extra.children[-1].value
    assert dangers(out) == [], out
    assert "&lt;script&gt;" in out and "<table" in out and "dataframe" in out


# -- %%sql_ai: the explanation is model text, the frame is data -----------------------------


def test_sql_ai_explanation_and_frame(
    shell: Any, fresh_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.utils.capture import capture_output

    monkeypatch.setenv("RSQL_PROXY_URL", f"http://127.0.0.1:{fresh_provider.port}/")
    monkeypatch.setenv("RSQL_PROXY_TOKEN", FAKE_KEY)
    monkeypatch.setenv("RSQL_MODEL", "fake-small")
    monkeypatch.delenv("RSQL_BATCH", raising=False)
    shell.run_line_magic("load_ext", "rsql_magic")
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES (?)", (f'<img src=x onerror="{pwn("frame")}">',))
    shell.user_ns["conn"] = conn
    fresh_provider.script(f"```sql\nSELECT v FROM t\n```\n\n{ALL}")
    with capture_output() as cap:
        result = shell.run_cell("%%sql_ai conn --explain\nshow v")
    assert result.error_in_exec is None, result.error_in_exec
    md = [o.data["text/markdown"] for o in cap.outputs if "text/markdown" in o.data]
    assert md and md[0].startswith("```sql\nSELECT")
    assert "onerror" in md[0] and dangers(as_html(md[0])) == []
    frames = [o.data["text/html"] for o in cap.outputs if "text/html" in o.data]
    assert len(frames) == 1
    # pandas' own table (escaped by pandas), after its constant <style scoped> block
    table = re.sub(r"<style scoped>.*?</style>", "", frames[0], count=1, flags=re.S)
    assert "&lt;img src=x onerror=" in table and dangers(table) == []
