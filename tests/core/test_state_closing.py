"""CLOSING: RFC 9293 3.10.7.4 (eight steps), exact segments.

Simultaneous close (seed C5, C9): both sides sent FIN and each received the other's FIN
before the ACK of its own. Our FIN (local_seq(1)) is outstanding; the peer's FIN is
acknowledged (RCV.NXT = remote_seq(2)).
"""

from __future__ import annotations

import pytest

from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import Closed, CloseReason, EndOfStream
from tcpstack.core.state import State
from tests.core.harness import ACK, FIN, PSH, RESENDS_BEFORE_R2, RST, SYN, Harness

CLOSING_PATH = [
    State.CLOSED,
    State.SYN_SENT,
    State.ESTABLISHED,
    State.FIN_WAIT_1,
    State.CLOSING,
]


def test_crossing_fins_enter_closing() -> None:
    h = Harness()
    h.to_closing()
    assert h.path == CLOSING_PATH
    assert h.events() == [EndOfStream()]
    # Our FIN, sent at 0, still waits for its ACK.
    assert h.next_timer_ms() == 1000


def test_ack_of_our_fin_enters_time_wait_for_2msl() -> None:
    h = Harness()
    h.to_closing()
    # Fifth step, CLOSING: "if the ACK acknowledges our FIN, then enter the TIME-WAIT
    # state"; 3.10.7.4 and 3.10.8: the time-wait timer runs 2*MSL = 60 s from now.
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(2)), at=35)
    h.expect_nothing()
    assert h.path == [*CLOSING_PATH, State.TIME_WAIT]
    assert h.next_timer_ms() == 35 + 60_000
    assert h.conn.timers() == {"time_wait": (35 + 60_000) * 1000}


def test_ack_that_does_not_cover_our_fin_is_ignored() -> None:
    h = Harness()
    h.to_closing()
    # Fifth step, CLOSING: "otherwise, ignore the segment".
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(1)), at=35)
    h.expect_nothing()
    assert h.state is State.CLOSING
    assert h.next_timer_ms() == 1000


def test_fin_is_retransmitted_on_rto_while_closing() -> None:
    h = Harness()
    h.to_closing()
    # RFC 6298 5.4: our FIN is resent; it now acknowledges the peer's FIN too.
    fin = h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(2))
    h.fire(1000)
    h.expect(fin)
    assert h.next_timer_ms() == 3000
    h.fire(3000)
    h.expect(fin)
    assert h.next_timer_ms() == 7000
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(2)), at=3020)
    h.expect_nothing()
    assert h.path == [*CLOSING_PATH, State.TIME_WAIT]
    assert h.next_timer_ms() == 3020 + 60_000


def test_fin_retransmissions_give_up_after_data_retries() -> None:
    h = Harness()
    h.to_closing()
    fin = h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(2))
    deadline = 0
    for k in range(RESENDS_BEFORE_R2):
        deadline += min(1000 << k, 120_000)
        h.fire(deadline)
        h.expect(fin)
    deadline += 120_000
    assert h.next_timer_ms() == deadline
    h.fire(deadline)
    h.expect_nothing()
    assert h.path == [*CLOSING_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.TIMEOUT)]


def test_peer_retransmits_its_fin_and_gets_our_ack_again() -> None:
    h = Harness()
    h.to_closing()
    # Our ACK of the peer's FIN was lost. The FIN lies below RCV.NXT: first step,
    # unacceptable, answered with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>.
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(1)), at=40)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.state is State.CLOSING
    assert h.next_timer_ms() == 1000


def test_text_is_ignored() -> None:
    h = Harness()
    h.to_closing()
    h.events()
    # Seventh step, CLOSING: "Ignore the segment text."
    h.feed(h.peer(PSH | ACK, h.remote_seq(2), h.local_seq(1), payload=b"late"), at=40)
    h.expect_nothing()
    assert h.events() == []
    assert h.conn.receive_buffered == 0
    assert h.state is State.CLOSING


def test_send_is_an_error() -> None:
    h = Harness()
    h.to_closing()
    # RFC 9293 3.10.2 SEND in CLOSING: 'return "error: connection closing"'.
    with pytest.raises(InvalidOperation) as raised:
        h.conn.send(b"x", now=h.now)
    assert raised.value.state is State.CLOSING
    h.expect_nothing()


def test_rst_at_rcv_nxt_closes() -> None:
    h = Harness()
    h.to_closing()
    # Second step, CLOSING: "If the RST bit is set, then enter the CLOSED state, delete
    # the TCB, and return." Our FIN was never acknowledged: reported as a reset, like
    # Linux's ECONNRESET from tcp_reset().
    h.feed(h.peer(RST, h.remote_seq(2)), at=50)
    h.expect_nothing()
    assert h.path == [*CLOSING_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.RESET)]
    assert h.next_timer_ms() is None


def test_in_window_rst_not_at_rcv_nxt_gets_a_challenge_ack() -> None:
    h = Harness()
    h.to_closing()
    h.feed(h.peer(RST, h.remote_seq(3)), at=50)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.state is State.CLOSING


def test_syn_gets_a_challenge_ack() -> None:
    h = Harness()
    h.to_closing()
    h.feed(h.peer(SYN, h.remote_seq(9)), at=50)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.state is State.CLOSING


def test_abort_sends_nothing() -> None:
    h = Harness()
    h.to_closing()
    # RFC 9293 3.10.5 ABORT in CLOSING: 'Respond with "ok" and delete the TCB'; no RST.
    h.conn.abort(now=h.at(60))
    h.expect_nothing()
    assert h.path == [*CLOSING_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.ABORTED)]
    assert h.next_timer_ms() is None
