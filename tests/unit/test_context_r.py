"""R session collector with real R through rpy2 (in-process; the kernel path is in test_ask_kernel)."""

from __future__ import annotations

import time

import pytest

from tests.helpers.kernels import import_rpy2, require_r


@pytest.fixture(scope="module")
def r_env():  # type: ignore[no-untyped-def]
    require_r()
    import_rpy2()
    import rpy2.robjects as ro

    ro.r(
        """
        rm(list = ls(globalenv()), envir = globalenv())
        people <- data.frame(name = c("a", "b"), age = c(30L, 41L), score = c(1.5, 2.5),
                             team = factor(c("x", "y")), joined = as.Date(c("2020-01-01", "2021-06-01")))
        huge <- data.frame(v = runif(5e6))
        not_a_frame <- 1:10
        for (i in 1:30) assign(sprintf("z%02d", i), data.frame(k = 1:3))
        """
    )
    yield ro
    ro.r("rm(list = ls(globalenv()), envir = globalenv())")


def test_r_session_description(r_env) -> None:  # type: ignore[no-untyped-def]
    from rsql_magic.context.rsession import describe_r_session, r_session_exists

    assert r_session_exists()
    text = describe_r_session(budget_chars=20_000, max_frames=40)
    assert text.startswith("R version 4.")
    assert "attached packages:" in text
    assert "### data.frame `people`: 2 rows x 5 columns" in text
    for line in (
        "- name: character",
        "- age: integer",
        "- score: numeric",
        "- team: factor, 2 levels: x, y",
        "- joined: Date",
    ):
        assert line in text
    assert "### data.frame `huge`: 5000000 rows x 1 columns" in text
    assert "not_a_frame (integer)" in text  # other objects are listed by class
    assert "41" in text  # head rows


def test_r_no_data_budget_and_preference(r_env) -> None:  # type: ignore[no-untyped-def]
    from rsql_magic.context.rsession import describe_r_session

    text = describe_r_session(no_data=True, budget_chars=20_000, max_frames=40)
    assert "rows:" not in text and "41" not in text
    t0 = time.perf_counter()
    small = describe_r_session(budget_chars=900, prefer=["z30"])
    assert time.perf_counter() - t0 < 1.0
    assert len(small) <= 900
    assert "`z30`" in small  # named in the question: described first
    assert "more data frames not described" in small or "cut to fit" in small
