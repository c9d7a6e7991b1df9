"""LAST_ACK: RFC 9293 3.10.7.4 (eight steps), exact segments.

The passive closer (seed C10) got the peer's FIN (RCV.NXT = remote_seq(2)), then closed:
its FIN (local_seq(1)) waits for the ACK that ends the connection.
"""

from __future__ import annotations

import pytest

from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import Closed, CloseReason, EndOfStream
from tcpstack.core.state import State
from tests.core.harness import ACK, FIN, PSH, RESENDS_BEFORE_R2, RST, SYN, Harness

LAST_ACK_PATH = [
    State.CLOSED,
    State.SYN_SENT,
    State.ESTABLISHED,
    State.CLOSE_WAIT,
    State.LAST_ACK,
]


def test_close_in_close_wait_enters_last_ack() -> None:
    h = Harness()
    h.to_last_ack()
    assert h.path == LAST_ACK_PATH
    assert h.events() == [EndOfStream()]
    assert h.next_timer_ms() == 1000


def test_ack_of_our_fin_closes_normally_without_a_segment() -> None:
    h = Harness()
    h.to_last_ack()
    h.events()
    # Fifth step, LAST-ACK: "The only thing that can arrive in this state is an
    # acknowledgment of our FIN. If our FIN is now acknowledged, delete the TCB, enter
    # the CLOSED state, and return."
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(2)), at=25)
    h.expect_nothing()
    assert h.path == [*LAST_ACK_PATH, State.CLOSED]
    assert h.events() == [Closed(CloseReason.NORMAL)]
    assert h.next_timer_ms() is None
    assert h.conn.timers() == {}


def test_fin_is_retransmitted_at_1_3_7_seconds_then_acknowledged() -> None:
    h = Harness()
    h.to_last_ack()
    # RFC 6298 5.4-5.6: resend the FIN on expiry, doubling the RTO each time.
    fin = h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(2))
    for deadline in (1000, 3000, 7000):
        assert h.next_timer_ms() == deadline
        h.fire(deadline - 1)
        h.expect_nothing()
        h.fire(deadline)
        h.expect(fin)
        assert h.state is State.LAST_ACK
    assert h.next_timer_ms() == 15_000
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(2)), at=7_030)
    h.expect_nothing()
    assert h.path == [*LAST_ACK_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.NORMAL)]
    assert h.next_timer_ms() is None


def test_fin_retransmissions_give_up_after_data_retries() -> None:
    h = Harness()
    h.to_last_ack()
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
    assert h.path == [*LAST_ACK_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.TIMEOUT)]


def test_retransmitted_peer_fin_is_acknowledged_again() -> None:
    h = Harness()
    h.to_last_ack()
    # Our ACK of the peer's FIN was lost, so the peer (now in CLOSING) sends its FIN
    # again. SEG.SEQ is below RCV.NXT: first step, unacceptable, answered with
    # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>; nothing else changes.
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(1)), at=300)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.state is State.LAST_ACK
    assert h.next_timer_ms() == 1000
    # The peer then acknowledges our FIN.
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(2)), at=310)
    h.expect_nothing()
    assert h.path == [*LAST_ACK_PATH, State.CLOSED]


def test_ack_that_does_not_cover_our_fin_is_ignored() -> None:
    h = Harness()
    h.to_last_ack()
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(1)), at=20)
    h.expect_nothing()
    assert h.state is State.LAST_ACK
    assert h.next_timer_ms() == 1000


def test_ack_for_more_than_we_sent_gets_an_ack() -> None:
    h = Harness()
    h.to_last_ack()
    # Fifth step: "If the ACK acks something not yet sent (SEG.ACK > SND.NXT), then send
    # an ACK, drop the segment, and return."
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(3)), at=20)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.state is State.LAST_ACK


def test_text_is_ignored() -> None:
    h = Harness()
    h.to_last_ack()
    h.events()
    # Seventh step, LAST-ACK: "Ignore the segment text."
    h.feed(h.peer(PSH | ACK, h.remote_seq(2), h.local_seq(1), payload=b"x"), at=20)
    h.expect_nothing()
    assert h.events() == []
    assert h.state is State.LAST_ACK


def test_send_and_second_close_are_errors() -> None:
    h = Harness()
    h.to_last_ack()
    with pytest.raises(InvalidOperation) as raised:
        h.conn.send(b"x", now=h.now)
    assert raised.value.state is State.LAST_ACK
    with pytest.raises(InvalidOperation) as raised:
        h.conn.close(now=h.now)
    assert raised.value.call == "close"
    h.expect_nothing()
    assert h.state is State.LAST_ACK


def test_rst_at_rcv_nxt_closes() -> None:
    h = Harness()
    h.to_last_ack()
    # Second step, LAST-ACK: "enter the CLOSED state, delete the TCB, and return". Our
    # FIN is unacknowledged: reported as a reset (Linux: ECONNRESET).
    h.feed(h.peer(RST, h.remote_seq(2)), at=20)
    h.expect_nothing()
    assert h.path == [*LAST_ACK_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.RESET)]
    assert h.next_timer_ms() is None


def test_syn_gets_a_challenge_ack() -> None:
    h = Harness()
    h.to_last_ack()
    h.feed(h.peer(SYN, h.remote_seq(40)), at=20)
    h.expect(h.ours(ACK, h.local_seq(2), h.remote_seq(2)))
    assert h.state is State.LAST_ACK


def test_abort_sends_nothing() -> None:
    h = Harness()
    h.to_last_ack()
    # RFC 9293 3.10.5 ABORT in LAST-ACK: 'Respond with "ok" and delete the TCB'.
    h.conn.abort(now=h.at(20))
    h.expect_nothing()
    assert h.path == [*LAST_ACK_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.ABORTED)]
