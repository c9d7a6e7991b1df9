"""Out-of-order reassembly (tcpstack.core.reassembly): blocks in stream offsets.

Unit tests pin the merge rules (overlap, adjacency, the held copy winning), the trimming
below RCV.NXT, pop_ready, both limits and the RFC 2018 section 4 SACK ordering; the
Hypothesis properties feed a reference byte string in random pieces and random order.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpstack.core.reassembly import Reassembly

BIG = 1 << 40


def drain(r: Reassembly, expected: int) -> tuple[bytes, int]:
    """Pop everything that continues the stream at `expected`; return it and the new
    expected offset."""
    out = bytearray()
    while chunk := r.pop_ready(expected):
        out += chunk
        expected += len(chunk)
    return bytes(out), expected


def check_invariants(r: Reassembly) -> None:
    blocks = r.blocks()
    assert len(r) == len(blocks)
    assert r.held == sum(end - start for start, end in blocks)
    for start, end in blocks:
        assert start < end
    for (_, end_a), (start_b, _) in pairwise(blocks):
        # Sorted, disjoint, and never adjacent: add merges ranges that touch.
        assert end_a < start_b
    # SACK reports every held block exactly once.
    assert sorted(r.sack_blocks(len(blocks) + 1)) == blocks


# ----------------------------------------------------------------------------- add


def test_empty() -> None:
    r = Reassembly(max_bytes=100)
    assert len(r) == 0
    assert r.held == 0
    assert r.blocks() == []
    assert r.sack_blocks(4) == []
    assert r.pop_ready(0) == b""


def test_add_single_block() -> None:
    r = Reassembly(max_bytes=100)
    assert r.add(10, b"abc", expected=0) == 3
    assert r.blocks() == [(10, 13)]
    assert r.held == 3
    assert len(r) == 1


def test_add_empty_data_is_ignored() -> None:
    r = Reassembly(max_bytes=100)
    assert r.add(10, b"", expected=0) == 0
    assert r.blocks() == []
    assert r.held == 0


def test_add_separate_blocks_kept_sorted() -> None:
    r = Reassembly(max_bytes=100)
    assert r.add(30, b"zz", expected=0) == 2
    assert r.add(10, b"aa", expected=0) == 2
    assert r.add(20, b"mm", expected=0) == 2
    assert r.blocks() == [(10, 12), (20, 22), (30, 32)]
    assert r.held == 6
    check_invariants(r)


def test_adjacent_blocks_merge_on_the_right() -> None:
    r = Reassembly(max_bytes=100)
    r.add(10, b"abc", expected=0)
    assert r.add(13, b"de", expected=0) == 2
    assert r.blocks() == [(10, 15)]
    assert r.held == 5
    assert r.pop_ready(10) == b"abcde"


def test_adjacent_blocks_merge_on_the_left() -> None:
    r = Reassembly(max_bytes=100)
    r.add(13, b"de", expected=0)
    assert r.add(10, b"abc", expected=0) == 3
    assert r.blocks() == [(10, 15)]
    assert r.pop_ready(10) == b"abcde"


def test_filling_a_gap_exactly_merges_three_blocks() -> None:
    r = Reassembly(max_bytes=100)
    r.add(10, b"ab", expected=0)
    r.add(14, b"ef", expected=0)
    assert r.add(12, b"cd", expected=0) == 2
    assert r.blocks() == [(10, 16)]
    assert r.held == 6
    assert r.pop_ready(10) == b"abcdef"


def test_overlap_held_copy_wins() -> None:
    r = Reassembly(max_bytes=100)
    r.add(10, b"abcde", expected=0)  # 10..15
    # 14..17 overlaps the held byte at 14: only 15 and 16 are new, and 14 stays "e".
    assert r.add(14, b"XYZ", expected=0) == 2
    assert r.blocks() == [(10, 17)]
    assert r.held == 7
    assert r.pop_ready(10) == b"abcdeYZ"


def test_overlap_on_the_left_held_copy_wins() -> None:
    r = Reassembly(max_bytes=100)
    r.add(10, b"abcde", expected=0)
    assert r.add(7, b"XYZWV", expected=0) == 3  # 7..12: 7, 8, 9 are new
    assert r.blocks() == [(7, 15)]
    assert r.pop_ready(7) == b"XYZabcde"


def test_new_data_spanning_several_blocks_keeps_every_held_byte() -> None:
    r = Reassembly(max_bytes=100)
    r.add(10, b"ab", expected=0)  # 10..12
    r.add(15, b"cd", expected=0)  # 15..17
    r.add(20, b"ef", expected=0)  # 20..22
    # 8..24 covers all three; 16 bytes, 6 of them already held.
    assert r.add(8, b"0123456789ABCDEF", expected=0) == 10
    assert r.blocks() == [(8, 24)]
    assert r.held == 16
    assert r.pop_ready(8) == b"01ab456cd9ABefEF"


def test_duplicate_inside_a_block_adds_nothing() -> None:
    r = Reassembly(max_bytes=100)
    r.add(10, b"abcdef", expected=0)
    assert r.add(12, b"XY", expected=0) == 0
    assert r.add(10, b"abcdef", expected=0) == 0
    assert r.blocks() == [(10, 16)]
    assert r.held == 6
    assert r.pop_ready(10) == b"abcdef"


def test_data_wholly_below_expected_is_ignored() -> None:
    r = Reassembly(max_bytes=100)
    assert r.add(0, b"abc", expected=3) == 0
    assert r.add(0, b"abc", expected=10) == 0
    assert r.blocks() == []
    assert r.held == 0


def test_data_straddling_expected_is_trimmed() -> None:
    r = Reassembly(max_bytes=100)
    assert r.add(5, b"0123456789", expected=8) == 7  # 5..15 keeps 8..15
    assert r.blocks() == [(8, 15)]
    assert r.held == 7
    assert r.pop_ready(8) == b"3456789"


def test_trimmed_data_merges_with_a_held_block() -> None:
    r = Reassembly(max_bytes=100)
    r.add(12, b"CD", expected=8)
    assert r.add(6, b"xxabcdef", expected=8) == 4  # keeps 8..14: 8..12 new, 12..14 held
    assert r.blocks() == [(8, 14)]
    assert r.pop_ready(8) == b"abcdCD"


# ----------------------------------------------------------------------------- pop_ready


def test_pop_ready_nothing_when_gap_remains() -> None:
    r = Reassembly(max_bytes=100)
    r.add(10, b"abc", expected=0)
    assert r.pop_ready(9) == b""
    assert r.blocks() == [(10, 13)]
    assert r.held == 3


def test_pop_ready_returns_exactly_the_contiguous_block() -> None:
    r = Reassembly(max_bytes=100)
    r.add(10, b"abc", expected=0)
    r.add(20, b"xyz", expected=0)
    assert r.pop_ready(10) == b"abc"
    assert r.blocks() == [(20, 23)]
    assert r.held == 3
    # The next block does not continue the stream at 13.
    assert r.pop_ready(13) == b""
    assert r.pop_ready(20) == b"xyz"
    assert r.held == 0
    assert len(r) == 0


def test_pop_ready_when_expected_is_inside_the_first_block() -> None:
    # In-order data advanced RCV.NXT part of the way into a held block.
    r = Reassembly(max_bytes=100)
    r.add(10, b"abcdefghij", expected=0)
    assert r.pop_ready(15) == b"fghij"
    assert r.held == 0
    assert r.blocks() == []
    assert r.sack_blocks(4) == []


def test_pop_ready_drops_blocks_wholly_below_expected() -> None:
    # In-order data (a repacketized retransmission, say) covered one held block entirely
    # and the next one partly: the bytes from `expected` on must come out at once.
    r = Reassembly(max_bytes=100)
    r.add(10, b"ab", expected=0)  # 10..12
    r.add(14, b"cdefgh", expected=0)  # 14..20
    assert r.pop_ready(16) == b"efgh"
    assert r.blocks() == []
    assert r.held == 0
    assert r.sack_blocks(4) == []


def test_pop_ready_when_every_block_is_below_expected() -> None:
    r = Reassembly(max_bytes=100)
    r.add(10, b"ab", expected=0)
    r.add(14, b"cd", expected=0)
    r.add(30, b"zz", expected=0)
    assert r.pop_ready(20) == b""
    assert r.blocks() == [(30, 32)]
    assert r.held == 2
    assert r.sack_blocks(4) == [(30, 32)]


def test_clear() -> None:
    r = Reassembly(max_bytes=100)
    r.add(10, b"ab", expected=0)
    r.add(20, b"cd", expected=0)
    r.clear()
    assert r.blocks() == []
    assert r.held == 0
    assert r.sack_blocks(4) == []
    assert r.add(10, b"ab", expected=0) == 2


# ----------------------------------------------------------------------------- limits


def test_byte_limit_refuses_and_changes_nothing() -> None:
    r = Reassembly(max_bytes=10)
    assert r.add(10, b"12345678", expected=0) == 8
    r.add(30, b"z", expected=0)  # held 9
    before = (r.blocks(), r.held, r.sack_blocks(8))
    assert r.add(50, b"ab", expected=0) == 0  # would make 11
    assert r.add(17, b"abc", expected=0) == 0  # extends by 2 -> 11
    assert (r.blocks(), r.held, r.sack_blocks(8)) == before


def test_byte_limit_admits_exactly_max_bytes() -> None:
    r = Reassembly(max_bytes=10)
    assert r.add(10, b"12345678", expected=0) == 8
    assert r.add(16, b"abcd", expected=0) == 2  # overlap counted once: 8 + 2 == 10
    assert r.held == 10
    assert r.add(40, b"x", expected=0) == 0
    assert r.held == 10


def test_byte_limit_counts_only_new_bytes_of_a_duplicate() -> None:
    r = Reassembly(max_bytes=5)
    assert r.add(10, b"abcde", expected=0) == 5
    # Full, but a retransmission of held bytes is no new data and changes nothing.
    assert r.add(10, b"abcde", expected=0) == 0
    assert r.blocks() == [(10, 15)]


def test_block_limit_refuses_a_new_gap() -> None:
    r = Reassembly(max_bytes=1000, max_blocks=2)
    r.add(10, b"a", expected=0)
    r.add(20, b"b", expected=0)
    before = (r.blocks(), r.held, r.sack_blocks(8))
    assert r.add(30, b"c", expected=0) == 0
    assert r.add(5, b"c", expected=0) == 0
    assert (r.blocks(), r.held, r.sack_blocks(8)) == before


def test_block_limit_still_admits_extensions_and_merges() -> None:
    r = Reassembly(max_bytes=1000, max_blocks=2)
    r.add(10, b"a", expected=0)
    r.add(20, b"b", expected=0)
    assert r.add(11, b"bc", expected=0) == 2  # grows a block
    assert r.add(13, b"1234567", expected=0) == 7  # bridges to the second block
    assert r.blocks() == [(10, 21)]
    # With one block held there is room for a new gap again.
    assert r.add(30, b"z", expected=0) == 1
    assert len(r) == 2


def test_limits_free_up_after_pop() -> None:
    r = Reassembly(max_bytes=4, max_blocks=1)
    assert r.add(10, b"abcd", expected=0) == 4
    assert r.add(20, b"x", expected=0) == 0
    assert r.pop_ready(10) == b"abcd"
    assert r.add(20, b"wxyz", expected=14) == 4


# ----------------------------------------------------------------------------- sack_blocks


def test_sack_blocks_most_recent_first() -> None:
    r = Reassembly(max_bytes=1000)
    r.add(10, b"a", expected=0)
    r.add(20, b"b", expected=0)
    r.add(30, b"c", expected=0)
    assert r.sack_blocks(4) == [(30, 31), (20, 21), (10, 11)]
    assert r.sack_blocks(2) == [(30, 31), (20, 21)]
    assert r.sack_blocks(1) == [(30, 31)]


def test_sack_blocks_growing_a_block_makes_it_first() -> None:
    r = Reassembly(max_bytes=1000)
    r.add(10, b"a", expected=0)
    r.add(20, b"b", expected=0)
    r.add(30, b"c", expected=0)
    r.add(11, b"a", expected=0)
    assert r.sack_blocks(4) == [(10, 12), (30, 31), (20, 21)]
    # Growth on the left changes the block's start; it is still one block, first.
    r.add(19, b"b", expected=0)
    assert r.sack_blocks(4) == [(19, 21), (10, 12), (30, 31)]


def test_sack_blocks_merged_block_is_reported_once_and_first() -> None:
    r = Reassembly(max_bytes=1000)
    r.add(10, b"a", expected=0)
    r.add(20, b"b", expected=0)
    r.add(30, b"c", expected=0)
    r.add(40, b"d", expected=0)
    r.add(21, b"123456789", expected=0)  # joins 20..21 and 30..31
    assert r.sack_blocks(4) == [(20, 31), (40, 41), (10, 11)]


def test_sack_blocks_duplicate_refreshes_recency() -> None:
    # RFC 2018 section 4: the first block reports the segment that triggered the ACK,
    # even when it only repeated held data.
    r = Reassembly(max_bytes=1000)
    r.add(10, b"abc", expected=0)
    r.add(20, b"b", expected=0)
    assert r.add(11, b"b", expected=0) == 0
    assert r.sack_blocks(4) == [(10, 13), (20, 21)]


def test_sack_blocks_refused_data_does_not_reorder() -> None:
    r = Reassembly(max_bytes=2, max_blocks=8)
    r.add(10, b"a", expected=0)
    r.add(20, b"b", expected=0)
    assert r.add(11, b"x", expected=0) == 0
    assert r.sack_blocks(4) == [(20, 21), (10, 11)]


def test_sack_blocks_forget_popped_blocks() -> None:
    r = Reassembly(max_bytes=1000)
    r.add(10, b"a", expected=0)
    r.add(20, b"b", expected=0)
    r.add(5, b"x", expected=0)
    assert r.pop_ready(5) == b"x"
    assert r.sack_blocks(4) == [(20, 21), (10, 11)]
    assert r.pop_ready(10) == b"a"
    assert r.sack_blocks(4) == [(20, 21)]


@pytest.mark.parametrize("limit", [1, 2, 3, 4])
def test_sack_blocks_limit(limit: int) -> None:
    r = Reassembly(max_bytes=1000)
    for i in range(6):
        r.add(10 * (i + 1), b"x", expected=0)
    out = r.sack_blocks(limit)
    assert len(out) == limit
    assert out == [(10 * (6 - i), 10 * (6 - i) + 1) for i in range(limit)]


# ----------------------------------------------------------------------------- properties


@st.composite
def pieces_of(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int]]]:
    """A reference string and pieces (start, end) covering all of it (a partition plus
    random extra overlapping pieces), in random order."""
    ref = draw(st.binary(min_size=1, max_size=120))
    n = len(ref)
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=20))) if n > 1 else []
    bounds = [0, *cuts, n]
    pieces = list(pairwise(bounds))
    extra = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(1, n)).map(
                lambda p: (p[0], min(n, p[0] + p[1]))
            ),
            max_size=20,
        )
    )
    order = draw(st.permutations(pieces + extra))
    return ref, list(order)


@settings(max_examples=300)
@given(pieces_of(), st.lists(st.booleans(), min_size=60, max_size=60))
def test_random_pieces_reassemble_to_the_reference(
    case: tuple[bytes, list[tuple[int, int]]], pops: list[bool]
) -> None:
    """Only add and pop_ready: `expected` advances by what pop_ready returns."""
    ref, pieces = case
    r = Reassembly(max_bytes=BIG, max_blocks=1 << 20)
    out = bytearray()
    expected = 0
    for i, (start, end) in enumerate(pieces):
        blocks_before = r.blocks()
        held_before = r.held
        added = r.add(start, ref[start:end], expected)
        assert r.held == held_before + added
        covered = sum(max(0, min(e, end) - max(s, start, expected)) for s, e in blocks_before)
        assert added == max(0, end - max(start, expected)) - covered
        if end > expected:
            # The block that now holds this piece is reported first.
            first = r.sack_blocks(1)[0]
            assert first[0] <= max(start, expected) and end <= first[1]
        if pops[i % len(pops)]:
            chunk, expected = drain(r, expected)
            out += chunk
            assert bytes(out) == ref[:expected]
            assert all(s > expected for s, _ in r.blocks())
        check_invariants(r)
        assert all(s >= expected for s, _ in r.blocks())
    chunk, expected = drain(r, expected)
    out += chunk
    assert bytes(out) == ref
    assert expected == len(ref)
    assert r.held == 0
    assert len(r) == 0


@settings(max_examples=300)
@given(pieces_of())
def test_connection_like_delivery(case: tuple[bytes, list[tuple[int, int]]]) -> None:
    """The connection's way: a piece at RCV.NXT is delivered directly (advancing
    `expected`, possibly over held blocks), anything beyond it is held, and after each
    in-order delivery pop_ready drains what now continues the stream."""
    ref, pieces = case
    r = Reassembly(max_bytes=BIG, max_blocks=1 << 20)
    out = bytearray()
    expected = 0
    for start, end in pieces:
        if start <= expected < end:
            out += ref[expected:end]
            expected = end
            chunk, expected = drain(r, expected)
            out += chunk
        elif start > expected:
            r.add(start, ref[start:end], expected)
        else:
            assert r.add(start, ref[start:end], expected) == 0
        assert bytes(out) == ref[:expected]
        check_invariants(r)
        # Nothing stays held that the stream has already passed.
        assert all(s > expected for s, _ in r.blocks())
    assert bytes(out) == ref
    assert r.held == 0


@settings(max_examples=300)
@given(
    pieces_of(),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=6),
    st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_limits_hold_and_stream_stays_a_prefix(
    case: tuple[bytes, list[tuple[int, int]]],
    max_bytes: int,
    max_blocks: int,
    pops: list[bool],
) -> None:
    ref, pieces = case
    r = Reassembly(max_bytes=max_bytes, max_blocks=max_blocks)
    out = bytearray()
    expected = 0
    for i, (start, end) in enumerate(pieces):
        before = (r.blocks(), r.held, r.sack_blocks(max_blocks + 1))
        added = r.add(start, ref[start:end], expected)
        if added == 0 and end > expected:
            # Refused (or a pure duplicate): the blocks and the bytes are unchanged.
            assert r.blocks() == before[0]
            assert r.held == before[1]
        assert r.held <= max_bytes
        assert len(r) <= max_blocks
        if pops[i % len(pops)]:
            chunk, expected = drain(r, expected)
            out += chunk
        assert bytes(out) == ref[:expected]
        check_invariants(r)
    # Whatever was refused, the stream completes once the sender fills in at RCV.NXT
    # (delivered directly, as the connection does) and pop_ready drains behind it.
    while expected < len(ref):
        out += ref[expected : expected + 1]
        expected += 1
        chunk, expected = drain(r, expected)
        out += chunk
        assert all(s > expected for s, _ in r.blocks())
    assert bytes(out) == ref
    assert r.held == 0
