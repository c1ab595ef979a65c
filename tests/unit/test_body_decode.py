"""The request body's strict JSON reading: its fast number check finds exactly what the plain
pattern finds, and a body with a number too large for a float is refused wherever it stands."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_server_ext.engine.bodies.decode import decode_json, huge_number
from jupyter_server_ext.engine.errors import BadRequest

# what huge_number stands for, written the slow way
PATTERN = re.compile(rb"[eE]\+?\d{3}|\d{300}")
PIECES = st.sampled_from(
    [b"e", b"E", b"+", b"-", b".", b"0", b"9", b"5", b" ", b"x", b'"', b"\xc3\xa9"]
)


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(PIECES, max_size=16).map(b"".join),
    st.integers(min_value=0, max_value=310),
    st.lists(PIECES, max_size=4).map(b"".join),
)
def test_the_fast_check_finds_what_the_pattern_finds(head: bytes, digits: int, tail: bytes) -> None:
    raw = head + b"7" * digits + tail
    assert huge_number(raw) == (PATTERN.search(raw) is not None)


@pytest.mark.parametrize(
    "number", [b"1e999", b"1E+400", b"-2.5e308", b"1" * 400 + b".0", b"1" * 310 + b"e0"]
)
def test_a_number_too_large_for_a_float_is_refused(number: bytes) -> None:
    with pytest.raises(BadRequest, match="out of range"):
        decode_json(b'{"messages": [], "temperature": ' + number + b"}")


@pytest.mark.parametrize("number", [b"1e99", b"1E+30", b"123456789", b"0.000001"])
def test_large_but_finite_numbers_and_text_that_looks_like_them_pass(number: bytes) -> None:
    body = decode_json(b'{"t": ' + number + b', "text": "e+999 and ' + b"9" * 300 + b'"}')
    assert body["t"] == float(number) or body["t"] == int(number)


def _depth(value: object) -> int:
    """Objects and arrays inside each other, the way the proxy counts (a scalar: 0)."""
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


JSON_VALUES = st.recursive(
    st.none() | st.integers(-9, 9) | st.text('[]{}ab"\\', max_size=4),  # brackets in strings too
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text("kq[", max_size=2), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["messages", "metadata", "tools"]), JSON_VALUES, min_size=1),
    st.integers(1, 6),
)
def test_a_body_is_refused_exactly_when_nested_deeper_than_the_limit(
    body: dict, limit: int
) -> None:
    # the walk is skipped for a body with no more brackets than the limit: the same answers
    raw = json.dumps(body).encode()
    if _depth(body) > limit:
        with pytest.raises(BadRequest, match=f"nested more than {limit} levels"):
            decode_json(raw, max_depth=limit)
    else:
        assert decode_json(raw, max_depth=limit) == body
