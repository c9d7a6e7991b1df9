"""The sender's SACK scoreboard (tcpstack.core.sack, RFC 2018 / RFC 6675).

Unit tests pin add/merge, the cumulative-ACK advance, the queries and RFC 6675 IsLost;
a Hypothesis state machine checks everything against a plain set of SACKed offsets.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstack.core.sack import DUP_THRESH, Scoreboard

MSS = 100


def board(*ranges: tuple[int, int]) -> Scoreboard:
    sb = Scoreboard()
    for start, end in ranges:
        sb.add(start, end)
    return sb


def test_dup_thresh_is_three() -> None:
    assert DUP_THRESH == 3


def test_empty() -> None:
    sb = Scoreboard()
    assert len(sb) == 0
    assert sb.sacked == 0
    assert sb.ranges() == []
    assert sb.highest is None
    assert not sb.is_sacked(0)
    assert sb.sacked_above(0) == 0
    assert not sb.is_lost(0, MSS)
    assert sb.next_hole(0, 100) == (0, 100)


# ----------------------------------------------------------------------------- add


def test_add_one_range() -> None:
    sb = board((100, 200))
    assert sb.ranges() == [(100, 200)]
    assert sb.sacked == 100
    assert sb.highest == 200
    assert len(sb) == 1


@pytest.mark.parametrize(("start", "end"), [(100, 100), (200, 100)])
def test_add_empty_or_inverted_is_ignored(start: int, end: int) -> None:
    sb = Scoreboard()
    sb.add(start, end)
    assert sb.ranges() == []
    assert sb.sacked == 0


def test_add_disjoint_ranges_kept_sorted() -> None:
    sb = board((500, 600), (100, 200), (300, 400))
    assert sb.ranges() == [(100, 200), (300, 400), (500, 600)]
    assert sb.sacked == 300
    assert sb.highest == 600


def test_add_adjacent_ranges_merge() -> None:
    sb = board((100, 200), (200, 300))
    assert sb.ranges() == [(100, 300)]
    sb.add(50, 100)
    assert sb.ranges() == [(50, 300)]
    assert sb.sacked == 250


def test_add_overlapping_ranges_merge() -> None:
    sb = board((100, 200), (150, 250))
    assert sb.ranges() == [(100, 250)]
    assert sb.sacked == 150


def test_add_repeated_range_changes_nothing() -> None:
    sb = board((100, 200), (100, 200), (120, 180))
    assert sb.ranges() == [(100, 200)]
    assert sb.sacked == 100


def test_add_bridging_several_ranges() -> None:
    sb = board((100, 200), (300, 400), (500, 600), (800, 900))
    sb.add(150, 550)
    assert sb.ranges() == [(100, 600), (800, 900)]
    assert sb.sacked == 600


def test_add_covering_everything() -> None:
    sb = board((100, 200), (300, 400))
    sb.add(0, 1000)
    assert sb.ranges() == [(0, 1000)]
    assert sb.sacked == 1000


def test_clear() -> None:
    sb = board((100, 200), (300, 400))
    sb.clear()
    assert sb.ranges() == []
    assert sb.sacked == 0
    assert sb.highest is None


# ----------------------------------------------------------------------------- advance


def test_advance_below_everything_changes_nothing() -> None:
    sb = board((100, 200), (300, 400))
    sb.advance(50)
    assert sb.ranges() == [(100, 200), (300, 400)]
    assert sb.sacked == 200


def test_advance_drops_ranges_wholly_acked() -> None:
    sb = board((100, 200), (300, 400), (500, 600))
    sb.advance(400)
    assert sb.ranges() == [(500, 600)]
    assert sb.sacked == 100


def test_advance_to_a_range_start_keeps_it() -> None:
    sb = board((100, 200), (300, 400))
    sb.advance(300)
    assert sb.ranges() == [(300, 400)]
    assert sb.sacked == 100


def test_advance_into_a_range_trims_it() -> None:
    sb = board((100, 200), (300, 400))
    sb.advance(350)
    assert sb.ranges() == [(350, 400)]
    assert sb.sacked == 50
    assert sb.highest == 400


def test_advance_past_everything_empties() -> None:
    sb = board((100, 200), (300, 400))
    sb.advance(10_000)
    assert sb.ranges() == []
    assert sb.sacked == 0
    assert sb.highest is None


# ----------------------------------------------------------------------------- queries


def test_is_sacked_edges() -> None:
    sb = board((100, 200), (300, 400))
    assert not sb.is_sacked(99)
    assert sb.is_sacked(100)
    assert sb.is_sacked(199)
    assert not sb.is_sacked(200)
    assert not sb.is_sacked(299)
    assert sb.is_sacked(300)
    assert sb.is_sacked(399)
    assert not sb.is_sacked(400)


def test_sacked_above() -> None:
    sb = board((100, 200), (300, 400))
    assert sb.sacked_above(0) == 200
    assert sb.sacked_above(100) == 200
    assert sb.sacked_above(150) == 150
    assert sb.sacked_above(200) == 100
    assert sb.sacked_above(350) == 50
    assert sb.sacked_above(400) == 0


def test_is_lost_by_three_discontiguous_ranges() -> None:
    # Tiny ranges (3 bytes in all) well under 2*SMSS: only the range count can say lost.
    sb = board((10, 11), (20, 21), (30, 31))
    assert sb.is_lost(0, MSS)
    assert sb.is_lost(9, MSS)
    assert not sb.is_lost(10, MSS)  # only two ranges lie above 10
    assert not sb.is_lost(15, MSS)
    assert not sb.is_lost(25, MSS)


def test_is_lost_not_with_two_ranges() -> None:
    sb = board((10, 11), (20, 21))
    assert not sb.is_lost(0, MSS)


def test_is_lost_by_bytes_needs_more_than_two_smss() -> None:
    # RFC 6675: more than (DupThresh - 1) * SMSS bytes SACKed above.
    exactly = board((1000, 1000 + 2 * MSS))
    assert not exactly.is_lost(0, MSS)
    more = board((1000, 1000 + 2 * MSS + 1))
    assert more.is_lost(0, MSS)
    # Counted above the offset: from 999 upward all 201 bytes lie above it.
    assert more.is_lost(999, MSS)
    # From 1000 upward only 200 bytes lie strictly above.
    assert not more.is_lost(1000, MSS)


def test_is_lost_bytes_over_two_ranges() -> None:
    sb = board((1000, 1100), (1200, 1301))
    assert sb.is_lost(500, MSS)
    assert not sb.is_lost(1050, MSS)  # 49 + 101 bytes above


def test_is_lost_mss_scales_the_byte_threshold() -> None:
    sb = board((1000, 1201))
    assert sb.is_lost(0, 100)
    assert not sb.is_lost(0, 101)


def test_next_hole_before_first_range() -> None:
    sb = board((100, 200), (300, 400))
    assert sb.next_hole(0, 1000) == (0, 100)
    assert sb.next_hole(50, 1000) == (50, 100)


def test_next_hole_skips_sacked_data() -> None:
    sb = board((100, 200), (300, 400))
    assert sb.next_hole(100, 1000) == (200, 300)
    assert sb.next_hole(150, 1000) == (200, 300)
    assert sb.next_hole(250, 1000) == (250, 300)
    assert sb.next_hole(300, 1000) == (400, 1000)


def test_next_hole_bounded_by_limit() -> None:
    sb = board((100, 200), (300, 400))
    assert sb.next_hole(0, 50) == (0, 50)
    assert sb.next_hole(100, 250) == (200, 250)
    assert sb.next_hole(100, 200) is None
    assert sb.next_hole(300, 400) is None
    assert sb.next_hole(120, 180) is None


def test_next_hole_none_when_start_at_or_past_limit() -> None:
    sb = board((100, 200))
    assert sb.next_hole(500, 500) is None
    assert sb.next_hole(600, 500) is None
    assert Scoreboard().next_hole(5, 5) is None


# ----------------------------------------------------------------------------- model


def runs(model: set[int]) -> list[tuple[int, int]]:
    """Maximal runs [start, end) of consecutive offsets."""
    out: list[tuple[int, int]] = []
    for x in sorted(model):
        if out and out[-1][1] == x:
            out[-1] = (out[-1][0], x + 1)
        else:
            out.append((x, x + 1))
    return out


def model_next_hole(model: set[int], start: int, limit: int) -> tuple[int, int] | None:
    pos = start
    while pos < limit and pos in model:
        pos += 1
    if pos >= limit:
        return None
    end = pos
    while end < limit and end not in model:
        end += 1
    return (pos, end)


SPAN = 80

op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, SPAN), st.integers(0, 20)),
    st.tuples(st.just("advance"), st.integers(0, 15), st.just(0)),
)


@settings(max_examples=300)
@given(st.lists(op, max_size=40), st.integers(min_value=1, max_value=8))
def test_matches_a_set_of_bytes(ops: list[tuple[str, int, int]], mss: int) -> None:
    sb = Scoreboard()
    model: set[int] = set()
    una = 0
    for kind, a, b in ops:
        if kind == "add":
            start = una + a  # SACK blocks lie above SND.UNA
            sb.add(start, start + b)
            model |= set(range(start, start + b))
        else:
            una += a  # the cumulative ACK only moves forward
            sb.advance(una)
            model = {x for x in model if x >= una}
        assert sb.ranges() == runs(model)
        assert sb.sacked == len(model)
        assert len(sb) == len(runs(model))
        assert sb.highest == (max(model) + 1 if model else None)
    top = una + SPAN + 25
    for x in range(una, top):
        assert sb.is_sacked(x) == (x in model)
        above = {y for y in model if y >= x}
        assert sb.sacked_above(x) == len(above)
        if x not in model:
            # IsLost is asked of unSACKed data (holes): whole runs lie above x.
            discontiguous = len([r for r in runs(model) if r[0] > x])
            bytes_above = len({y for y in model if y > x})
            expected_lost = discontiguous >= 3 or bytes_above > 2 * mss
            assert sb.is_lost(x, mss) == expected_lost
        for limit in (x, x + 1, x + 7, top):
            assert sb.next_hole(x, limit) == model_next_hole(model, x, limit)
