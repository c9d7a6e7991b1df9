"""SYN_SENT: RFC 9293 3.10.7.3, exact segments."""

from __future__ import annotations

import pytest

from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import Closed, CloseReason, Established
from tcpstack.core.state import State
from tests.core.harness import (
    ACK,
    LOCAL_ISS,
    MSS_OPTION,
    REMOTE_ISS,
    RST,
    SYN,
    Harness,
)


def test_open_sends_syn_with_mss_and_arms_initial_rto() -> None:
    h = Harness()
    h.to_syn_sent()
    assert h.path == [State.CLOSED, State.SYN_SENT]
    # RFC 6298 2.1: the first RTO is 1 s.
    assert h.next_timer_ms() == 1000


def test_syn_ack_completes_the_handshake() -> None:
    h = Harness()
    h.to_syn_sent()
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), options=MSS_OPTION), at=10)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.path == [State.CLOSED, State.SYN_SENT, State.ESTABLISHED]
    assert h.events() == [Established()]
    assert h.conn.irs == REMOTE_ISS
    assert h.next_timer_ms() is None  # everything acknowledged: no timer


def test_data_queued_in_syn_sent_rides_on_the_handshake_ack() -> None:
    h = Harness()
    h.to_syn_sent()
    assert h.conn.send(b"early", now=h.now) == 5
    h.expect_nothing()  # no data before the peer's SYN
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), options=MSS_OPTION), at=5)
    h.expect(h.ours(ACK | 0x08, h.local_seq(1), h.remote_seq(1), payload=b"early"))


def test_rst_acknowledging_our_syn_means_refused() -> None:
    h = Harness()
    h.to_syn_sent()
    h.feed(h.peer(RST | ACK, 0, h.local_seq(1)), at=3)
    h.expect_nothing()
    assert h.path == [State.CLOSED, State.SYN_SENT, State.CLOSED]
    assert h.events() == [Closed(CloseReason.REFUSED)]
    assert h.next_timer_ms() is None


def test_rst_without_ack_is_dropped() -> None:
    h = Harness()
    h.to_syn_sent()
    h.feed(h.peer(RST, 0))
    h.expect_nothing()
    assert h.state is State.SYN_SENT


@pytest.mark.parametrize("bad_ack_offset", [0, 2, -5])
def test_unacceptable_ack_gets_rst_at_seg_ack(bad_ack_offset: int) -> None:
    h = Harness()
    h.to_syn_sent()
    bad_ack = h.local_seq(bad_ack_offset)
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, bad_ack))
    h.expect(h.ours(RST, bad_ack, window=0))
    assert h.state is State.SYN_SENT


def test_rst_with_unacceptable_ack_is_dropped_silently() -> None:
    h = Harness()
    h.to_syn_sent()
    h.feed(h.peer(RST | ACK, 0, h.local_seq(7)))
    h.expect_nothing()
    assert h.state is State.SYN_SENT


def test_segment_without_syn_or_rst_is_dropped() -> None:
    h = Harness()
    h.to_syn_sent()
    h.feed(h.peer(ACK, REMOTE_ISS, h.local_seq(1)))
    h.expect_nothing()
    assert h.state is State.SYN_SENT


def test_simultaneous_open_syn_gets_syn_ack() -> None:
    h = Harness()
    h.to_syn_sent()
    h.feed(h.peer(SYN, REMOTE_ISS, options=MSS_OPTION), at=1)
    h.expect(h.ours(SYN | ACK, LOCAL_ISS, h.remote_seq(1), options=MSS_OPTION))
    assert h.state is State.SYN_RECEIVED
    # The peer's SYN,ACK acknowledges our SYN: ESTABLISHED, nothing more to send.
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), options=MSS_OPTION), at=2)
    assert h.path == [State.CLOSED, State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED]


def test_syn_is_retransmitted_with_exponential_backoff_then_times_out() -> None:
    h = Harness()
    h.to_syn_sent()
    # Linux's tcp_syn_retries=6: resends at 1, 3, 7, 15, 31, 63 s, gives up at 127 s.
    deadline = 0
    for k in range(6):
        deadline += 1000 << k
        assert h.next_timer_ms() == deadline
        h.fire(deadline)
        h.expect(h.ours(SYN, LOCAL_ISS, options=MSS_OPTION))
    deadline += 1000 << 6
    assert h.next_timer_ms() == deadline == 127_000
    h.fire(deadline)
    h.expect_nothing()
    assert h.path[-1] is State.CLOSED
    assert h.events() == [Closed(CloseReason.TIMEOUT)]


def test_early_timer_call_is_a_no_op() -> None:
    h = Harness()
    h.to_syn_sent()
    h.fire(999)
    h.expect_nothing()
    assert h.next_timer_ms() == 1000


def test_close_in_syn_sent_deletes_the_connection() -> None:
    h = Harness()
    h.to_syn_sent()
    h.conn.close(now=h.now)
    h.expect_nothing()
    assert h.path == [State.CLOSED, State.SYN_SENT, State.CLOSED]
    assert h.events() == [Closed(CloseReason.NORMAL)]
    assert h.next_timer_ms() is None


def test_abort_in_syn_sent_sends_nothing() -> None:
    h = Harness()
    h.to_syn_sent()
    h.conn.abort(now=h.now)
    h.expect_nothing()
    assert h.events() == [Closed(CloseReason.ABORTED)]


def test_open_twice_is_an_error_that_changes_nothing() -> None:
    h = Harness()
    h.to_syn_sent()
    with pytest.raises(InvalidOperation) as raised:
        h.conn.open(now=h.now)
    assert raised.value.call == "open"
    assert raised.value.state is State.SYN_SENT
    h.expect_nothing()
    assert h.state is State.SYN_SENT
