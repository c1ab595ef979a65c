"""DataFrame collectors: content, --no-data, picking frames, the budget, and the time bound."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from rsql_magic.context import build_context, text_tokens
from rsql_magic.context.frames import describe_frame, find_frames, pick_frames
from tests.helpers.kernels import require_or_skip


@pytest.fixture
def sales() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": ["north", "south", "north", None],
            "amount": [1.5, 2.0, 3.25, np.nan],
            "when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]),
            "kind": pd.Categorical(["a", "b", "a", "b"]),
        }
    )


def test_pandas_frame_description(sales: pd.DataFrame) -> None:
    text = describe_frame("sales", sales)
    assert "`sales` (pandas): 4 rows x 4 columns" in text
    assert "- region: str, nulls 1" in text or "- region: object, nulls 1" in text
    assert "- amount: float64, nulls 1, range 1.5..3.25" in text
    assert "range 2024-01-01" in text
    assert "2 levels: 'a', 'b'" in text
    assert "first 4 rows:" in text and "north" in text


def test_no_data_hides_values(sales: pd.DataFrame) -> None:
    text = describe_frame("sales", sales, no_data=True)
    assert "amount: float64, nulls 1" in text
    for value in ("north", "1.5", "3.25", "2024-0", "'a'"):
        assert value not in text
    assert "rows:" not in text


def test_budget_is_respected() -> None:
    wide = pd.DataFrame(np.zeros((3, 300)), columns=[f"column_number_{i}" for i in range(300)])
    text = describe_frame("wide", wide, budget_chars=1500)
    assert len(text) <= 1500
    assert "column_number_0" in text
    assert "more" in text  # says something was left out


def test_big_frame_is_sampled_not_scanned() -> None:
    n = 10_000_000
    big = pd.DataFrame({"x": np.arange(n, dtype="int64"), "y": np.ones(n)})
    big.loc[n - 1, "y"] = np.nan  # a full scan would count exactly one null
    t0 = time.perf_counter()
    text = describe_frame("big", big)
    elapsed = time.perf_counter() - t0
    assert "10,000,000 rows x 2 columns" in text
    assert "random sample" in text and "estimates" in text
    # the statistics are the sample's: a full scan would give x's whole range and y's one null
    assert "- x: int64, nulls ~0, range " in text and "range 0..9999999" not in text, text
    assert "- y: float64, nulls ~0, range 1..1" in text, text
    # measured ~20 ms for 10M x 20 on the CI box (bench/bench_context.py); 0.5 s leaves slack
    # for a loaded machine while still catching an O(n) scan of the frame
    assert elapsed < 0.5, elapsed


def test_pick_frames_named_then_recent(sales: pd.DataFrame) -> None:
    ns = {"sales": sales, "other": sales.copy(), "_hidden": sales, "x": 1, "third": sales.head(1)}
    assert set(find_frames(ns)) == {"sales", "other", "third"}
    assert pick_frames(ns, "what is in sales?")[0] == ["sales"]
    names, _ = pick_frames(ns, "summarise", recent=["other", "sales"], max_frames=2)
    assert names == ["other", "sales"]
    names, missing = pick_frames(ns, "q", requested=["third", "x", "nope"])
    assert names == ["third"] and missing == ["x", "nope"]


def test_build_context_single_budget(sales: pd.DataFrame) -> None:
    ns = {f"f{i}": pd.DataFrame(np.random.default_rng(i).random((50, 40))) for i in range(5)}
    ctx = build_context(question="compare f0 f1 f2 f3 f4", ns=ns, budget_tokens=1000)
    assert [s.title for s in ctx.sections] == [f"DataFrame f{i}" for i in range(5)]
    assert text_tokens(ctx.render()) <= 1000 + 50  # headings on top of the shares
    ctx2 = build_context(question="q", ns={"s": sales}, frames=["s", "nope"], budget_tokens=1000)
    # a frame named and missing is not a note on a question sent anyway: the sender stops
    assert any("nope" in n for n in ctx2.unreadable) and not ctx2.notes


def test_polars_frame() -> None:
    require_or_skip("polars", "polars frames are described when polars is installed")
    import polars as pl

    df = pl.DataFrame({"city": ["Oslo", "Rome", None], "temp": [3.5, 18.0, 11.0]})
    text = describe_frame("weather", df)
    assert "`weather` (polars): 3 rows x 2 columns" in text
    assert "- city: String, nulls 1" in text or "- city: Utf8, nulls 1" in text
    assert "range 3.5..18" in text
    big = pl.DataFrame({"x": np.arange(3_000_000)})
    t0 = time.perf_counter()
    text = describe_frame("big", big)
    assert time.perf_counter() - t0 < 0.5
    assert "random sample" in text
    assert "weather" in find_frames({"weather": df, "lazy": df.lazy()})
    assert "LazyFrame" in describe_frame("lazy", df.lazy())


@pytest.mark.parametrize(
    "text", ["", "SELECT region, sum(total) FROM sales", "Umsatz je Größe", "売上の合計", "😀 x"]
)
def test_the_proxy_reserves_at_least_what_the_kernel_trims_to(text: str) -> None:
    """Context trimmed to N tokens in the kernel is reserved at N or more by the proxy,
    non-ASCII text included (bytes a tokenizer may spend a token on each), and at exactly N on
    prose and SQL, so a trimmed prompt is not refused for its size upstream."""
    from jupyter_server_ext.engine.bodies.request import estimate_tokens

    one_message_overhead = estimate_tokens([{"role": "user", "content": ""}])
    reserved = estimate_tokens([{"role": "user", "content": text}]) - one_message_overhead
    assert reserved >= text_tokens(text)
    if text.isascii():
        assert reserved == text_tokens(text)


def test_text_of_short_words_or_symbols_is_reserved_as_a_tokenizer_splits_it() -> None:
    """The four-characters-a-token count would reserve a quarter of what a tokenizer makes of
    one-letter words (a token every two characters) or symbols (a token each): issue 73."""
    from jupyter_server_ext.engine.bodies.request import estimate_tokens

    base = estimate_tokens([{"role": "user", "content": ""}])
    words, symbols = "a " * 50_000, "}{" * 50_000
    assert estimate_tokens([{"role": "user", "content": words}]) - base >= 50_000
    assert estimate_tokens([{"role": "user", "content": symbols}]) - base >= 100_000
    assert text_tokens(words) == 25_000 and text_tokens(symbols) == 25_000  # the kernel's count


def test_a_redacted_column_is_withheld_at_every_level_duplicate_and_spelling() -> None:
    """Issue 53: redaction is decided on each column's own label, by position."""
    from rsql_magic.context.frames import redacted_columns
    from rsql_magic.privacy import ContextPolicy

    policy = ContextPolicy.from_dict({"redact_columns": ["salary"]})
    base = pd.DataFrame({"dept": ["ops", "lab"], "salary": [91234.5, 123456.0]})
    frames = {
        "agg": base.groupby("dept").agg({"salary": ["max", "mean"]}),
        "dup": pd.concat([base, pd.DataFrame({"salary": [55501.5, 66602.5]})], axis=1),
        "spaced": base.rename(columns={"salary": " Salary\t"}),
    }
    for name, df in frames.items():
        for no_stats in (False, True):
            p = ContextPolicy(value_stats=not no_stats, redact_columns=("salary",))
            text = describe_frame(name, df, policy=p)
            for value in ("91234", "123456", "55501", "66602", "107345"):
                assert value not in text, (name, text)
        assert len(redacted_columns(df, policy)) == (1 if name == "spaced" else 2)
    assert text.count("(values withheld by policy)") == 1
