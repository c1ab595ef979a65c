"""{In[3]} / {Err[-1]} / {var} filling: resolvable references only, code never mangled."""

from __future__ import annotations

from rsql_magic.context.history import ErrorRecord, fill_references, format_exception

NS = {"x": "X-VALUE", "n": 42, "In": ["", "a = 1", "b = 2", "sales.head()"]}


def resolve(name: str, idx: int | None) -> str | None:
    if name not in NS:
        return None
    v = NS[name]
    if idx is not None:
        if not isinstance(v, list):  # as the magic does: only index plain lists
            return None
        try:
            v = v[idx]  # type: ignore[index]
        except (IndexError, TypeError):
            return None
    return str(v)


def test_plain_references_filled() -> None:
    assert fill_references("value {x} and {n}", resolve) == "value X-VALUE and 42"
    assert fill_references("cell: {In[3]} last {In[-1]}", resolve) == (
        "cell: sales.head() last sales.head()"
    )


def test_unresolved_left_verbatim() -> None:
    for s in ("{missing}", "{In[99]}", "{x[0]}", "{ x }", "{x + 1}", "{In[a]}", "{}", "{"):
        assert fill_references(s, resolve) == s


def test_r_sql_and_templates_not_mangled() -> None:
    samples = [
        "f <- function(x) {x}",  # R block with a name that exists in Python
        "if (n > 1) {n}",
        "glue::glue('{x} rows')",
        'glue("{x}")',
        "SELECT * FROM t WHERE a = '{x}'",
        "jinja {{x}} and {{ n }}",
        "shell ${x}",
        "ruby #{x}",
        "```r\nlapply(l, function(i) { x })\n{x}\n```",
        "inline `{x}` code",
        "df %>% mutate(y = {n})",
        "x <- {n}",
        "d |> {x}",
    ]
    for s in samples:
        assert fill_references(s, resolve) == s, s


def test_mixed_text_only_fills_prose() -> None:
    q = "Why does {In[2]} differ from\n```r\nfunction(v) {x}\n```\nand glue('{x}')?"
    out = fill_references(q, resolve)
    assert out.startswith("Why does b = 2 differ")
    assert "function(v) {x}" in out and "glue('{x}')" in out


def test_error_record_text() -> None:
    try:
        {}["nope"]
    except KeyError as e:
        tb = format_exception(e)
    rec = ErrorRecord(7, "d['nope']", tb, "KeyError")
    text = rec.as_text()
    assert text.startswith("In [7]:\nd['nope']")
    assert "KeyError: 'nope'" in text
    assert "\x1b[" not in text

    class Coloured(Exception):
        # as IPython's own errors (and rpy2's) render their traceback: in colour
        def _render_traceback_(self) -> list[str]:
            return ["\x1b[0;31mRRuntimeError\x1b[0m: object 'x' not found"]

    try:
        raise Coloured()
    except Coloured as e:
        coloured = format_exception(e)
    said = ErrorRecord(8, "r('x')", coloured, "RRuntimeError").as_text()
    assert "RRuntimeError: object 'x' not found" in said and "\x1b[" not in said, said


def test_long_traceback_keeps_the_end() -> None:
    def deep(k: int) -> None:
        if k == 0:
            raise ValueError("the real cause")
        deep(k - 1)

    try:
        deep(300)
    except ValueError as e:
        text = format_exception(e, max_chars=2000)
    assert len(text) <= 2000
    assert text.rstrip().endswith("ValueError: the real cause")
