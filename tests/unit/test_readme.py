"""README.md is the front door: short, the two commands first, and every relative link in it
leads to a file of the repository (GitHub renders them; the site is built from docs/)."""

from __future__ import annotations

import re
import urllib.parse

from tests.helpers import REPO

README = REPO / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(markdown: str) -> set[str]:
    body = FENCE.sub("", markdown)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", body, re.M)}


def test_readme_is_a_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    before_sections = text.split("\n## ", 1)[0]
    # the two commands that work on a fresh machine come before any section
    assert "make demo" in before_sections and "make test" in before_sections
    assert "docs/img/chat-panel.png" in before_sections


def test_readme_links_resolve() -> None:
    text = FENCE.sub("", README.read_text(encoding="utf-8"))
    broken: list[str] = []
    for href in LINK.findall(text):
        url = urllib.parse.urlsplit(href)
        if url.scheme or url.netloc:
            continue
        target = (README.parent / urllib.parse.unquote(url.path)).resolve() if url.path else README
        if not target.exists():
            broken.append(f"{href}: no such file")
        elif url.fragment and target.suffix == ".md":
            if url.fragment not in _anchors(target.read_text(encoding="utf-8")):
                broken.append(f"{href}: no such heading")
    assert broken == [], f"broken links in README.md: {broken}"


def test_slugs_match_github() -> None:
    assert (
        _slug("Limits, budgets and the 429s users see") == "limits-budgets-and-the-429s-users-see"
    )
    assert _slug("`%%ask`: questions with live context") == "ask-questions-with-live-context"
