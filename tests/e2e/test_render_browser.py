"""Hostile answers in a real browser: JupyterLab 4 on loopback, headless Chromium.

One lab, one page. The fake provider answers with every payload of
``tests.helpers.payloads.PAYLOADS`` (each would set ``window.__pwned`` and the page title if it
ran, or fetch from evil.example); the notebook shows them through ``%%ask`` in markdown and
html mode and through the chat panel. Every request the page makes is recorded (and only
loopback ones are let through). The first cell displays a few of the same payloads *without*
our sanitizer, as canaries: they must run and fetch, which proves the checks can see it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nbformat
import pytest

from tests.helpers import REPO, require
from tests.helpers.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    open_notebook,
    run_cell,
    start_lab,
    stop,
)
from tests.helpers.fake_provider import FakeProvider
from tests.helpers.payloads import PAYLOADS

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def answer(where: str) -> str:
    return f"Answer for {where}.\n\n" + "\n\n".join(PAYLOADS.values()) + f"\n\nEND-{where}"


CANARY = """\
%load_ext rsql_magic
import ipywidgets as W
from IPython.display import HTML, Markdown, display
# unsanitized, on purpose: these must run and fetch, or the checks below could not see it
display(HTML('<img src=x onerror="window.__canary_html=1">'
             '<img src="https://canary.invalid/html.png">'))
display(Markdown('<img src=x onerror="window.__canary_md=1">'))
display(W.HTML('<img src=x onerror="window.__canary_widget=1">'))"""

CELLS = [
    CANARY,
    "%%ask\nShow the markdown answer",
    "%config RSQLMagic.render_mode = 'html'",
    "%%ask\nShow the html answer",
    "%ask_chat",
]

# everything an output of ours may contain that can run, fetch or submit
SCAN = """(selector) => {
  const bad = new Set(['SCRIPT','IFRAME','FRAME','FORM','STYLE','IMG','SVG','OBJECT','EMBED',
                       'LINK','META','BASE','INPUT','BUTTON','VIDEO','AUDIO','SOURCE','DETAILS',
                       'TEXTAREA','TEMPLATE']);
  const urlAttrs = ['src','srcset','background','poster','action','formaction','data','srcdoc'];
  const found = [];
  for (const root of document.querySelectorAll(selector)) {
    for (const el of root.querySelectorAll('*')) {
      if (bad.has(el.tagName)) found.push(el.tagName);
      for (const a of el.attributes) {
        if (a.name.startsWith('on') || urlAttrs.includes(a.name)) found.push(el.tagName + ' ' + a.name);
        // MathJax lays out its own elements (mjx-*) with position; it is checked for the rest
        if (a.name === 'style' && (/url\\(/i.test(a.value)
            || (/position/i.test(a.value) && !el.tagName.startsWith('MJX-')))) {
          found.push('style ' + a.value);
        }
      }
      if (el.tagName === 'A' && el.hasAttribute('href')
          && !['http:', 'https:', 'mailto:'].includes(el.protocol)) found.push('href ' + el.href);
    }
  }
  return found;
}"""


def output_of(page: Any, marker: str) -> str:
    """The selector of the output area holding ``marker`` (waits for its final form)."""
    page.wait_for_function(
        "(m) => [...document.querySelectorAll('.jp-OutputArea-output')].some("
        "  o => o.textContent.includes('END-' + m) && o.textContent.includes('cache'))",
        arg=marker,
        timeout=60_000,
    )
    return page.evaluate(
        "(m) => { const all = [...document.querySelectorAll('.jp-OutputArea-output')];"
        " const o = all.find(o => o.textContent.includes('END-' + m));"
        " o.setAttribute('data-rsql-test', m); return `[data-rsql-test='${m}']`; }",
        marker,
    )


def test_hostile_answers_do_nothing_in_jupyterlab(
    fresh_provider: FakeProvider, tmp_path: Path
) -> None:
    require("playwright", reason="pip install playwright (driving Debian's chromium; no download)")
    require("chromium", binary=True, reason="apt install chromium")
    from playwright.sync_api import sync_playwright

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    proc, url, token, root = start_lab(tmp_path, fresh_provider)
    nbformat.write(nb, root / "hostile.ipynb")
    fresh_provider.script(answer("md"), answer("html"), answer("chat"))
    ARTIFACTS.mkdir(exist_ok=True)
    requests: list[str] = []
    dialogs: list[str] = []
    popups: list[str] = []

    def route(r: Any) -> None:
        requests.append(r.request.url)
        if urlsplit(r.request.url).hostname in LOOPBACK:
            r.continue_()
        else:  # nothing leaves the machine; the attempt is what the test looks for
            r.abort()

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
            )
            browser.route("**/*", route)
            browser.on("request", lambda req: requests.append(req.url))
            browser.on("page", lambda p: popups.append(p.url))
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            try:
                open_notebook(page, f"{url}lab/tree/hostile.ipynb?token={token}")
                title = page.title()
                for index in range(len(CELLS)):  # each in turn, to its end
                    run_cell(page, index)

                md_out = output_of(page, "md")
                html_out = output_of(page, "html")
                panel = page.wait_for_selector(".rsql-chat", timeout=60_000)
                box = panel.wait_for_selector("input[placeholder^='Ask about your data']")
                box.fill("Show the chat answer")
                box.press("Enter")
                page.wait_for_function(
                    "() => { const a = document.querySelector('.rsql-chat .rsql-answer');"
                    " return a && a.textContent.includes('END-chat') && !a.textContent.includes('▍'); }",
                    timeout=60_000,
                )
                page.wait_for_function(  # the footer, set after the final answer
                    "() => document.querySelector('.rsql-chat .rsql-answer')"
                    ".nextElementSibling.textContent.includes('cache')",
                    timeout=15_000,
                )
                time.sleep(2)  # late handlers: image errors, typesetting, toggles

                # the canaries ran and fetched: this page runs what is not sanitized
                canaries = page.evaluate(
                    "() => [window.__canary_html, window.__canary_md, window.__canary_widget]"
                )
                assert canaries == [1, 1, 1], canaries
                assert any("canary.invalid" in u for u in requests), requests

                # nothing of the answers ran
                assert page.evaluate("() => window.__pwned === undefined"), page.evaluate(
                    "() => String(window.__pwned)"
                )
                assert page.title() == title != "pwned"
                assert dialogs == [] and popups == []
                # nothing was fetched but from loopback (and the canary's own)
                outside = [
                    u
                    for u in requests
                    if urlsplit(u).scheme in ("http", "https", "ws", "wss")
                    and urlsplit(u).hostname not in LOOPBACK
                    and urlsplit(u).hostname != "canary.invalid"
                ]
                assert outside == [], outside
                assert not any("evil.example" in u for u in requests)

                # and nothing that could run or fetch is in the outputs at all
                answers = {
                    "md": md_out,
                    "html": html_out,
                    "chat": ".rsql-chat .widget-html-content",
                }
                for where, sel in answers.items():
                    assert page.evaluate(SCAN, sel) == [], (where, page.evaluate(SCAN, sel))
                # the answers are there, and readable: the image is a link, the raw HTML text
                for where, sel in answers.items():
                    # textContent: a cell scrolled out of view is not laid out (innerText "")
                    text = page.eval_on_selector(
                        sel if where != "chat" else ".rsql-chat .rsql-answer", "e => e.textContent"
                    )
                    assert f"Answer for {where}." in text and f"END-{where}" in text, text
                    assert "<script>" in text and "onerror=" in text, text  # shown, as text
                    hrefs = page.eval_on_selector_all(
                        f"{sel} a", "els => els.map(a => [a.href, a.rel])"
                    )
                    img = [h for h in hrefs if h[0] == "https://evil.example/md.png?q=secret"]
                    assert img and "noopener" in img[0][1], hrefs
                page.locator(md_out).screenshot(path=str(ARTIFACTS / "hostile-markdown.png"))
                page.locator(html_out).screenshot(path=str(ARTIFACTS / "hostile-html.png"))
                panel.screenshot(path=str(ARTIFACTS / "hostile-chat.png"))
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "hostile-failure.png"), full_page=True)
                raise
            finally:
                browser.close()
    finally:
        stop(proc)
