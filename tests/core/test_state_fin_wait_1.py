"""FIN_WAIT_1: RFC 9293 3.10.4 (CLOSE) and 3.10.7.4 (eight steps), exact segments.

We have sent our FIN (sequence number local_seq(1), so SND.NXT = local_seq(2)) and wait
for its ACK; the peer may still send data, its own FIN, or both in one segment.
"""

from __future__ import annotations

import pytest

from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import Closed, CloseReason, DataAvailable, EndOfStream
from tcpstack.core.state import State
from tests.core.harness import ACK, FIN, PSH, REMOTE_ISS, RESENDS_BEFORE_R2, RST, SYN, Harness

ESTABLISHED_PATH = [State.CLOSED, State.SYN_SENT, State.ESTABLISHED]


def shutdown_to_fin_wait_1(h: Harness) -> None:
    """ESTABLISHED, then shutdown(): the half-close that keeps our receive side open."""
    h.to_established()
    h.conn.shutdown(now=h.now)
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.state is State.FIN_WAIT_1


def test_close_sends_fin_and_arms_the_retransmission_timer() -> None:
    h = Harness()
    h.to_fin_wait_1()
    assert h.path == [*ESTABLISHED_PATH, State.FIN_WAIT_1]
    assert h.events() == []
    # The FIN occupies one sequence number and is retransmitted like data (RFC 9293
    # 3.10.4 ESTABLISHED: "form a FIN segment and send it"); RTO 1 s (RFC 6298 2.4).
    assert h.next_timer_ms() == 1000


def test_ack_of_our_fin_enters_fin_wait_2() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # RFC 9293 3.10.7.4 fifth step, FIN-WAIT-1: "if the FIN segment is now acknowledged,
    # then enter FIN-WAIT-2 and continue processing in that state".
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)), at=20)
    h.expect_nothing()
    assert h.path == [*ESTABLISHED_PATH, State.FIN_WAIT_1, State.FIN_WAIT_2]
    assert h.events() == []
    assert h.next_timer_ms() is None  # nothing left to retransmit


def test_ack_short_of_our_fin_keeps_fin_wait_1() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # A duplicate ACK (SEG.ACK = SND.UNA) does not acknowledge the FIN (fifth step).
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1)), at=20)
    h.expect_nothing()
    assert h.state is State.FIN_WAIT_1
    assert h.next_timer_ms() == 1000


def test_peer_fin_without_ack_of_ours_enters_closing() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # Simultaneous close (seed C5, C9): the peer's FIN crosses ours. Eighth step,
    # FIN-WAIT-1: "If our FIN has been ACKed ... enter TIME-WAIT ...; otherwise, enter
    # the CLOSING state". The FIN is acknowledged: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(1)), at=30)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.path == [*ESTABLISHED_PATH, State.FIN_WAIT_1, State.CLOSING]
    assert h.events() == [EndOfStream()]
    # Our FIN is still unacknowledged: its retransmission timer keeps running.
    assert h.next_timer_ms() == 1000


def test_fin_with_ack_of_our_fin_goes_straight_to_time_wait() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # Seed C4: the ACK of our FIN and the peer's FIN in one segment. Fifth step sees our
    # FIN acknowledged; eighth step, FIN-WAIT-1: "If our FIN has been ACKed (perhaps in
    # this segment), then enter TIME-WAIT, start the time-wait timer, turn off the other
    # timers". No stop in FIN_WAIT_2.
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(2)), at=250)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.path == [*ESTABLISHED_PATH, State.FIN_WAIT_1, State.TIME_WAIT]
    assert h.events() == [EndOfStream()]
    # 2*MSL from the arrival: 250 ms + 60 s (Config.msl 30 s, Linux's TCP_TIMEWAIT_LEN).
    assert h.next_timer_ms() == 250 + 60_000


def test_fin_without_ack_bit_is_dropped() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # Fifth step: "if the ACK bit is off, drop the segment and return". The FIN is not
    # taken, so nothing is acknowledged and the state stays.
    h.feed(h.peer(FIN, h.remote_seq(1)), at=5)
    h.expect_nothing()
    assert h.state is State.FIN_WAIT_1
    assert h.events() == []


def test_fin_is_retransmitted_with_backoff_then_the_connection_times_out() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # RFC 6298 5.4-5.6: resend the earliest unacknowledged segment (our FIN), double the
    # RTO, capped at Config.max_rto 120 s. RFC 9293 3.8.3 R2: once the 924.6 s budget of
    # data_retries (15, Linux's tcp_retries2) is spent, the next expiry closes it.
    fin = h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1))
    deadline = 0
    for k in range(RESENDS_BEFORE_R2):
        deadline += min(1000 << k, 120_000)
        assert h.next_timer_ms() == deadline
        h.fire(deadline)
        h.expect(fin)
        assert h.state is State.FIN_WAIT_1
    # 1, 3, 7, 15, 31, 63, 127 s, then every 120 s: the last resend goes out at 847 s.
    assert deadline == 847_000
    deadline += 120_000
    assert h.next_timer_ms() == deadline
    h.fire(deadline)
    h.expect_nothing()  # giving up sends nothing (R2: "close the connection")
    assert h.path == [*ESTABLISHED_PATH, State.FIN_WAIT_1, State.CLOSED]
    assert h.events() == [Closed(CloseReason.TIMEOUT)]
    assert h.next_timer_ms() is None


def test_early_timer_call_does_not_resend_the_fin() -> None:
    h = Harness()
    h.to_fin_wait_1()
    h.fire(999)
    h.expect_nothing()
    assert h.next_timer_ms() == 1000


def test_ack_after_a_fin_retransmission_enters_fin_wait_2() -> None:
    h = Harness()
    h.to_fin_wait_1()
    h.fire(1000)
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.next_timer_ms() == 3000
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)), at=1040)
    h.expect_nothing()
    assert h.state is State.FIN_WAIT_2
    assert h.next_timer_ms() is None


def test_data_is_still_received_and_acknowledged() -> None:
    h = Harness()
    shutdown_to_fin_wait_1(h)
    # Seventh step, FIN-WAIT-1: "deliver the segment text into the user RECEIVE
    # buffers" and ACK it. The data crosses the wrap of the peer's sequence space.
    h.feed(h.peer(PSH | ACK, h.remote_seq(1), h.local_seq(1), payload=b"late data"), at=40)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(10)))
    assert h.events() == [DataAvailable(9)]
    assert h.conn.receive(now=h.now) == b"late data"
    assert h.state is State.FIN_WAIT_1
    assert h.next_timer_ms() == 1000  # our FIN is still outstanding


def test_data_with_ack_of_our_fin_is_received_in_fin_wait_2() -> None:
    h = Harness()
    shutdown_to_fin_wait_1(h)
    h.feed(h.peer(PSH | ACK, h.remote_seq(1), h.local_seq(2), payload=b"bye"), at=40)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(4)))
    assert h.path == [*ESTABLISHED_PATH, State.FIN_WAIT_1, State.FIN_WAIT_2]
    assert h.events() == [DataAvailable(3)]
    assert h.conn.receive(now=h.now) == b"bye"


def test_data_and_fin_with_ack_of_ours_in_one_segment_enter_time_wait() -> None:
    h = Harness()
    shutdown_to_fin_wait_1(h)
    h.feed(h.peer(PSH | FIN | ACK, h.remote_seq(1), h.local_seq(2), payload=b"end"), at=8)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(5)))
    assert h.path == [*ESTABLISHED_PATH, State.FIN_WAIT_1, State.TIME_WAIT]
    assert h.events() == [DataAvailable(3), EndOfStream()]
    assert h.conn.receive(now=h.now) == b"end"
    assert h.next_timer_ms() == 8 + 60_000


def test_close_with_unsent_data_sends_the_data_then_the_fin_on_the_last_segment() -> None:
    h = Harness()
    h.to_established()
    # The peer shrinks its window to 1000 octets (fifth step: SND.WND <- SEG.WND).
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=1000), at=1)
    h.expect_nothing()
    data = bytes(i % 251 for i in range(3000))
    assert h.conn.send(data, now=h.now) == 3000
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=data[:1000]))
    # RFC 9293 3.10.4 ESTABLISHED: "Queue this until all preceding SENDs have been
    # segmentized, then form a FIN segment and send it." The window is full: no FIN yet.
    h.conn.close(now=h.now)
    h.expect_nothing()
    assert h.state is State.FIN_WAIT_1
    # The peer takes the first 1000 octets and opens its window: the rest goes out in
    # MSS-sized pieces and the FIN rides on the last one (sequence number 3001).
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1001)), at=50)
    h.expect(
        h.ours(ACK, h.local_seq(1001), h.remote_seq(1), payload=data[1000:2460]),
        h.ours(PSH | FIN | ACK, h.local_seq(2461), h.remote_seq(1), payload=data[2460:]),
    )
    assert h.state is State.FIN_WAIT_1
    # Data acknowledged, FIN not yet: still FIN_WAIT_1.
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(3001)), at=60)
    h.expect_nothing()
    assert h.state is State.FIN_WAIT_1
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(3002)), at=61)
    h.expect_nothing()
    assert h.path == [*ESTABLISHED_PATH, State.FIN_WAIT_1, State.FIN_WAIT_2]
    assert h.next_timer_ms() is None


def test_fin_into_a_closed_window_never_times_out_while_the_peer_answers() -> None:
    h = Harness()
    h.to_established()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0), at=1)
    h.conn.close(now=h.now)
    fin = h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1))
    h.expect(fin)
    # The peer keeps its window closed and answers every resent FIN with an ACK. RFC
    # 9293 3.8.6.1 (MUST-37): "As long as the receiving TCP peer continues to send
    # acknowledgments in response to the probe segments, the sending TCP peer MUST
    # allow the connection to stay open" -- well past the 15 resends of R2 (3.8.3).
    deadline = 1
    for k in range(20):
        deadline += min(1000 << k, 120_000)
        assert h.next_timer_ms() == deadline
        h.fire(deadline)
        h.expect(fin)
        h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=0), at=deadline + 20)
        h.expect_nothing()
        assert h.state is State.FIN_WAIT_1
    # The window opens and the FIN is acknowledged: FIN_WAIT_2 as usual.
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)), at=deadline + 30)
    h.expect_nothing()
    assert h.path == [*ESTABLISHED_PATH, State.FIN_WAIT_1, State.FIN_WAIT_2]
    assert h.events() == []


def test_send_after_shutdown_is_an_error_that_changes_nothing() -> None:
    h = Harness()
    shutdown_to_fin_wait_1(h)
    # RFC 9293 3.10.2 SEND in FIN-WAIT-1: 'return "error: connection closing"'.
    with pytest.raises(InvalidOperation) as raised:
        h.conn.send(b"more", now=h.now)
    assert raised.value.call == "send"
    assert raised.value.state is State.FIN_WAIT_1
    h.expect_nothing()
    assert h.state is State.FIN_WAIT_1
    assert h.conn.send_buffered == 0


def test_second_shutdown_is_an_error_that_sends_no_second_fin() -> None:
    h = Harness()
    shutdown_to_fin_wait_1(h)
    # RFC 9293 3.10.4 CLOSE in FIN-WAIT-1: "error: connection closing" (or "ok" as long
    # as a second FIN is not emitted).
    with pytest.raises(InvalidOperation) as raised:
        h.conn.shutdown(now=h.now)
    assert raised.value.state is State.FIN_WAIT_1
    h.expect_nothing()
    # close() after shutdown() releases the connection without another FIN.
    h.conn.close(now=h.now)
    h.expect_nothing()
    assert h.state is State.FIN_WAIT_1


def test_rst_at_rcv_nxt_closes_with_reset() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # Second step, FIN-WAIT-1 (RFC 5961 3.2 as adopted by RFC 9293): an RST exactly at
    # RCV.NXT resets the connection; "connection reset" to the user, nothing sent.
    h.feed(h.peer(RST, h.remote_seq(1)), at=70)
    h.expect_nothing()
    assert h.path == [*ESTABLISHED_PATH, State.FIN_WAIT_1, State.CLOSED]
    assert h.events() == [Closed(CloseReason.RESET)]
    assert h.next_timer_ms() is None


def test_in_window_rst_not_at_rcv_nxt_gets_a_challenge_ack() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # Second step, case 3: in the window but not exactly RCV.NXT -> "TCP endpoints MUST
    # send an acknowledgment (challenge ACK)" <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>
    # (RFC 5961 3.2, adopted by RFC 9293).
    h.feed(h.peer(RST, h.remote_seq(100)), at=70)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(1)))
    assert h.state is State.FIN_WAIT_1
    assert h.events() == []


def test_rst_outside_the_window_is_dropped_silently() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # First step: an unacceptable segment is ACKed "unless the RST bit is set, if so
    # drop the segment and return".
    h.feed(h.peer(RST, h.remote_seq(-1)), at=70)
    h.expect_nothing()
    assert h.state is State.FIN_WAIT_1


def test_syn_in_window_gets_a_challenge_ack() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # Fourth step, synchronized states: a SYN gets a challenge ACK (RFC 5961 4.2), the
    # connection stays.
    h.feed(h.peer(SYN, h.remote_seq(50)), at=80)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(1)))
    assert h.state is State.FIN_WAIT_1
    assert h.events() == []
    assert h.next_timer_ms() == 1000


def test_old_syn_is_unacceptable_and_gets_an_ack() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # The peer's original SYN again: below RCV.NXT, so the first step answers it.
    h.feed(h.peer(SYN, REMOTE_ISS), at=80)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(1)))
    assert h.state is State.FIN_WAIT_1


def test_abort_sends_rst_at_snd_nxt() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # RFC 9293 3.10.5 ABORT in FIN-WAIT-1: <SEQ=SND.NXT><CTL=RST>.
    h.conn.abort(now=h.at(90))
    h.expect(h.ours(RST, h.local_seq(2), window=0))
    assert h.path == [*ESTABLISHED_PATH, State.FIN_WAIT_1, State.CLOSED]
    assert h.events() == [Closed(CloseReason.ABORTED)]
    assert h.next_timer_ms() is None
