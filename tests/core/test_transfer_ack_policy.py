"""When and what we acknowledge: delayed ACK (RFC 9293 3.8.6.3, RFC 5681 4.2), quick
ACK, SACK blocks on our ACKs (RFC 2018 3-4) and the timestamp they echo (RFC 7323 4.3),
exact segments on the virtual clock."""

from __future__ import annotations

import pytest

from tcpstack.core.config import PLAIN, Config
from tcpstack.core.events import DataAvailable
from tcpstack.core.segment import Options
from tests.core.harness import MS
from tests.core.transfer_support import TransferHarness, pattern

DELAYED = PLAIN.with_changes(delayed_ack=True)
FULL = 1460  # our MSS: a full-sized segment


def _open(config: Config = DELAYED, peer: Options | None = None) -> TransferHarness:
    h = TransferHarness(config)
    h.open_with(peer if peer is not None else Options(mss=1460))
    return h


# -- delayed ACK --------------------------------------------------------------------------


def test_one_full_segment_is_acknowledged_after_exactly_the_delayed_ack_timeout() -> None:
    """RFC 9293 3.8.6.3 (SHLD-18, MUST-40: under 0.5 s) / RFC 5681 4.2: an ACK may wait
    for a second full-sized segment, at most delayed_ack_timeout (40 ms, Linux's
    minimum ATO)."""
    h = _open()
    data = pattern(FULL)
    h.data_from_peer(1, data, at=10)
    h.expect_nothing()
    assert h.conn.timers() == {"delayed_ack": 50 * MS}
    h.fire(49.999)
    h.expect_nothing()
    h.fire(50)
    h.expect(h.bare_ack(1 + FULL))
    assert h.next_timer_ms() is None


def test_the_timeout_is_configurable() -> None:
    h = _open(DELAYED.with_changes(delayed_ack_timeout=200 * MS))
    h.data_from_peer(1, b"x", at=10)
    assert h.next_timer_ms() == 210
    h.fire(210)
    h.expect(h.bare_ack(2))


def test_the_second_full_sized_segment_is_acknowledged_at_once() -> None:
    """RFC 5681 4.2 / RFC 9293 3.8.6.3: an ACK SHOULD be generated for at least every
    second full-sized segment; the pending delayed ACK is cancelled by it."""
    h = _open()
    data = pattern(2 * FULL)
    h.data_from_peer(1, data[:FULL], at=10)
    h.expect_nothing()
    h.data_from_peer(1 + FULL, data[FULL:], at=12)
    h.expect(h.bare_ack(1 + 2 * FULL))
    assert h.next_timer_ms() is None
    # The count starts over: a third segment waits again.
    h.data_from_peer(1 + 2 * FULL, b"z" * FULL, at=20)
    h.expect_nothing()
    assert h.next_timer_ms() == 60


def test_small_segments_wait_for_the_timer_started_by_the_first() -> None:
    """RFC 9293 3.8.6.3: the delay is measured from the first unacknowledged arrival;
    later small segments do not push the deadline back."""
    h = _open()
    h.data_from_peer(1, b"a" * 10, at=10)
    h.data_from_peer(11, b"b" * 10, at=30)
    h.expect_nothing()
    assert h.next_timer_ms() == 50
    h.fire(50)
    h.expect(h.bare_ack(21))


def test_out_of_order_segment_is_acknowledged_at_once() -> None:
    """RFC 5681 4.2 / RFC 9293 3.10.7.4: "an immediate ACK SHOULD be generated when an
    out-of-order segment arrives" (the sender's duplicate-ACK signal)."""
    h = _open()
    h.data_from_peer(101, b"x" * 100, at=10)
    h.expect(h.bare_ack(1))
    assert h.next_timer_ms() is None


def test_segment_filling_the_gap_is_acknowledged_at_once() -> None:
    """RFC 5681 4.2: "an immediate ACK SHOULD be generated ... when a segment arrives
    that fills in all or part of a gap"."""
    h = _open()
    data = pattern(300)
    h.data_from_peer(201, data[200:], at=10)
    h.expect(h.bare_ack(1))
    h.data_from_peer(1, data[:100], at=20)  # fills part of the gap
    h.expect(h.bare_ack(101))
    h.data_from_peer(101, data[100:200], at=30)  # fills the rest
    h.expect(h.bare_ack(301))
    assert h.events() == [DataAvailable(100), DataAvailable(300)]
    assert h.next_timer_ms() is None


def test_quickack_acknowledges_every_segment_at_once() -> None:
    """TCP_QUICKACK: delayed ACK off for the connection; every segment is acknowledged
    when it arrives (RFC 9293 3.8.6.3 allows, never requires, the delay)."""
    h = _open(DELAYED.with_changes(quickack=True))
    h.data_from_peer(1, b"a" * 10, at=10)
    h.expect(h.bare_ack(11))
    h.data_from_peer(11, b"b" * FULL, at=11)
    h.expect(h.bare_ack(11 + FULL))
    assert h.next_timer_ms() is None


def test_data_we_send_carries_the_pending_ack_and_cancels_the_timer() -> None:
    """RFC 9293 3.8.6.3 / 3.10.7.4: the ACK rides on the next data segment (piggyback);
    once it has gone, the delayed-ACK timer has nothing left to do."""
    h = _open()
    h.data_from_peer(1, b"request", at=10)
    h.expect_nothing()
    assert h.conn.timers().keys() == {"delayed_ack"}
    assert h.conn.send(b"response", now=h.at(25)) == 8
    h.expect(h.data_out(1, b"response", ack=8, psh=True))
    assert h.conn.timers() == {"retransmit": 1025 * MS}  # no delayed ACK left
    h.fire(50)
    h.expect_nothing()


def test_delayed_ack_echoes_the_timestamp_of_the_earliest_unacknowledged_segment() -> None:
    """RFC 7323 4.3 (case A): with delayed ACKs TS.Recent is updated only by a segment
    starting at or below Last.ACK.sent, so the ACK of two segments echoes the first
    one's TSval (the RTT the sender measures includes the delay)."""
    h = TransferHarness(DELAYED.with_changes(timestamps=True))
    h.open_with(Options(mss=1460), peer_ts=h.peer_tsval(0))
    full = FULL - 12  # the timestamp option takes 12 octets of every segment
    data = pattern(2 * full)
    h.data_from_peer(1, data[:full], at=10, options=Options(timestamp=(h.peer_tsval(10), 0)))
    h.expect_nothing()
    h.data_from_peer(1 + full, data[full:], at=20, options=Options(timestamp=(h.peer_tsval(20), 0)))
    h.expect(h.bare_ack(1 + 2 * full, options=h.our_ts(h.peer_tsval(10))))


# -- SACK blocks on our ACKs (RFC 2018) ---------------------------------------------------


def _sack_receiver(timestamps: bool) -> TransferHarness:
    h = TransferHarness(PLAIN.with_changes(sack=True, timestamps=timestamps))
    peer_ts = h.peer_tsval(0) if timestamps else None
    h.open_with(Options(mss=1460, sack_permitted=True), peer_ts=peer_ts)
    return h


def _blocks(h: TransferHarness, *ranges: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """SACK blocks as the peer's stream offsets [left, right)."""
    return tuple((h.remote_seq(a), h.remote_seq(b)) for a, b in ranges)


@pytest.mark.parametrize(("timestamps", "limit"), [(False, 4), (True, 3)])
def test_sack_blocks_most_recent_first_and_as_many_as_fit(timestamps: bool, limit: int) -> None:
    """RFC 2018 4: the first block reports the segment that triggered the ACK; the rest
    repeat the most recently reported blocks. RFC 2018 3: at most 4 blocks fit in the
    40 octets of options, 3 next to the timestamp option."""
    h = _sack_receiver(timestamps)
    ts = Options(timestamp=(h.peer_tsval(0), 0)) if timestamps else Options()
    ecr = h.peer_tsval(0)
    holes = [(101 + 200 * i, 201 + 200 * i) for i in range(5)]  # 101-200, 301-400, ...
    for count, (left, _right) in enumerate(holes, start=1):
        h.data_from_peer(left, pattern(100, left), at=count, options=ts)
        recent = list(reversed(holes[:count]))[:limit]
        expected = Options(
            sack_blocks=_blocks(h, *recent),
            timestamp=(h.tsval(), ecr) if timestamps else None,
        )
        h.expect(h.bare_ack(1, options=expected))


def test_a_block_that_grows_is_reported_first_and_merged() -> None:
    """RFC 2018 4: the first block is the whole contiguous block holding the segment
    that triggered the ACK, extended to its neighbours."""
    h = _sack_receiver(False)
    h.data_from_peer(201, pattern(100, 201), at=1)
    h.expect(h.bare_ack(1, options=Options(sack_blocks=_blocks(h, (201, 301)))))
    h.data_from_peer(501, pattern(100, 501), at=2)
    h.expect(h.bare_ack(1, options=Options(sack_blocks=_blocks(h, (501, 601), (201, 301)))))
    h.data_from_peer(301, pattern(100, 301), at=3)  # extends the older block
    h.expect(h.bare_ack(1, options=Options(sack_blocks=_blocks(h, (201, 401), (501, 601)))))
    h.data_from_peer(201, pattern(100, 201), at=4)  # a duplicate inside it: still first
    h.expect(h.bare_ack(1, options=Options(sack_blocks=_blocks(h, (201, 401), (501, 601)))))


def test_filling_the_gap_drops_the_delivered_block_from_the_sack() -> None:
    """RFC 2018 4: blocks report only data above the cumulative ACK; once the gap fills
    and the ACK moves past a block it is no longer reported, and an ACK with nothing
    held carries no SACK option at all."""
    h = _sack_receiver(False)
    data = pattern(600)
    h.data_from_peer(101, data[100:200], at=1)
    h.data_from_peer(401, data[400:500], at=2)
    h.expect(
        h.bare_ack(1, options=Options(sack_blocks=_blocks(h, (101, 201)))),
        h.bare_ack(1, options=Options(sack_blocks=_blocks(h, (401, 501), (101, 201)))),
    )
    h.data_from_peer(1, data[:100], at=3)
    h.expect(h.bare_ack(201, options=Options(sack_blocks=_blocks(h, (401, 501)))))
    h.data_from_peer(201, data[200:400], at=4)
    h.expect(h.bare_ack(501))
    assert h.conn.receive(now=h.now) == data[:500]
