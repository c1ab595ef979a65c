"""Option splitting for %ask / %%ask lines, and the '?'-ending question transform (pure parts)."""

from __future__ import annotations

from rsql_magic.magics.ask import protect_question_mark, split_options


def test_split_options_keeps_question_verbatim() -> None:
    assert split_options("--df a,b --lang=r -o out what's --df here? {x}") == (
        "--df a,b --lang=r -o out",
        "what's --df here? {x}",
    )
    assert split_options("--insert --no-data") == ("--insert --no-data", "")
    assert split_options("  plain question  ") == ("", "plain question")
    assert split_options("--sql con --show-context q") == ("--sql con --show-context", "q")
    assert split_options("--bogus q") == ("", "--bogus q")  # the magic rejects a leading '-'


def test_question_mark_lines() -> None:
    assert protect_question_mark(["%ask what is in df?\n"]) == [
        "get_ipython().run_line_magic('ask', 'what is in df?')\n"
    ]
    assert protect_question_mark(["x = 1\n", "%ask --df x why?"]) == [
        "x = 1\n",
        "get_ipython().run_line_magic('ask', '--df x why?')",
    ]
    unchanged = [["%ask?\n"], ["%ask_status?\n"], ["%%ask\n", "%ask inner?\n"], ["%ask no mark\n"]]
    for lines in unchanged:
        assert protect_question_mark(list(lines)) == lines
