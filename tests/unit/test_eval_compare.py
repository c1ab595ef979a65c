"""rsql-eval's comparison rules: when an answer's rows are the gold's rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from rsql_magic.eval import Match, compare_results, gold_orders_rows, wilson_interval


def test_column_order_is_ignored() -> None:
    gold = [("north", 130.5), ("south", 7.25)]
    assert compare_results([(130.5, "north"), (7.25, "south")], gold)


def test_columns_are_matched_as_one_permutation_for_every_row() -> None:
    # each row holds the same values as the gold's, but no single order of the columns
    # makes the tables equal: a per-row bag of values would wrongly say they match
    gold = [(1, 2), (1, 2)]
    got = [(1, 2), (2, 1)]
    assert not compare_results(got, gold)
    # every column holds one of the gold's columns' values, and every row the values of one of
    # its rows, so only the one-order-for-all-rows search refuses it
    gold = [(1, 2), (1, 2), (2, 3), (3, 1)]
    got = [(1, 2), (1, 3), (2, 1), (3, 2)]
    verdict = compare_results(got, gold)
    assert not verdict and verdict.reason == "different rows", verdict


def test_equal_columns_with_other_values_still_find_their_permutation() -> None:
    # columns a and b hold the same multiset of values: the first candidate is wrong
    gold = [(1, 2, "x"), (2, 1, "y")]
    got = [("x", 2, 1), ("y", 1, 2)]
    assert compare_results(got, gold)


def test_row_order_is_ignored_without_an_order_by_in_the_gold() -> None:
    assert compare_results([(2,), (1,)], [(1,), (2,)])


def test_row_order_matters_when_the_gold_orders() -> None:
    verdict = compare_results([(2,), (1,)], [(1,), (2,)], ordered=True)
    assert not verdict
    assert verdict.reason == "the right rows in the wrong order"
    assert compare_results([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], ordered=True)


@pytest.mark.parametrize(
    ("sql", "orders"),
    [
        ("SELECT a FROM t ORDER BY a", True),
        ("SELECT a, COUNT(*) FROM t GROUP BY a ORDER BY 2 DESC LIMIT 5", True),
        ("WITH x AS (SELECT a FROM t) SELECT a FROM x ORDER BY a", True),
        ("SELECT a FROM t UNION ALL SELECT b FROM u ORDER BY 1", True),
        ("SELECT a FROM t", False),
        ("SELECT a FROM (SELECT a FROM t ORDER BY a LIMIT 3) s", False),
        ("SELECT a, ROW_NUMBER() OVER (ORDER BY b) FROM t", False),
        ("SELECT 'ORDER BY a' AS text FROM t", False),
        ("WITH x AS (SELECT a FROM t ORDER BY a) SELECT a FROM x", False),
        ("(SELECT a FROM t ORDER BY a)", True),
    ],
)
def test_only_a_top_level_order_by_orders_the_result(sql: str, orders: bool) -> None:
    assert gold_orders_rows(sql, "sqlite") is orders


def test_floats_compare_within_the_tolerance() -> None:
    assert compare_results([(0.1 + 0.2,)], [(0.3,)])
    assert compare_results([(1_000_000.0004,)], [(1_000_000.0,)])  # relative 4e-10
    assert not compare_results([(1.001,)], [(1.0,)])
    assert compare_results([(1e-12,)], [(0.0,)])  # absolute 1e-9 near zero


def test_numbers_of_different_types_are_equal_by_value() -> None:
    assert compare_results([(3, Decimal("2.50"), True)], [(3.0, 2.5, 1)])
    assert not compare_results([("3",)], [(3,)])  # text is not a number


def test_big_integers_compare_exactly() -> None:
    assert not compare_results([(2**62 + 1,)], [(2**62,)])


def test_duplicates_matter() -> None:
    assert not compare_results([(1,), (1,)], [(1,)])
    assert not compare_results([(1,), (1,), (2,)], [(1,), (2,), (2,)])
    assert compare_results([(1,), (2,), (1,)], [(1,), (1,), (2,)])


def test_nulls_are_equal_to_nulls_only() -> None:
    assert compare_results([(None, 1)], [(None, 1)])
    assert compare_results([(float("nan"),)], [(None,)])  # pandas reads a NULL as NaN
    assert not compare_results([(None,)], [(0,)])
    assert not compare_results([(None,)], [("",)])


def test_dates_compare_with_their_iso_text() -> None:
    assert compare_results([(dt.date(2013, 11, 27), 1014)], [("2013-11-27", 1014)])
    assert compare_results([(dt.datetime(2013, 1, 1, 5),)], [("2013-01-01 05:00:00",)])


def test_widths_and_counts_must_agree() -> None:
    assert compare_results([(1, 2)], [(1,)]) == Match(False, "2 column(s), expected 1")
    assert compare_results([(1,)], [(1,), (2,)]) == Match(False, "1 row(s), expected 2")
    assert compare_results([], [])


def test_values_near_a_rounding_boundary_still_pair_up() -> None:
    # 1.0000005 and 1.0000004999 are equal within the tolerance, but sort on either side of
    # the rounding used for sorting: the rows are paired one by one instead
    gold = [(1.0000005, "a"), (1.0000002, "b")]
    got = [("a", 1.0000004999), ("b", 1.0000002)]
    assert compare_results(got, gold)
    assert not compare_results([("a", 1.0000004999), ("b", 1.00001)], gold)
    # these two do sort apart (1.00001 against 1.0 once rounded): only the pairing matches them
    gold = [(1.0000050001, "a"), (1.000003, "b")]
    assert compare_results([("a", 1.0000049999), ("b", 1.000003)], gold)


def test_rows_within_the_tolerance_pair_up_as_a_whole_not_first_come() -> None:
    # 1.0 could take 1.0000009 (within 1e-6), leaving 1.0000018 without a partner; the
    # pairing 1.0-1.0 and 1.0000018-1.0000009 matches every row
    assert compare_results([(1.0,), (1.0000018,)], [(1.0000009,), (1.0,)])
    assert not compare_results([(1.0,), (1.0000018,)], [(1.0,), (1.0,)])
    # no row pairs exactly here: 1.0 taking 1.0000009 first would leave 1.0000018 alone
    assert compare_results([(1.0,), (1.0000018,)], [(1.0000009,), (1.0000001,)])


def test_wilson_interval() -> None:
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0
