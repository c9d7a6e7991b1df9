"""FIN_WAIT_2: RFC 9293 3.10.7.4 (eight steps), exact segments.

Our FIN is acknowledged; the connection is half-closed and waits for the peer's FIN
(seed C7). RFC 9293 gives this state no timer of its own.
"""

from __future__ import annotations

import pytest

from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import Closed, CloseReason, DataAvailable, EndOfStream
from tcpstack.core.state import State
from tests.core.harness import ACK, FIN, PSH, RST, SYN, Harness

FIN_WAIT_2_PATH = [
    State.CLOSED,
    State.SYN_SENT,
    State.ESTABLISHED,
    State.FIN_WAIT_1,
    State.FIN_WAIT_2,
]
HOUR_MS = 3_600_000


def shutdown_to_fin_wait_2(h: Harness) -> None:
    """Half-close with shutdown() (receive side stays open), then the ACK of our FIN."""
    h.to_established()
    h.conn.shutdown(now=h.now)
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1)))
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)))
    h.expect_nothing()
    assert h.state is State.FIN_WAIT_2


def test_fin_wait_2_arms_no_timer() -> None:
    h = Harness()
    h.to_fin_wait_2()
    assert h.path == FIN_WAIT_2_PATH
    # RFC 9293 defines no FIN-WAIT-2 timeout (3.10.8 lists only the user, retransmission
    # and time-wait timeouts); Linux's tcp_fin_timeout for orphans is a later switch.
    assert h.next_timer_ms() is None
    assert h.conn.timers() == {}
    assert h.events() == []


def test_half_closed_connection_stays_in_fin_wait_2_for_hours() -> None:
    h = Harness()
    shutdown_to_fin_wait_2(h)
    # Seed C7: a peer that never closes keeps a half-closed connection here forever.
    h.fire(5 * HOUR_MS)
    h.expect_nothing()
    assert h.state is State.FIN_WAIT_2
    assert h.next_timer_ms() is None
    assert h.events() == []


def test_data_is_still_received_and_acknowledged() -> None:
    h = Harness()
    shutdown_to_fin_wait_2(h)
    # Seventh step, FIN-WAIT-2: deliver the text and acknowledge it.
    h.feed(h.peer(PSH | ACK, h.remote_seq(1), h.local_seq(2), payload=b"more"), at=10)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(5)))
    h.feed(h.peer(PSH | ACK, h.remote_seq(5), h.local_seq(2), payload=b" data"), at=20)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(10)))
    assert h.events() == [DataAvailable(4), DataAvailable(9)]
    assert h.conn.receive(now=h.now) == b"more data"
    assert h.state is State.FIN_WAIT_2
    assert h.next_timer_ms() is None  # a bare ACK is never retransmitted


def test_peer_fin_enters_time_wait_and_is_acknowledged() -> None:
    h = Harness()
    h.to_fin_wait_2()
    # Eighth step, FIN-WAIT-2: "Enter the TIME-WAIT state. Start the time-wait timer,
    # turn off the other timers." The FIN is acknowledged and signals end of stream.
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(2)), at=1_500)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.path == [*FIN_WAIT_2_PATH, State.TIME_WAIT]
    assert h.events() == [EndOfStream()]
    assert h.next_timer_ms() == 1_500 + 60_000


def test_data_and_fin_in_one_segment_enter_time_wait() -> None:
    h = Harness()
    shutdown_to_fin_wait_2(h)
    h.feed(h.peer(PSH | FIN | ACK, h.remote_seq(1), h.local_seq(2), payload=b"tail"), at=3)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(6)))
    assert h.path == [*FIN_WAIT_2_PATH, State.TIME_WAIT]
    assert h.events() == [DataAvailable(4), EndOfStream()]
    assert h.conn.receive(now=h.now) == b"tail"
    # After the buffered bytes the stream is at its end.
    assert h.conn.receive(now=h.now) == b""
    assert h.next_timer_ms() == 3 + 60_000


def test_fin_beyond_a_gap_is_not_taken() -> None:
    h = Harness()
    shutdown_to_fin_wait_2(h)
    # Eighth step: the FIN is only processed once the text before it has arrived. The
    # out-of-order segment gets an immediate ACK for RCV.NXT (3.10.7.4 seventh step).
    h.feed(h.peer(FIN | ACK, h.remote_seq(5), h.local_seq(2)), at=4)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(1)))
    assert h.state is State.FIN_WAIT_2
    assert h.events() == []


def test_send_is_an_error_that_changes_nothing() -> None:
    h = Harness()
    shutdown_to_fin_wait_2(h)
    # RFC 9293 3.10.2 SEND in FIN-WAIT-2: 'return "error: connection closing"'.
    with pytest.raises(InvalidOperation) as raised:
        h.conn.send(b"x", now=h.now)
    assert raised.value.state is State.FIN_WAIT_2
    h.expect_nothing()
    assert h.state is State.FIN_WAIT_2


def test_rst_at_rcv_nxt_closes_with_reset() -> None:
    h = Harness()
    h.to_fin_wait_2()
    # Second step, FIN-WAIT-2: "connection reset", enter CLOSED.
    h.feed(h.peer(RST, h.remote_seq(1)), at=9)
    h.expect_nothing()
    assert h.path == [*FIN_WAIT_2_PATH, State.CLOSED]
    assert h.events() == [Closed(CloseReason.RESET)]
    assert h.next_timer_ms() is None


def test_in_window_rst_not_at_rcv_nxt_gets_a_challenge_ack() -> None:
    h = Harness()
    h.to_fin_wait_2()
    h.feed(h.peer(RST | ACK, h.remote_seq(2), h.local_seq(2)), at=9)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(1)))
    assert h.state is State.FIN_WAIT_2


def test_syn_gets_a_challenge_ack() -> None:
    h = Harness()
    h.to_fin_wait_2()
    # Fourth step: challenge ACK (RFC 5961 4.2), state unchanged.
    h.feed(h.peer(SYN, h.remote_seq(1000)), at=9)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(1)))
    assert h.state is State.FIN_WAIT_2
    assert h.events() == []


def test_abort_sends_rst_at_snd_nxt() -> None:
    h = Harness()
    h.to_fin_wait_2()
    # RFC 9293 3.10.5 ABORT in FIN-WAIT-2: <SEQ=SND.NXT><CTL=RST>.
    h.conn.abort(now=h.at(12))
    h.expect(h.ours(RST, h.local_seq(2), window=0))
    assert h.path == [*FIN_WAIT_2_PATH, State.CLOSED]
    assert h.events() == [Closed(CloseReason.ABORTED)]
