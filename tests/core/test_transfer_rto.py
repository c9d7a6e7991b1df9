"""Retransmission timer: RFC 6298 (RTO computation, backoff, Karn, 5.7), RFC 7323 4.1
(RTTM from echoed timestamps), RFC 5681 3.1 (the loss window after an RTO), RFC 9438
4.8 (CUBIC after an RTO), RFC 9293 3.8.3 (R1, R2) and RFC 5482 (user timeout), exact
segments on the virtual clock."""

from __future__ import annotations

import pytest

from tcpstack.core.config import MILLISECOND, PLAIN, SECOND
from tcpstack.core.connection import LINUX_RTO_MIN, retransmission_budget
from tcpstack.core.events import Closed, CloseReason, Established
from tcpstack.core.segment import Options
from tcpstack.core.state import State
from tcpstack.core.trace import TraceKind
from tests.core.harness import ACK, LOCAL_ISS, MS, MSS_OPTION, SYN
from tests.core.transfer_support import TransferHarness, pattern

R1_NOTE = "R1 reached: retransmissions suggest a broken path"


def _open(peer_mss: int = 1460, at: float = 0, **changes: object) -> TransferHarness:
    h = TransferHarness(PLAIN.with_changes(**changes))
    h.open_with(Options(mss=peer_mss), at=at)
    return h


# -- RFC 6298 5.5: backoff ----------------------------------------------------------------


def test_rto_doubles_on_each_expiry_and_stops_at_max_rto() -> None:
    """RFC 6298 5.5: RTO <- RTO * 2 on each expiry; 2.5: a maximum may be placed on it
    (here max_rto = 10 s). 5.4: each expiry resends the earliest unacknowledged segment.
    RFC 9293 3.8.3 R2 as Linux measures tcp_retries2 = 15 with this cap: (2**6 - 1) *
    200 ms + 10 * 10 s = 112.6 s, so the expiry at 115 s closes the connection."""
    h = _open(max_rto=10 * SECOND)
    assert h.conn.send(b"x", now=h.now) == 1
    segment = h.data_out(1, b"x", psh=True)
    h.expect(segment)
    expiries = [1_000, 3_000, 7_000, 15_000, 25_000, 35_000, 45_000, 55_000, 65_000]
    expiries += [75_000, 85_000, 95_000, 105_000]
    rtos = [2_000, 4_000, 8_000] + [10_000] * 10
    for deadline, rto in zip(expiries, rtos, strict=True):
        assert h.next_timer_ms() == deadline
        h.fire(deadline - 0.001)
        h.expect_nothing()
        h.fire(deadline)
        h.expect(segment)
        assert h.conn.rto == rto * MS
    assert retransmission_budget(15, LINUX_RTO_MIN, 10 * SECOND) == 112_600 * MS
    assert h.next_timer_ms() == 115_000
    h.fire(115_000)
    h.expect_nothing()
    assert h.state is State.CLOSED
    assert h.events() == [Closed(CloseReason.TIMEOUT)]


def test_rto_never_exceeds_the_default_max_of_120_seconds() -> None:
    """RFC 6298 2.5 (Linux: TCP_RTO_MAX = 120 s): 1, 2, 4 ... 64, then 120, 120."""
    h = _open()
    assert h.conn.send(b"y", now=h.now) == 1
    segment = h.data_out(1, b"y", psh=True)
    h.expect(segment)
    deadline: float = 0
    intervals = []
    for _ in range(10):
        next_deadline = h.next_timer_ms()
        assert next_deadline is not None
        intervals.append(next_deadline - deadline)
        deadline = next_deadline
        h.fire(deadline)
        h.expect(segment)
    assert intervals == [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000] + [120_000] * 3
    assert h.conn.rto == 120 * SECOND


# -- RFC 6298 2: the computation ------------------------------------------------------------


def test_first_and_second_samples_follow_the_formulas() -> None:
    """RFC 6298 2.2: first R -> SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, K*RTTVAR);
    2.3: RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|, SRTT <- 7/8 SRTT + 1/8 R'. min_rto is
    lowered to 1 ms so that 2.4 does not round the results up."""
    h = _open(at=40, min_rto=1 * MILLISECOND)
    # The SYN (never resent) timed 40 ms: SRTT 40, RTTVAR 20, RTO 40 + 4*20 = 120 ms.
    assert (h.conn.srtt, h.conn.rttvar, h.conn.rto) == (40 * MS, 20 * MS, 120 * MS)
    assert h.conn.send(b"a" * 10, now=h.now) == 10
    h.expect(h.data_out(1, b"a" * 10, psh=True))
    assert h.next_timer_ms() == 160
    # R' = 30 ms: RTTVAR = 15 + 2.5 = 17.5, SRTT = 35 + 3.75 = 38.75, RTO = 108.75 ms.
    h.ack_from_peer(11, at=70)
    h.expect_nothing()
    assert (h.conn.srtt, h.conn.rttvar, h.conn.rto) == (38_750, 17_500, 108_750)
    assert h.next_timer_ms() is None  # 5.2: all data acknowledged, timer off
    assert h.conn.send(b"b", now=h.now) == 1
    h.expect(h.data_out(11, b"b", psh=True))
    assert h.next_timer_ms() == 70 + 108.75  # 5.1: armed with the current RTO


def test_rto_is_rounded_up_to_min_rto() -> None:
    """RFC 6298 2.4: whenever RTO is computed, if it is below the minimum, round it up
    (min_rto = 200 ms, Linux's TCP_RTO_MIN)."""
    h = _open(at=10, min_rto=200 * MILLISECOND)
    assert (h.conn.srtt, h.conn.rttvar) == (10 * MS, 5 * MS)
    assert h.conn.rto == 200 * MS  # not 10 + 4*5 = 30 ms
    assert h.conn.send(b"z", now=h.now) == 1
    h.sent()
    assert h.next_timer_ms() == 210


# -- Karn's rule and RTTM -----------------------------------------------------------------


@pytest.mark.parametrize("timestamps", [False, True])
def test_sample_from_a_retransmitted_segment_only_with_timestamps(timestamps: bool) -> None:
    """RFC 6298 3 (Karn): without timestamps an ACK of a retransmitted segment gives no
    RTT sample; the backed-off RTO stays. RFC 7323 4.1 (RTTM): with timestamps the ACK
    echoes the TSval of the transmission it answers (the retransmission), so it is a
    valid sample: R' = 450 - 400 = 50 ms."""
    h = TransferHarness(PLAIN.with_changes(timestamps=timestamps, min_rto=10 * MILLISECOND))
    peer_ts = h.peer_tsval(100) if timestamps else None
    h.open_with(Options(mss=1460), peer_ts=peer_ts, at=100)
    assert (h.conn.srtt, h.conn.rto) == (100 * MS, 300 * MS)
    assert h.conn.send(b"k", now=h.now) == 1
    ts_first = h.our_ts(h.peer_tsval(100)) if timestamps else Options()
    h.expect(h.data_out(1, b"k", psh=True, options=ts_first))
    assert h.next_timer_ms() == 400
    h.fire(400)
    ts_again = h.our_ts(h.peer_tsval(100)) if timestamps else Options()
    h.expect(h.data_out(1, b"k", psh=True, options=ts_again))
    assert h.conn.rto == 600 * MS
    echo = Options(timestamp=(h.peer_tsval(450), h.tsval(400))) if timestamps else Options()
    h.ack_from_peer(2, at=450, options=echo)
    h.expect_nothing()
    if timestamps:
        # RTTVAR = (3*50 + |100 - 50|)/4 = 50, SRTT = (7*100 + 50)/8 = 93.75 ms.
        assert (h.conn.srtt, h.conn.rttvar, h.conn.rto) == (93_750, 50 * MS, 293_750)
    else:
        assert (h.conn.srtt, h.conn.rto) == (100 * MS, 600 * MS)


def test_karn_times_only_new_data_after_an_ack_of_a_retransmission() -> None:
    """RFC 6298 3 (Karn) / 5.7 note: after the ACK of a resent segment the backed-off
    RTO is kept until a segment sent exactly once is acknowledged."""
    h = _open(at=100, min_rto=10 * MILLISECOND)
    assert h.conn.send(b"k", now=h.now) == 1
    h.expect(h.data_out(1, b"k", psh=True))
    h.fire(400)
    h.expect(h.data_out(1, b"k", psh=True))
    h.ack_from_peer(2, at=450)
    assert h.conn.send(b"l", now=h.now) == 1
    h.expect(h.data_out(2, b"l", psh=True))
    assert h.next_timer_ms() == 450 + 600  # still the backed-off RTO
    h.ack_from_peer(3, at=500)  # sent once: R = 50 ms
    assert (h.conn.srtt, h.conn.rto) == (93_750, 293_750)


# -- RFC 6298 5.7: the 3 s RTO after a lost SYN -------------------------------------------


def test_rto_is_three_seconds_after_our_syn_ack_was_retransmitted() -> None:
    """RFC 6298 5.7: the timer expired awaiting the ACK of our SYN,ACK (passive open),
    so the RTO MUST be re-initialised to 3 s when data transmission begins."""
    h = TransferHarness()
    h.to_syn_received()
    assert h.next_timer_ms() == 1000
    h.fire(1000)
    h.expect(h.ours(SYN | ACK, LOCAL_ISS, h.remote_seq(1), options=MSS_OPTION))
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1)), at=1100)
    h.expect_nothing()
    assert h.events() == [Established()]
    assert h.conn.srtt is None  # Karn: the resent SYN,ACK gives no sample
    assert h.conn.rto == 3 * SECOND
    assert h.conn.send(b"d", now=h.now) == 1
    h.expect(h.data_out(1, b"d", psh=True))
    assert h.next_timer_ms() == 4100


def test_rto_is_not_reset_to_three_seconds_when_the_syn_ack_was_not_lost() -> None:
    """RFC 6298 5.7 applies only after the SYN timer expired: a handshake that gave a
    sample (50 ms) keeps the computed RTO (here min_rto = 1 s)."""
    h = TransferHarness()
    h.to_syn_received()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1)), at=50)
    assert h.events() == [Established()]
    assert (h.conn.srtt, h.conn.rto) == (50 * MS, 1 * SECOND)
    assert h.conn.send(b"d", now=h.now) == 1
    h.sent()
    assert h.next_timer_ms() == 1050


# -- RFC 5681 3.1 / RFC 6298 5.4: after a timeout -----------------------------------------


def test_rto_collapses_cwnd_to_one_segment_and_slow_start_resends_from_snd_una() -> None:
    """RFC 6298 5.4: resend the earliest unacknowledged segment; RFC 5681 3.1 equation 4:
    ssthresh = max(FlightSize / 2, 2*SMSS) = 500, and the loss window cwnd = 1 SMSS.
    Slow start then goes on from SND.UNA, resending what was in flight; each ACK grows
    cwnd by the bytes it acknowledges, at most 2*SMSS (RFC 3465's L)."""
    h = _open(peer_mss=100, congestion_control="newreno")
    assert h.conn.cwnd == 1000  # RFC 6928 IW10 (Linux)
    data = pattern(1000)
    assert h.conn.send(data, now=h.now) == 1000
    h.expect(*(h.data_out(1 + i, data[i : i + 100], psh=i == 900) for i in range(0, 1000, 100)))
    h.fire(1000)
    h.expect(h.data_out(1, data[:100]))  # only the first segment: cwnd is 1 SMSS
    assert (h.conn.cwnd, h.conn.ssthresh) == (100, 500)
    assert h.next_timer_ms() == 3000  # 5.5-5.6: backed off to 2 s
    # The ACK of the resent segment: cwnd 100 + 100 = 200, two segments from SND.UNA.
    h.ack_from_peer(101, at=1100)
    h.expect(h.data_out(101, data[100:200]), h.data_out(201, data[200:300]))
    assert h.conn.cwnd == 200
    assert h.next_timer_ms() == 3100  # restarted, no sample (Karn): still 2 s
    # Both acknowledged: cwnd 200 + min(200, 2*SMSS) = 400, four more segments.
    h.ack_from_peer(301, at=1200)
    h.expect(*(h.data_out(1 + i, data[i : i + 100]) for i in range(300, 700, 100)))
    assert h.conn.cwnd == 400
    # The receiver held the rest: one ACK covers everything, slow start to 600 >= 500.
    h.ack_from_peer(1001, at=1300)
    h.expect_nothing()
    assert (h.conn.cwnd, h.conn.ssthresh) == (600, 500)
    assert h.next_timer_ms() is None


def test_cubic_timeout_sets_ssthresh_to_beta_times_cwnd_and_cwnd_to_one_segment() -> None:
    """RFC 9438 4.8: on an RTO CUBIC sets ssthresh with beta_cubic = 0.7 (as on a
    congestion event, 4.6) and cwnd to one segment as Reno does (RFC 5681 3.1)."""
    h = _open(peer_mss=100, congestion_control="cubic")
    data = pattern(1000)
    assert h.conn.send(data, now=h.now) == 1000
    assert len(h.sent()) == 10
    h.fire(1000)
    h.expect(h.data_out(1, data[:100]))
    assert (h.conn.cwnd, h.conn.ssthresh) == (100, 700)


# -- RFC 5482 / TCP_USER_TIMEOUT ----------------------------------------------------------


def test_user_timeout_closes_exactly_that_long_after_the_first_transmission() -> None:
    """RFC 5482 (TCP_USER_TIMEOUT, RFC 9293 3.9.1 "timeout"): data unacknowledged for
    user_timeout ends the connection. The timer is clamped to it (Linux's
    tcp_clamp_rto_to_user_timeout): sent at 10 ms, resent at 1010 ms, and the next
    expiry is at 10 + 2500 ms, not at 1010 + 2000 ms."""
    h = _open(user_timeout=2500 * MILLISECOND)
    h.at(10)
    assert h.conn.send(b"u", now=h.now) == 1
    segment = h.data_out(1, b"u", psh=True)
    h.expect(segment)
    h.fire(1010)
    h.expect(segment)
    assert h.next_timer_ms() == 2510
    h.fire(2509.999)
    h.expect_nothing()
    assert h.path[-1] is State.ESTABLISHED
    h.fire(2510)
    h.expect_nothing()
    assert h.state is State.CLOSED
    assert h.events() == [Closed(CloseReason.USER_TIMEOUT)]
    assert h.conn.close_reason is CloseReason.USER_TIMEOUT
    assert h.next_timer_ms() is None


def test_user_timeout_shorter_than_the_rto_ends_the_connection_on_time() -> None:
    """RFC 5482: with user_timeout = 600 ms and an RTO of 1 s the first timer is clamped
    too: the connection closes 600 ms after the data went out, without a resend."""
    h = _open(user_timeout=600 * MILLISECOND)
    h.at(10)
    assert h.conn.send(b"u", now=h.now) == 1
    h.expect(h.data_out(1, b"u", psh=True))
    assert h.next_timer_ms() == 610
    h.fire(610)
    h.expect_nothing()
    assert h.events() == [Closed(CloseReason.USER_TIMEOUT)]


def test_user_timeout_counts_from_the_head_segment_after_an_ack() -> None:
    """RFC 5482: an ACK of new data starts the clock over for what stays unacknowledged
    (the timer restarts, RFC 6298 5.3)."""
    h = _open(peer_mss=100, user_timeout=2500 * MILLISECOND)
    data = pattern(200)
    assert h.conn.send(data, now=h.now) == 200
    h.expect(h.data_out(1, data[:100]), h.data_out(101, data[100:], psh=True))
    h.ack_from_peer(101, at=800)
    assert h.next_timer_ms() == 1800
    h.fire(1800)
    h.expect(h.data_out(101, data[100:], psh=True))
    assert h.next_timer_ms() == 3300  # 800 + 2500, before 1800 + 2000
    h.fire(3300)
    assert h.events() == [Closed(CloseReason.USER_TIMEOUT)]


def test_user_timeout_longer_than_the_r2_budget_replaces_it() -> None:
    """RFC 5482 / RFC 9293 3.8.3: with a user timeout of 1000 s the connection outlives
    the 924.6 s R2 budget: the resend at 967 s still happens, the end comes at 1000 s."""
    h = _open(user_timeout=1000 * SECOND)
    assert h.conn.send(b"v", now=h.now) == 1
    segment = h.data_out(1, b"v", psh=True)
    h.expect(segment)
    resends = [1, 3, 7, 15, 31, 63, 127, 247, 367, 487, 607, 727, 847, 967]
    for second in resends:
        assert h.next_timer_ms() == second * 1000
        h.fire(second * 1000)
        h.expect(segment)
    assert h.next_timer_ms() == 1_000_000
    h.fire(1_000_000)
    h.expect_nothing()
    assert h.events() == [Closed(CloseReason.USER_TIMEOUT)]


def test_user_timeout_ends_a_connection_whose_peer_holds_a_zero_window() -> None:
    """RFC 5482 (and Linux's tcp_rtx_probe0_timed_out): when the peer shrinks its window
    to zero with our data in flight, the resends act as probes (RFC 9293 3.8.6.1) and
    the answers keep the connection open, except past the user timeout, which the
    application set precisely so that a stalled transfer ends."""
    h = _open(user_timeout=2500 * MILLISECOND)
    h.at(10)
    assert h.conn.send(b"w", now=h.now) == 1
    segment = h.data_out(1, b"w", psh=True)
    h.expect(segment)
    h.ack_from_peer(1, at=100, window=0)  # window closed, nothing acknowledged
    h.expect_nothing()
    h.fire(1010)
    h.expect(segment)
    h.ack_from_peer(1, at=1050, window=0)  # the probe is answered: still closed
    h.expect_nothing()
    assert h.next_timer_ms() == 2510
    h.fire(2510)
    h.expect_nothing()
    assert h.events() == [Closed(CloseReason.USER_TIMEOUT)]
    assert h.next_timer_ms() is None


# -- RFC 9293 3.8.3: R1 and R2 ----------------------------------------------------------


def test_r1_is_reported_once_at_the_r1_retransmission() -> None:
    """RFC 9293 3.8.3 R1 (MUST-20): after R1 retransmissions (r1_retries = 3) the layer
    above hears that the path may be broken; the connection carries on."""
    h = _open()
    assert h.conn.send(b"r", now=h.now) == 1
    h.sent()
    for deadline in (1_000, 3_000, 7_000, 15_000):
        h.fire(deadline)
        h.sent()
    notes = [r for r in h.trace.of_kind(TraceKind.EVENT) if r.data.get("note") == R1_NOTE]
    assert [r.time for r in notes] == [7_000 * MS]
    assert h.state is State.ESTABLISHED


def test_r1_threshold_is_configurable() -> None:
    h = _open(r1_retries=1)
    assert h.conn.send(b"r", now=h.now) == 1
    h.sent()
    h.fire(1_000)
    notes = [r for r in h.trace.of_kind(TraceKind.EVENT) if r.data.get("note") == R1_NOTE]
    assert [r.time for r in notes] == [1_000 * MS]


@pytest.mark.parametrize(
    ("retries", "expected_ms"),
    [
        (15, 924_600),  # Linux's default tcp_retries2: 1023 * 0.2 s + 6 * 120 s
        (0, 200),
        (2, 1_400),  # (2**3 - 1) * 200 ms
        (9, 204_600),  # the last doubling step: (2**10 - 1) * 200 ms
        (10, 324_600),  # then one 120 s step per retry
    ],
)
def test_retransmission_budget_is_linux_tcp_model_timeout(retries: int, expected_ms: int) -> None:
    """RFC 9293 3.8.3 R2 in time, as Linux turns tcp_retries2 into a budget: the sum of
    `retries` doubling RTOs from 200 ms, each capped at 120 s."""
    assert retransmission_budget(retries, 200 * MILLISECOND, 120 * SECOND) == expected_ms * MS


def test_rto_is_three_seconds_after_our_syn_was_retransmitted() -> None:
    """RFC 6298 5.7, active open: the SYN was resent at 1 s, so the handshake gives no
    sample (Karn) and data transmission starts with RTO = 3 s."""
    h = TransferHarness()
    h.conn.open(now=h.now)
    syn = h.ours(SYN, LOCAL_ISS, window=65535, options=MSS_OPTION)
    h.expect(syn)
    h.fire(1000)
    h.expect(syn)
    assert h.conn.rto == 2 * SECOND  # 5.5 backoff while the SYN is unanswered
    h.feed(h.peer(SYN | ACK, h.remote_seq(0), h.local_seq(1), options=MSS_OPTION), at=1200)
    h.expect(h.bare_ack(1))
    assert (h.conn.srtt, h.conn.rto) == (None, 3 * SECOND)
    assert h.conn.send(b"d", now=h.now) == 1
    h.expect(h.data_out(1, b"d", psh=True))
    assert h.next_timer_ms() == 4200
