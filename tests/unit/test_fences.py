"""One fence grammar (``rsql_common.fences``) for every place that reads code blocks in text:
the sanitizer draws them, the chat offers them for insertion, reference filling leaves them
alone and the proxy's placeholder restorer reads them. Each is tested through its own public
function on the same answers, and must see the same blocks."""

from __future__ import annotations

import pytest

from jupyter_server_ext.engine.privacy.redact import Restorer, restore_text
from rsql_common.fences import (
    fence_open,
    fenced_blocks,
    is_sql_language,
    may_become_fence_line,
    sql_blocks,
)
from rsql_magic.context.history import fill_references
from rsql_magic.render import extract_code
from rsql_magic.sanitize import safe_markdown

# line -> (marker, indent, language) of the fence it opens, or None
OPENING = [
    ("```python", ("```", 0, "python")),
    ("~~~sql", ("~~~", 0, "sql")),
    ("````", ("````", 0, "")),
    ("``` PostgreSQL title=q.sql", ("```", 0, "postgresql")),
    ("```{r}", ("```", 0, "")),
    ("```c++", ("```", 0, "c++")),
    ("   ```sql", ("```", 3, "sql")),
    ("      ~~~r", ("~~~", 6, "r")),  # any indent: drawn in a list item's continuation
    ("- ```sql", ("```", 2, "sql")),
    ("12. ~~~python", ("~~~", 4, "python")),
    ("3) ```", ("```", 3, "")),
    ("```sql\r\n", ("```", 0, "sql")),
    ("\x00~~~sql", ("~~~", 0, "sql")),  # control characters: a Markdown view drops them
    ("``\x1b`s\x85ql", ("```", 0, "sql")),
    ("~~~ `ok` in a tilde fence", ("~~~", 0, "")),
    ("```py `x`", None),  # a backtick in a backtick fence's info: an inline span
    ("``", None),
    ("Run this: ```sql", None),  # not at a line's start
    ("-```sql", None),  # a list marker needs a blank after it
    ("1234567890. ```sql", None),  # a list number has at most nine digits
    ("> ```sql", None),
]


@pytest.mark.parametrize(("line", "opens"), OPENING)
def test_which_lines_open_a_fence(line: str, opens: tuple[str, int, str] | None) -> None:
    fence = fence_open(line)
    assert (None if fence is None else (fence.marker, fence.indent, fence.language)) == opens


def test_a_fence_closes_on_its_own_character_at_least_as_long_with_nothing_else() -> None:
    fence = fence_open("````python")
    assert fence is not None
    assert [fence.closed_by(line) for line in ("````", "  `````  \n", "````\r\n")] == [True] * 3
    assert not any(fence.closed_by(line) for line in ("```", "~~~~", "````python", "- ````"))


def test_a_line_is_held_until_it_can_no_longer_become_a_fence_line() -> None:
    for line in ("- ```sql", "12. ~~~", "   ````", "```"):
        assert all(may_become_fence_line(line[:i]) for i in range(len(line) + 1)), line
    assert may_become_fence_line("\x00`\x1b`")
    for start in ("Run", "- item", "2024 was", "-x", "1234567890"):
        assert not may_become_fence_line(start), start


def test_blocks_in_list_items_lose_the_items_indent_and_an_unclosed_block_runs_to_the_end() -> None:
    text = "1. Run:\n   ```sql\n   SELECT 1\n     FROM t\n   ```\n2. Then:\n~~~r\nx <- 1"
    blocks = fenced_blocks(text)
    assert [(b.fence.language, b.code, b.closed) for b in blocks] == [
        ("sql", "SELECT 1\n  FROM t", True),
        ("r", "x <- 1", False),
    ]
    assert text[blocks[0].start : blocks[0].end] == "   ```sql\n   SELECT 1\n     FROM t\n   ```\n"
    assert blocks[1].end == len(text)


# answers whose blocks the old readers disagreed on; {v} marks a place in each block
ANSWERS = {
    "plain": "```python\nx = {v}\n```\nafter",
    "tildes": "~~~sql\nSELECT {v}\n~~~\nafter",
    "list item": "1. Run:\n   ```sql\n   SELECT {v}\n   ```\n2. after",
    "bullet": "- ~~~sql\n  SELECT {v}\n  ~~~\nafter",
    "mid-line fence": "Run this: ```python\n```\ny = {v}\n```\nafter",
    "longer marker": "````python\nx = {v}\n```\nstill {v}\n````\nafter",
    "closing with info": "```r\nx <- {v}\n```r\nstill {v}\n```\nafter",
    "backtick info": "```py `x`\nprose\n```\ny = {v}\n```\nafter",
    "unclosed": "prose\n```r\nx <- {v}",
    "crlf": "```python\r\nx = {v}\r\n```\r\nafter",
    "control characters": "\x00~~~sql\nSELECT {v}\n~\x1b~~\nafter",
}


@pytest.mark.parametrize("name", ANSWERS)
def test_the_blocks_offered_drawn_and_protected_are_the_same(name: str) -> None:
    answer = ANSWERS[name].replace("{v}", "{n}")
    offered = [code for _, code in extract_code(answer)]
    assert offered and all("{n}" in code for code in offered), offered
    # the sanitizer re-draws each block with a fence of its own: the same code inside
    drawn = [b.code for b in fenced_blocks(safe_markdown(answer))]
    assert drawn == [code.replace("\r", "") for code in offered]
    # reference filling leaves every block alone and fills the prose around
    filled = fill_references("See {n}.\n" + answer, lambda name, index: "42")
    assert filled.count("{n}") == answer.count("{n}") and filled.startswith("See 42.")


@pytest.mark.parametrize("name", ANSWERS)
def test_the_restorer_keeps_placeholders_only_in_blocks_that_are_sql_whole_or_streamed(
    name: str,
) -> None:
    """Kept in a block drawn with an SQL tag or none (extract_sql runs a bare fence), or one
    extract_sql's wider grammar runs as SQL; mapped back everywhere else, in other blocks too."""
    value = "ada@ex.uk"  # as long as the placeholder: the offsets stay the same
    answer = ANSWERS[name].replace("{v}", "'<email-1>'") + "\nBye <email-1>."
    drawn = fenced_blocks(answer)
    sql_spans = [(b.start, b.end) for b in drawn if is_sql_language(b.fence.language)]
    sql_spans += [m.span(2) for m in sql_blocks(answer)]
    expected = list(answer)
    for at in (i for i in range(len(answer)) if answer.startswith("<email-1>", i)):
        if not any(a <= at < b for a, b in sql_spans):
            expected[at : at + 9] = value
    assert restore_text(answer, {"<email-1>": value}) == "".join(expected)
    # a character at a time: every line is judged as the whole answer is
    r = Restorer({"<email-1>": value})
    assert "".join(r.feed(ch) for ch in answer) + r.flush() == "".join(expected)


def test_a_list_item_sql_fence_split_anywhere_is_still_a_fence_to_the_restorer() -> None:
    values = {"<email-1>": "ada@example.com"}
    answer = "Steps:\n- ~~~sql\n  SELECT '<email-1>'\n  ~~~\n- Ask <email-1>."
    expected = "Steps:\n- ~~~sql\n  SELECT '<email-1>'\n  ~~~\n- Ask ada@example.com."
    for cut in range(len(answer) + 1):
        r = Restorer(values)
        assert r.feed(answer[:cut]) + r.feed(answer[cut:]) + r.flush() == expected, cut
