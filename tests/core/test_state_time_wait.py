"""TIME_WAIT: RFC 9293 3.10.7.4 (eight steps) and 3.10.8 (timeouts), exact segments.

Both FINs are exchanged and acknowledged; the active closer waits 2*MSL (seed C11) so
that (a) a lost final ACK can be sent again when the peer retransmits its FIN and (b) old
duplicates die out. RCV.NXT = remote_seq(2), SND.NXT = local_seq(2).
"""

from __future__ import annotations

import pytest

from tcpstack.core.config import PLAIN, SECOND
from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import Closed, CloseReason, EndOfStream
from tcpstack.core.state import State
from tests.core.harness import (
    ACK,
    FIN,
    LOCAL_ISS,
    MSS_OPTION,
    PSH,
    REMOTE_ISS,
    RST,
    SYN,
    Harness,
)

TIME_WAIT_PATH = [
    State.CLOSED,
    State.SYN_SENT,
    State.ESTABLISHED,
    State.FIN_WAIT_1,
    State.FIN_WAIT_2,
    State.TIME_WAIT,
]


def test_time_wait_lasts_exactly_2msl_then_closes_normally() -> None:
    h = Harness()
    h.to_time_wait()
    assert h.path == TIME_WAIT_PATH
    assert h.events() == [EndOfStream()]
    # The peer's FIN arrived at 0: 2*MSL = 60 s (Config.msl = 30 s, Linux's fixed
    # TCP_TIMEWAIT_LEN), and no other timer runs.
    assert h.next_timer_ms() == 60_000
    assert h.conn.timers() == {"time_wait": 60_000 * 1000}
    h.fire(59_999.999)
    h.expect_nothing()
    assert h.state is State.TIME_WAIT
    # RFC 9293 3.10.8: "If the time-wait timeout expires on a connection, delete the
    # TCB, enter the CLOSED state, and return." No segment.
    h.fire(60_000)
    h.expect_nothing()
    assert h.path == [*TIME_WAIT_PATH, State.CLOSED]
    assert h.events() == [Closed(CloseReason.NORMAL)]
    assert h.next_timer_ms() is None


def test_msl_is_configurable() -> None:
    h = Harness(PLAIN.with_changes(msl=1 * SECOND))
    h.to_fin_wait_2()
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(2)), at=100)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.next_timer_ms() == 100 + 2_000
    h.fire(2_099)
    assert h.state is State.TIME_WAIT
    h.fire(2_100)
    h.expect_nothing()
    assert h.path == [*TIME_WAIT_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.NORMAL)]


def test_retransmitted_fin_is_acked_again_and_restarts_2msl() -> None:
    h = Harness()
    h.to_time_wait()
    # Seed C11a: our last ACK was lost; the peer's FIN comes again (below RCV.NXT, so
    # the first step answers it with an ACK). Fifth and eighth steps, TIME-WAIT:
    # "Acknowledge it, and restart the 2 MSL timeout" -- from the arrival time.
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(2)), at=20_000)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.state is State.TIME_WAIT
    assert h.next_timer_ms() == 20_000 + 60_000
    h.fire(60_000)  # the old deadline passes without effect
    h.expect_nothing()
    assert h.state is State.TIME_WAIT
    # Once more, later: the deadline moves again.
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(2)), at=70_500)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.next_timer_ms() == 70_500 + 60_000
    h.fire(130_500)
    h.expect_nothing()
    assert h.path == [*TIME_WAIT_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.NORMAL)]


def test_retransmitted_data_and_fin_is_acked_again_and_restarts_2msl() -> None:
    h = Harness()
    h.to_fin_wait_2()
    h.feed(h.peer(PSH | FIN | ACK, h.remote_seq(1), h.local_seq(2), payload=b"end"), at=1)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(5)))
    assert h.state is State.TIME_WAIT
    # The whole last segment again (text and FIN): its end is RCV.NXT.
    h.feed(h.peer(PSH | FIN | ACK, h.remote_seq(1), h.local_seq(2), payload=b"end"), at=900)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(5)))
    assert h.next_timer_ms() == 900 + 60_000


def test_three_segment_close_ends_in_time_wait() -> None:
    h = Harness()
    h.to_fin_wait_1()
    # Seed C12: the peer has nothing left to send and answers our FIN with FIN+ACK;
    # we ACK it (third segment) and hold TIME_WAIT (seed C4: no FIN_WAIT_2).
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(2)), at=40)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.path == [
        State.CLOSED,
        State.SYN_SENT,
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.TIME_WAIT,
    ]
    assert h.next_timer_ms() == 40 + 60_000
    h.fire(60_040)
    h.expect_nothing()
    assert h.state is State.CLOSED
    assert h.events() == [EndOfStream(), Closed(CloseReason.NORMAL)]


def test_time_wait_after_closing_also_lasts_2msl() -> None:
    h = Harness()
    h.to_closing()
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(2)), at=10)
    h.expect_nothing()
    assert h.state is State.TIME_WAIT
    # A retransmission of the peer's FIN (lost ACK in a simultaneous close) restarts it.
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(2)), at=500)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.next_timer_ms() == 500 + 60_000
    h.fire(60_500)
    assert h.path == [
        State.CLOSED,
        State.SYN_SENT,
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.CLOSING,
        State.TIME_WAIT,
        State.CLOSED,
    ]
    assert h.events() == [EndOfStream(), Closed(CloseReason.NORMAL)]


def test_rst_at_rcv_nxt_closes() -> None:
    h = Harness()
    h.to_time_wait()
    h.events()
    # Second step, TIME-WAIT: "If the RST bit is set, then enter the CLOSED state,
    # delete the TCB, and return" (TIME-WAIT assassination; RFC 1337's protection is a
    # later switch). No "connection reset" signal in this state (unlike ESTABLISHED
    # ... CLOSE-WAIT): both FINs were exchanged and acknowledged, so the close is NORMAL.
    h.feed(h.peer(RST, h.remote_seq(2)), at=5_000)
    h.expect_nothing()
    assert h.path == [*TIME_WAIT_PATH, State.CLOSED]
    assert h.events() == [Closed(CloseReason.NORMAL)]
    assert h.next_timer_ms() is None


def test_rst_outside_the_window_is_dropped() -> None:
    h = Harness()
    h.to_time_wait()
    # At the peer's FIN, below RCV.NXT: first step, "silently drop".
    h.feed(h.peer(RST, h.remote_seq(1)), at=5_000)
    h.expect_nothing()
    assert h.state is State.TIME_WAIT
    assert h.next_timer_ms() == 60_000


def test_in_window_rst_not_at_rcv_nxt_gets_a_challenge_ack() -> None:
    h = Harness()
    h.to_time_wait()
    # Second step (RFC 5961 3.2, all synchronized states): challenge ACK, no restart.
    # (Linux drops such an RST in TIME_WAIT without answering.)
    h.feed(h.peer(RST, h.remote_seq(500)), at=5_000)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.state is State.TIME_WAIT
    assert h.next_timer_ms() == 60_000


def test_old_syn_gets_an_ack_and_does_not_restart_the_timer() -> None:
    h = Harness()
    h.to_time_wait()
    # A SYN with the old incarnation's ISN (below RCV.NXT): first step, unacceptable,
    # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>. Linux answers the same way (TCP_TW_ACK from
    # tcp_timewait_state_process) and, the SYN carrying no ACK, keeps its deadline.
    h.feed(h.peer(SYN, REMOTE_ISS, options=MSS_OPTION), at=3_000)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.state is State.TIME_WAIT
    assert h.next_timer_ms() == 60_000
    assert h.events() == [EndOfStream()]


def test_new_syn_in_window_gets_a_challenge_ack() -> None:
    h = Harness()
    h.to_time_wait()
    # A SYN with a higher ISN lands in the window: fourth step, synchronized states,
    # challenge ACK (RFC 5961 4.2); without timestamps RFC 9293 gives TIME-WAIT no
    # other rule. (Linux would let a listener take such a SYN as a new incarnation;
    # that is the endpoint's business, not this connection's.)
    h.feed(h.peer(SYN, h.remote_seq(100_000)), at=3_000)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.state is State.TIME_WAIT
    assert h.next_timer_ms() == 60_000


def test_data_is_ignored() -> None:
    h = Harness()
    h.to_time_wait()
    h.events()
    # Seventh step, TIME-WAIT: "Ignore the segment text." Nothing sent, nothing
    # delivered, the deadline stays.
    h.feed(h.peer(PSH | ACK, h.remote_seq(2), h.local_seq(2), payload=b"stray"), at=1_000)
    h.expect_nothing()
    assert h.events() == []
    assert h.conn.receive_buffered == 0
    assert h.conn.receive(now=h.now) == b""
    assert h.state is State.TIME_WAIT
    assert h.next_timer_ms() == 60_000


def test_bare_ack_is_ignored() -> None:
    h = Harness()
    h.to_time_wait()
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(2)), at=1_000)
    h.expect_nothing()
    assert h.state is State.TIME_WAIT
    assert h.next_timer_ms() == 60_000


def test_ack_of_unsent_data_gets_an_ack() -> None:
    h = Harness()
    h.to_time_wait()
    # Fifth step: "If the ACK acknowledges something not yet sent (SEG.ACK > SND.NXT)
    # then send an ACK, drop the segment" (RFC 5961 5.2 in every synchronized state).
    # No restart of 2*MSL. (Linux's TIME-WAIT drops it without answering.)
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(500)), at=1_000)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.state is State.TIME_WAIT
    assert h.next_timer_ms() == 60_000


def test_user_calls() -> None:
    h = Harness()
    h.to_time_wait()
    # RFC 9293 3.10.2 and 3.10.4: SEND and CLOSE in TIME-WAIT are "connection closing".
    with pytest.raises(InvalidOperation):
        h.conn.send(b"x", now=h.now)
    with pytest.raises(InvalidOperation):
        h.conn.shutdown(now=h.now)
    with pytest.raises(InvalidOperation):
        h.conn.close(now=h.now)
    h.expect_nothing()
    assert h.state is State.TIME_WAIT
    assert h.conn.iss == LOCAL_ISS


def test_abort_sends_nothing() -> None:
    h = Harness()
    h.to_time_wait()
    # RFC 9293 3.10.5 ABORT in TIME-WAIT: 'Respond with "ok" and delete the TCB'.
    h.conn.abort(now=h.at(100))
    h.expect_nothing()
    assert h.path == [*TIME_WAIT_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.ABORTED)]
    assert h.next_timer_ms() is None
