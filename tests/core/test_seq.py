"""Sequence-number arithmetic (RFC 9293 3.4), with the wrap at 2**32 exercised everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpstack.core.seq import (
    HALF,
    MASK,
    MOD,
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_in_window,
    seq_le,
    seq_lt,
    seq_max,
    seq_min,
    seq_sub,
)

TOP = 2**32 - 1
u32 = st.integers(min_value=0, max_value=TOP)


def test_constants() -> None:
    assert MOD == 2**32
    assert MASK == 2**32 - 1
    assert HALF == 2**31


# ----------------------------------------------------------------------------- seq_add


@pytest.mark.parametrize(
    ("a", "n", "expected"),
    [
        (0, 0, 0),
        (1, 2, 3),
        (TOP, 1, 0),
        (TOP, 2, 1),
        (2**32 - 10, 15, 5),
        (0, -1, TOP),
        (5, -15, 2**32 - 10),
        (7, 2**32, 7),
        (0, HALF, HALF),
    ],
)
def test_seq_add(a: int, n: int, expected: int) -> None:
    assert seq_add(a, n) == expected


# ----------------------------------------------------------------------------- seq_sub


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (5, 5, 0),
        (10, 3, 7),
        (5, 2**32 - 10, 15),  # forward across the wrap
        (3, 10, 2**32 - 7),  # "backwards" is a long way forward
        (0, TOP, 1),
        (TOP, 0, TOP),
    ],
)
def test_seq_sub(a: int, b: int, expected: int) -> None:
    assert seq_sub(a, b) == expected


# ----------------------------------------------------------------------------- seq_diff


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (5, 5, 0),
        (10, 3, 7),
        (3, 10, -7),
        (5, 2**32 - 10, 15),
        (2**32 - 10, 5, -15),
        (0, TOP, 1),
        (TOP, 0, -1),
        (HALF - 1, 0, HALF - 1),  # largest positive distance
        (HALF, 0, -HALF),  # exactly half way reads as the most negative distance
        (0, HALF, -HALF),
    ],
)
def test_seq_diff(a: int, b: int, expected: int) -> None:
    assert seq_diff(a, b) == expected


# ------------------------------------------------------------------------ comparisons


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (0, 1),
        (1, 2**31 - 1),
        (2**32 - 10, 5),
        (TOP, 0),
        (TOP - 1, TOP),
        (2**31 + 5, 4),  # 4 is 2**31 - 1 ahead of 2**31 + 5 modulo 2**32
    ],
)
def test_strictly_ordered_pairs(a: int, b: int) -> None:
    assert seq_lt(a, b)
    assert seq_le(a, b)
    assert not seq_gt(a, b)
    assert not seq_ge(a, b)
    assert seq_gt(b, a)
    assert seq_ge(b, a)
    assert not seq_lt(b, a)
    assert not seq_le(b, a)


def test_seq_lt_across_the_wrap() -> None:
    assert seq_lt(2**32 - 10, 5) is True
    assert seq_lt(5, 2**32 - 10) is False
    assert seq_gt(5, 2**32 - 10) is True


@pytest.mark.parametrize("a", [0, 1, HALF, TOP])
def test_equal_values(a: int) -> None:
    assert not seq_lt(a, a)
    assert not seq_gt(a, a)
    assert seq_le(a, a)
    assert seq_ge(a, a)


@pytest.mark.parametrize("a", [0, 12345, TOP])
def test_half_way_is_neither_less_nor_greater(a: int) -> None:
    """Two numbers 2**31 apart are not ordered: each of lt/le/gt/ge is False both ways."""
    b = seq_add(a, HALF)
    for x, y in ((a, b), (b, a)):
        assert not seq_lt(x, y)
        assert not seq_le(x, y)
        assert not seq_gt(x, y)
        assert not seq_ge(x, y)


# ------------------------------------------------------------------------ seq_in_window


@pytest.mark.parametrize(
    ("x", "start", "length", "expected"),
    [
        (100, 100, 10, True),  # left edge is inside
        (109, 100, 10, True),
        (110, 100, 10, False),  # right edge is outside
        (99, 100, 10, False),
        (2**32 - 3, 2**32 - 5, 10, True),  # window straddles the wrap
        (0, 2**32 - 5, 10, True),
        (4, 2**32 - 5, 10, True),
        (5, 2**32 - 5, 10, False),
        (2**32 - 6, 2**32 - 5, 10, False),
        (100, 100, 0, False),  # a zero window holds nothing, not even its start
        (0, 0, 0, False),
        (TOP, TOP, 1, True),
        (0, TOP, 1, False),
    ],
)
def test_seq_in_window(x: int, start: int, length: int, expected: bool) -> None:
    assert seq_in_window(x, start, length) is expected


# ------------------------------------------------------------------------ seq_max / min


@pytest.mark.parametrize(
    ("a", "b", "hi", "lo"),
    [
        (1, 2, 2, 1),
        (2, 1, 2, 1),
        (7, 7, 7, 7),
        (2**32 - 10, 5, 5, 2**32 - 10),
        (5, 2**32 - 10, 5, 2**32 - 10),
        (TOP, 0, 0, TOP),
    ],
)
def test_seq_max_min(a: int, b: int, hi: int, lo: int) -> None:
    assert seq_max(a, b) == hi
    assert seq_min(a, b) == lo


# ------------------------------------------------------------------------ properties


@given(u32, st.integers(min_value=1, max_value=2**31 - 1))
def test_adding_less_than_half_moves_forward(a: int, n: int) -> None:
    b = seq_add(a, n)
    assert seq_lt(a, b)
    assert seq_gt(b, a)
    assert seq_diff(b, a) == n
    assert seq_sub(b, a) == n
    assert seq_max(a, b) == b
    assert seq_min(a, b) == a
    assert seq_in_window(b, a, n + 1)
    assert not seq_in_window(b, a, n)


@given(u32, u32)
def test_comparisons_are_consistent(a: int, b: int) -> None:
    assert seq_lt(a, b) == seq_gt(b, a)
    assert seq_le(a, b) == seq_ge(b, a)
    assert seq_le(a, b) == (seq_lt(a, b) or a == b)
    assert not (seq_lt(a, b) and seq_lt(b, a))
    assert seq_lt(a, b) == (seq_diff(b, a) > 0)


@given(u32, u32)
def test_diff_and_sub_invert_add(a: int, b: int) -> None:
    assert seq_add(b, seq_diff(a, b)) == a
    assert seq_add(b, seq_sub(a, b)) == a
    assert 0 <= seq_sub(a, b) <= TOP
    assert -HALF <= seq_diff(a, b) < HALF


@given(u32, st.integers(min_value=-(2**40), max_value=2**40))
def test_add_stays_in_range(a: int, n: int) -> None:
    r = seq_add(a, n)
    assert 0 <= r <= TOP
    assert (r - a - n) % MOD == 0


@given(u32, u32, st.integers(min_value=0, max_value=2**31))
def test_in_window_matches_forward_distance(x: int, start: int, length: int) -> None:
    assert seq_in_window(x, start, length) == (seq_sub(x, start) < length)
