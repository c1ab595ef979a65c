"""The documentation site builds with every warning an error, and every internal link and
anchor of it leads somewhere.

The build is what ``make docs`` runs, plus ``-n`` (every cross-reference checked): MyST checks
links between pages and to their headings (``myst_heading_anchors``), Sphinx the ``confval``
links to settings; the demo notebook is executed from its recorded answers (no proxy, key or
model). Then the built HTML is read again, and every link to a page of the site, and to an
``id`` in it, must resolve: this also covers anchors of generated pages and of the theme.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.helpers import REPO, child_env, require

pytestmark = pytest.mark.slow

# measured about 20 s on 2 cores, a third of it the demo's kernel; -j auto was slower there
BUILD_SECONDS = 300


class _Links(HTMLParser):
    """The ids of one HTML page and the targets of its links."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for key in ("id", "name"):
            if found.get(key) and (key == "id" or tag == "a"):
                self.ids.add(str(found[key]))
        if tag == "a" and found.get("href"):
            self.hrefs.append(str(found["href"]))


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the demo page runs a kernel with rpy2 (its R section)
    require("R", binary=True, reason="the demo page's R cells")
    require("rpy2", reason="the demo page's R cells")
    out = tmp_path_factory.mktemp("docs") / "html"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-n",
            "-q",
            "-b",
            "html",
            str(REPO / "docs"),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_SECONDS,
        env=child_env(),
        cwd=REPO,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, (
        f"sphinx-build failed after {took:.0f} s:\n{proc.stderr[-8000:]}\n{proc.stdout[-2000:]}"
    )
    print(f"docs built in {took:.1f} s")
    return out


def test_site_builds_without_warnings(site: Path) -> None:
    for page in (
        "index.html",
        "getting-started.html",
        "users/demo.html",
        "admins/settings-reference.html",
        "users/settings.html",
    ):
        assert (site / page).is_file(), page


def test_demo_page_is_replayed(site: Path) -> None:
    text = (site / "users" / "demo.html").read_text(encoding="utf-8")
    # every %%ask of the demo answered from the recorded file: nothing reached a proxy
    assert text.count("no request sent") >= 5, "the demo's answers were not replayed"
    assert "ReplayMissing" not in text


def test_settings_pages_list_every_setting(site: Path) -> None:
    """Every setting of the four configurables is on its built page: a class's own and those
    its feature base classes give it (RSQLProxy's inline completions, monitoring, ...)."""
    from jupyter_server_ext.config.proxy import RSQLProxy
    from jupyter_server_ext.service import RSQLProxyService
    from rsql_magic.magics.ask import RSQLMagic
    from rsql_magic.magics.sql_ai import SqlAIMagics

    proxy = _parse(site / "admins" / "settings-reference.html").ids
    magic = _parse(site / "users" / "settings.html").ids
    ours = ("jupyter_server_ext", "rsql_magic", "rsql_sql", "rsql_common")
    for cls, page in (
        (RSQLProxy, proxy),
        (RSQLProxyService, proxy),
        (RSQLMagic, magic),
        (SqlAIMagics, magic),
    ):
        names = [
            name
            for klass in cls.__mro__
            if klass.__module__.startswith(ours)
            for name, trait in vars(klass).items()
            if getattr(trait, "metadata", {}).get("config")
        ]
        assert names, cls
        for name in names:
            assert f"confval-{cls.__name__}.{name}" in page, (cls.__name__, name)
    assert "confval-RSQLProxy.inline_completions" in proxy  # a base class's, shown


def test_every_internal_link_and_anchor_resolves(site: Path) -> None:
    pages = {p: _parse(p) for p in site.rglob("*.html")}
    broken: list[str] = []
    for page, links in pages.items():
        for href in links.hrefs:
            url = urllib.parse.urlsplit(href)
            if url.scheme or url.netloc or href.startswith("mailto:"):
                continue  # the site links nowhere else but the examples' hosts
            target = (page.parent / urllib.parse.unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(site)}: {href}"
            if not target.exists():
                broken.append(f"{where} (no such file)")
            elif url.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if urllib.parse.unquote(url.fragment) not in ids:
                    broken.append(f"{where} (no such anchor)")
    assert broken == [], "broken links in the built site:\n" + "\n".join(broken)


HOSTILE_MARKDOWN = (
    "```{raw} html\n<script>alert('directive')</script>\n```\n\n"
    "<script>alert('markdown')</script>\n\n"
    '<img src="x" onerror="alert(1)"> [click](javascript:alert(2))\n'
)
HOSTILE_HTML = '<b>kept</b><script>alert("html")</script><a href="javascript:alert(3)">x</a>'


def test_a_hostile_answer_in_a_page_runs_no_script(tmp_path: Path) -> None:
    """An answer recorded into the demo (the model's text) reaches the site only as sanitized
    HTML: a MyST directive in it is not run, and raw HTML in an output, Markdown or text/html,
    goes through the kernel's sanitizer, with the site's own configuration and extensions."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'docs')!r})\n"
        "from conf import *  # noqa: F403 (the site's own configuration)\n"
        'nb_execution_mode = "off"  # the stored outputs below are the attack\n'
    )
    outputs = [
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"text/markdown": HOSTILE_MARKDOWN},
        },
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": HOSTILE_HTML}},
    ]
    nb = {
        "cells": [
            {"cell_type": "markdown", "id": "t", "metadata": {}, "source": "# Page"},
            {
                "cell_type": "code",
                "id": "c",
                "metadata": {},
                "execution_count": 1,
                "source": "%%ask\nhello",
                "outputs": outputs,
            },
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (src / "index.ipynb").write_text(json.dumps(nb))
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-b", "html", str(src), str(out)],
        capture_output=True,
        text=True,
        timeout=BUILD_SECONDS,
        env=child_env(),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "kept" in page  # the outputs are on the page
    # shown as text at most (the directive as a code block, the link unlinked), never live
    for attack in ("<script>alert", "onerror=", 'href="javascript:'):
        assert attack not in page, attack
