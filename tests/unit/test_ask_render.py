"""Rendering: footer, code extraction for --insert, Markdown / HTML / text bundles."""

from __future__ import annotations

from rsql_magic.client import ChatResult
from rsql_magic.render import code_block, extract_code, footer, mimebundle

ANSWER = (
    "Try this:\n\n```r\nsummary(lm(mpg ~ wt, data = cars_df))\n```\n\n"
    "or in Python:\n\n```python\nimport statsmodels.formula.api as smf\n```\n"
)


def result(**kw: object) -> ChatResult:
    base = dict(
        text=ANSWER,
        model="llama-3.1-8b-instant",
        usage={"prompt_tokens": 812, "completion_tokens": 64},
        cost_usd=0.000123,
        cache_hit=False,
        latency_s=1.234,
        upstream="groq-a",
        request_id="r1",
    )
    base.update(kw)
    return ChatResult(**base)  # type: ignore[arg-type]


def test_footer() -> None:
    assert footer(result()) == (
        "llama-3.1-8b-instant · 812 → 64 tokens · $0.0001 · cache miss · 1.2 s · via groq-a"
    )
    f = footer(result(cost_usd=None, cache_hit=True, usage={}, upstream=None))
    assert f == "llama-3.1-8b-instant · cache hit · 1.2 s"


def test_extract_code_prefers_language() -> None:
    assert extract_code(ANSWER, "python") == [("python", "import statsmodels.formula.api as smf")]
    assert extract_code(ANSWER, "r")[0] == ("r", "summary(lm(mpg ~ wt, data = cars_df))")
    assert [b[0] for b in extract_code(ANSWER, "sql")] == ["r", "python"]  # none in sql: all
    assert extract_code("no code here") == []


def test_a_block_in_any_language_the_sql_check_runs_is_offered_as_sql() -> None:
    """A block tagged pgsql or bigquery is what %%sql_ai's check takes as SQL, so it is the
    block a user asking for SQL gets (and a %%sql cell when JupySQL is loaded)."""
    from rsql_common.fences import SQL_FENCE_LANGUAGES
    from rsql_magic.render import normalize_lang

    for tag in ("pgsql", "PSQL", "bigquery", "snowflake", "mssql", "plsql"):
        answer = f"Use this:\n```{tag}\nSELECT 1\n```\nor in Python:\n```python\nx = 1\n```"
        assert extract_code(answer, "sql") == [(tag.lower(), "SELECT 1")]
    assert {normalize_lang(t) for t in SQL_FENCE_LANGUAGES - {""}} == {"sql"}
    assert normalize_lang("") == ""  # a bare fence names no language


def test_bundles() -> None:
    md = mimebundle(ANSWER, result())
    assert set(md) == {"text/markdown", "text/plain"}
    assert md["text/markdown"].startswith("Try this:") and md["text/markdown"].endswith(
        "via groq-a*"
    )
    assert md["text/plain"].endswith("-- " + footer(result()))
    html = mimebundle(ANSWER, result(), mode="html")["text/html"]
    assert "<pre" in html and "style=" in html  # pygments, inline styles: no CSS needed
    assert "summary" in html and "via groq-a" in html
    assert set(mimebundle(ANSWER, result(), mode="text")) == {"text/plain"}
    partial = mimebundle("half an ans", None, streaming=True)
    assert partial["text/markdown"].endswith("*… streaming*")


def test_code_block_fence_survives_backticks() -> None:
    block = code_block("x = '```'", "python")
    assert block.startswith("````python\n") and block.endswith("\n````")


def test_a_replayed_answers_first_line_says_what_the_cell_found_of_the_proxy() -> None:
    """Issue 77: a batch run that passed on recordings must not read as a proxy that works."""
    from rsql_magic.client import ProxyClient
    from rsql_magic.errors import ProxyError
    from rsql_magic.render import replayed_notice

    when = ["2026-11-22T13:20:05Z"]
    down = ProxyClient("http://127.0.0.1:9/rsql/")
    down.unavailable = ProxyError(
        0, "cannot reach the proxy at http://127.0.0.1:9/rsql/me: refused"
    )
    refused = ProxyClient("http://127.0.0.1:9/rsql/")
    refused.unavailable = ProxyError(401, "invalid token\n[click](javascript:alert(1))")
    up = ProxyClient("http://127.0.0.1:9/rsql/")
    head = "Replayed answer from r.jsonl, recorded 2026-11-22 13:20 UTC: no request was sent."
    assert replayed_notice(when, "r.jsonl", mode="auto", client=down) == (
        f"{head} Proxy answers now: no: cannot reach the proxy at "
        "http://127.0.0.1:9/rsql/me: refused."
    )
    text = replayed_notice(when, "r.jsonl", mode="auto", client=refused)
    assert text.startswith(f"{head} Proxy answers now: it answers, but refuses this kernel's token")
    assert "javascript" not in text  # the proxy's text: its first line only, plain
    assert replayed_notice(when, "r.jsonl", mode="only", client=up).endswith(
        "Replay only: the proxy is never asked."
    )
    assert replayed_notice(when, "r.jsonl", mode="auto", client=up).endswith(
        "The proxy was not asked: %ask_status says whether it answers now."
    )
    # the notice is the answer's first line, over it, in every render mode
    bundle = mimebundle("the answer", result(replayed_at=when[0]), notices=[head])
    assert bundle["text/markdown"].startswith(f"> **{head}**")
    assert bundle["text/plain"].startswith(head)
