"""Loss recovery: fast retransmit and fast recovery (RFC 5681 3.2), NewReno partial and
full acknowledgments (RFC 6582 3.2), CUBIC's reduction (RFC 9438 4.6) and SACK-based
recovery (RFC 6675), exact segments with the congestion window checked."""

from __future__ import annotations

import pytest

from tcpstack.core.config import PLAIN
from tcpstack.core.segment import Options
from tests.core.transfer_support import TransferHarness, pattern

MSS = 100  # the peer's MSS: a 1000-octet initial window is ten segments


def _open(congestion_control: str = "newreno", *, sack: bool = False) -> TransferHarness:
    h = TransferHarness(PLAIN.with_changes(congestion_control=congestion_control, sack=sack))
    h.open_with(Options(mss=MSS, sack_permitted=sack))
    assert h.conn.cwnd == 10 * MSS  # RFC 6928 IW10, as Linux
    return h


def _send_window(h: TransferHarness, data: bytes, count: int = 10) -> None:
    """Send `data`; the first `count` segments of MSS octets go out at once."""
    assert h.conn.send(data, now=h.now) == len(data)
    h.expect(
        *(
            h.data_out(1 + i, data[i : i + MSS], psh=i + MSS == len(data))
            for i in range(0, count * MSS, MSS)
        )
    )


def _sack(h: TransferHarness, *blocks: tuple[int, int]) -> Options:
    """SACK blocks given as our stream offsets [left, right)."""
    return Options(sack_blocks=tuple((h.local_seq(a), h.local_seq(b)) for a, b in blocks))


# -- RFC 5681 3.2 / RFC 6582: fast retransmit and fast recovery ---------------------------


def test_three_duplicate_acks_retransmit_the_first_unacknowledged_segment() -> None:
    """RFC 5681 3.2 step 2 / RFC 6582 3.2 step 2: on the third duplicate ACK resend the
    segment at SND.UNA; ssthresh = max(FlightSize / 2, 2*SMSS) = 500 (equation 4) and
    cwnd = ssthresh + 3*SMSS = 800. The first two duplicates send nothing."""
    h = _open()
    data = pattern(1500)
    _send_window(h, data)
    h.ack_from_peer(1, at=50)
    h.ack_from_peer(1, at=51)
    h.expect_nothing()
    assert not h.conn.in_recovery
    h.ack_from_peer(1, at=52)
    h.expect(h.data_out(1, data[:MSS]))
    assert h.conn.in_recovery
    assert (h.conn.ssthresh, h.conn.cwnd) == (500, 800)


def test_each_further_duplicate_ack_inflates_cwnd_and_new_data_goes_when_it_fits() -> None:
    """RFC 5681 3.2 step 4: each further duplicate ACK adds SMSS to cwnd; step 5: send
    previously unsent data when cwnd allows: cwnd must exceed the 1000 octets in flight,
    so the sixth and seventh duplicates each release one new segment."""
    h = _open()
    data = pattern(1500)
    _send_window(h, data)
    for t in range(3):
        h.ack_from_peer(1, at=50 + t)
    h.expect(h.data_out(1, data[:MSS]))
    for dupack, cwnd in ((4, 900), (5, 1000)):
        h.ack_from_peer(1, at=50 + dupack)
        h.expect_nothing()
        assert h.conn.cwnd == cwnd
    h.ack_from_peer(1, at=56)
    h.expect(h.data_out(1001, data[1000:1100]))
    assert h.conn.cwnd == 1100
    h.ack_from_peer(1, at=57)
    h.expect(h.data_out(1101, data[1100:1200]))
    assert h.conn.cwnd == 1200


def test_a_full_ack_ends_recovery_and_deflates_cwnd_to_ssthresh() -> None:
    """RFC 6582 3.2 step 3: an ACK covering "recover" (the highest octet sent when the
    loss was detected) ends fast recovery with cwnd = ssthresh (option 2): 500 octets,
    of which 200 are still in flight, so three more segments go."""
    h = _open()
    data = pattern(1500)
    _send_window(h, data)
    for t in range(7):
        h.ack_from_peer(1, at=50 + t)
    assert len(h.sent()) == 3  # the retransmission and two new segments
    h.ack_from_peer(1001, at=100)
    assert not h.conn.in_recovery
    assert (h.conn.cwnd, h.conn.ssthresh) == (500, 500)
    h.expect(
        h.data_out(1201, data[1200:1300]),
        h.data_out(1301, data[1300:1400]),
        h.data_out(1401, data[1400:], psh=True),
    )


def test_a_partial_ack_retransmits_the_next_hole_at_once_and_deflates() -> None:
    """RFC 6582 3.2 step 4: an ACK below "recover" means the segment it points at was
    lost too: resend it at once; deflate cwnd by the octets acknowledged (400) and add
    back SMSS as they were at least SMSS: 1300 - 400 + 100 = 1000; send new data the
    new cwnd allows (900 in flight: one segment). Recovery goes on until the full ACK."""
    h = _open()
    data = pattern(1500)
    _send_window(h, data)
    # Segments 1 and 5 (offsets 1 and 401) are lost; 2-4 and 6-10 bring eight dupacks.
    for t in range(3):
        h.ack_from_peer(1, at=50 + t)
    h.expect(h.data_out(1, data[:MSS]))
    for t in range(3, 8):
        h.ack_from_peer(1, at=50 + t)
    h.expect(
        h.data_out(1001, data[1000:1100]),
        h.data_out(1101, data[1100:1200]),
        h.data_out(1201, data[1200:1300]),
    )
    assert h.conn.cwnd == 1300
    h.ack_from_peer(401, at=100)  # the resent segment 1 filled the first hole
    h.expect(h.data_out(401, data[400:500]), h.data_out(1301, data[1300:1400]))
    assert h.conn.in_recovery
    assert (h.conn.cwnd, h.conn.ssthresh) == (1000, 500)
    h.ack_from_peer(1301, at=150)  # everything up to "recover" and beyond
    assert not h.conn.in_recovery
    assert h.conn.cwnd == 500
    h.expect(h.data_out(1401, data[1400:], psh=True))


@pytest.mark.parametrize(("window", "ssthresh"), [(1000, 500), (300, 200)])
def test_ssthresh_is_half_the_flight_but_at_least_two_segments(window: int, ssthresh: int) -> None:
    """RFC 5681 equation 4: ssthresh = max(FlightSize / 2, 2*SMSS). With 300 octets in
    flight half is 150, so 2*SMSS = 200 applies; cwnd = ssthresh + 3*SMSS."""
    h = _open()
    data = pattern(window)
    _send_window(h, data, count=window // MSS)
    for t in range(3):
        h.ack_from_peer(1, at=50 + t)
    h.expect(h.data_out(1, data[:MSS], psh=window == MSS))
    assert (h.conn.ssthresh, h.conn.cwnd) == (ssthresh, ssthresh + 3 * MSS)


def test_acks_that_change_the_window_or_carry_data_are_not_duplicates() -> None:
    """RFC 5681 2 (DUPLICATE ACKNOWLEDGMENT): the ACK carries no data and does not change
    the advertised window (and acknowledges nothing new); a window update or a data
    segment in between does not count toward the three."""
    h = _open()
    data = pattern(1000)
    _send_window(h, data)
    h.ack_from_peer(1, at=50)  # duplicate 1
    h.ack_from_peer(1, at=51, window=60000)  # a window update: not a duplicate
    h.data_from_peer(1, b"x", at=52, window=60000)  # data: not a duplicate
    h.expect(h.bare_ack(2, seq=1001))
    h.ack_from_peer(1, at=53, seq=2, window=60000)  # duplicate 2
    h.expect_nothing()
    h.ack_from_peer(1, at=54, seq=2, window=60000)  # duplicate 3
    h.expect(h.data_out(1, data[:MSS], ack=2))


def test_duplicate_acks_for_data_sent_before_a_timeout_do_not_trigger_fast_retransmit() -> None:
    """RFC 6582 3.2 step 2 and section 4: after an RTO "recover" is SND.MAX; duplicate
    ACKs that do not cover more than it belong to the old window and must not cause a
    second reduction (one loss, one response)."""
    h = _open()
    data = pattern(1000)
    _send_window(h, data)
    h.fire(1000)
    h.expect(h.data_out(1, data[:MSS]))
    assert (h.conn.cwnd, h.conn.ssthresh) == (100, 500)
    for t in range(3):
        h.ack_from_peer(1, at=1010 + t)  # late duplicates from the first flight
    h.expect_nothing()
    assert not h.conn.in_recovery
    assert (h.conn.cwnd, h.conn.ssthresh) == (100, 500)


# -- CUBIC (RFC 9438) -----------------------------------------------------------------------


def test_cubic_fast_retransmit_reduces_cwnd_to_beta_times_cwnd() -> None:
    """RFC 9438 4.6: on a congestion event ssthresh = cwnd * beta_cubic (0.7) and
    cwnd = ssthresh: 1000 -> 700. The retransmission is the same as Reno's (RFC 5681
    3.2): the segment at SND.UNA."""
    h = _open("cubic")
    data = pattern(1000)
    _send_window(h, data)
    for t in range(3):
        h.ack_from_peer(1, at=50 + t)
    h.expect(h.data_out(1, data[:MSS]))
    assert (h.conn.ssthresh, h.conn.cwnd) == (700, 700)


# -- SACK recovery (RFC 6675) ---------------------------------------------------------------


def test_sack_recovery_resends_only_the_missing_range() -> None:
    """RFC 6675 5: segments 2-10 are SACKed (one growing block, RFC 2018 4), so only
    octets 1-100 are missing. Before recovery each SACKed segment lets one new segment
    go (limited transmit, RFC 3042: octets SACKed leave the pipe). At the third
    duplicate (IsLost: more than 2*SMSS SACKed above the hole) the hole is resent and
    nothing else, never an octet the peer SACKed; ssthresh = cwnd = FlightSize / 2,
    where the FlightSize leaves out the limited-transmit octets (RFC 5681 3.2 step 2:
    1000, not 1200). New data then goes whenever the pipe (octets in flight, neither
    SACKed nor lost, plus the resent ones) is below cwnd (NextSeg rule 2)."""
    h = _open(sack=True)
    data = pattern(1500)
    _send_window(h, data)
    h.ack_from_peer(1, at=50, options=_sack(h, (101, 201)))
    h.expect(h.data_out(1001, data[1000:1100]))
    h.ack_from_peer(1, at=51, options=_sack(h, (101, 301)))
    h.expect(h.data_out(1101, data[1100:1200]))
    assert not h.conn.in_recovery
    h.ack_from_peer(1, at=52, options=_sack(h, (101, 401)))
    h.expect(h.data_out(1, data[:MSS]))
    assert h.conn.in_recovery
    assert (h.conn.ssthresh, h.conn.cwnd) == (500, 500)
    # pipe = 1200 in flight - 300 SACKed = 900, falling by 100 per SACKed segment.
    for t, right in ((53, 501), (54, 601), (55, 701), (56, 801)):
        h.ack_from_peer(1, at=t, options=_sack(h, (101, right)))
        h.expect_nothing()
    h.ack_from_peer(1, at=57, options=_sack(h, (101, 901)))  # pipe 400: room for one
    h.expect(h.data_out(1201, data[1200:1300]))
    h.ack_from_peer(1, at=58, options=_sack(h, (101, 1001)))
    h.expect(h.data_out(1301, data[1300:1400]))
    # The resent hole and the limited-transmit segments arrive: a full ACK (RFC 6582's
    # recover is 1201); cwnd stays ssthresh, 200 in flight, the 100-octet rest goes.
    h.ack_from_peer(1201, at=80)
    assert not h.conn.in_recovery
    assert h.conn.cwnd == 500
    h.expect(h.data_out(1401, data[1400:], psh=True))


def test_sack_recovery_resends_each_hole_once_and_skips_sacked_octets() -> None:
    """RFC 6675 5 (NextSeg rule 1): segments 1 and 4 (octets 1-100, 301-400) are lost.
    The first hole is resent at the third duplicate; the second only once IsLost()
    holds for it (more than 2*SMSS SACKed above it) and the pipe leaves room; the
    SACKed octets between and above the holes are never resent."""
    h = _open(sack=True)
    data = pattern(1000)
    _send_window(h, data)
    h.ack_from_peer(1, at=50, options=_sack(h, (101, 201)))
    h.ack_from_peer(1, at=51, options=_sack(h, (101, 301)))
    h.ack_from_peer(1, at=52, options=_sack(h, (401, 501), (101, 301)))
    h.expect(h.data_out(1, data[:MSS]))
    h.ack_from_peer(1, at=53, options=_sack(h, (401, 601), (101, 301)))
    h.expect_nothing()  # 200 octets SACKed above the second hole: not lost yet
    h.ack_from_peer(1, at=54, options=_sack(h, (401, 701), (101, 301)))
    h.expect(h.data_out(301, data[300:400]))
    for t, right in ((55, 801), (56, 901)):
        h.ack_from_peer(1, at=t, options=_sack(h, (401, right), (101, 301)))
        h.expect_nothing()  # no unsent data, and every hole was resent once
    # The resent first hole arrives: a partial ACK (RFC 6582's recover is 1001).
    h.ack_from_peer(301, at=80, options=_sack(h, (401, 1001)))
    h.expect_nothing()
    assert h.conn.in_recovery
    h.ack_from_peer(1001, at=90)
    assert not h.conn.in_recovery
    assert h.conn.cwnd == 500
    assert h.next_timer_ms() is None


def test_sack_blocks_outside_the_flight_are_ignored() -> None:
    """RFC 2018 / RFC 6675 5.1: only blocks within SND.UNA .. SND.MAX describe data in
    flight; a block above SND.MAX (bogus) or below SND.UNA (old) is ignored, so it can
    neither trigger nor steer a retransmission."""
    h = _open(sack=True)
    data = pattern(1000)
    _send_window(h, data)
    bogus = Options(sack_blocks=((h.local_seq(1001), h.local_seq(2001)),))
    for t in range(2):
        h.ack_from_peer(1, at=50 + t, options=bogus)
    h.expect_nothing()
    assert not h.conn.in_recovery
