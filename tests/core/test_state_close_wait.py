"""CLOSE_WAIT: RFC 9293 3.10.4 (CLOSE) and 3.10.7.4 (eight steps), exact segments.

The peer's FIN has arrived and been acknowledged; our side may still send until the
application closes (seed C8).
"""

from __future__ import annotations

from tcpstack.core.events import Closed, CloseReason, DataAvailable, EndOfStream
from tcpstack.core.state import State
from tests.core.harness import ACK, FIN, PSH, RESENDS_BEFORE_R2, RST, SYN, Harness

CLOSE_WAIT_PATH = [State.CLOSED, State.SYN_SENT, State.ESTABLISHED, State.CLOSE_WAIT]
HOUR_MS = 3_600_000


def test_peer_fin_enters_close_wait_with_no_timer() -> None:
    h = Harness()
    h.to_close_wait()
    # Eighth step, ESTABLISHED: "Enter the CLOSE-WAIT state"; the FIN is acknowledged
    # and the user is told "connection closing" (end of stream).
    assert h.path == CLOSE_WAIT_PATH
    assert h.events() == [EndOfStream()]
    assert h.conn.receive(now=h.now) == b""
    assert h.next_timer_ms() is None


def test_we_can_still_send_and_the_peer_acknowledges() -> None:
    h = Harness()
    h.to_close_wait()
    # RFC 9293 3.10.2 SEND in CLOSE-WAIT: "Segmentize any text to be sent and queue it
    # for output."
    assert h.conn.send(b"response", now=h.at(100)) == 8
    h.expect(h.ours(PSH | ACK, h.local_seq(1), h.remote_seq(2), payload=b"response"))
    assert h.next_timer_ms() == 100 + 1000
    assert h.conn.send(b"!", now=h.at(110)) == 1
    h.expect(h.ours(PSH | ACK, h.local_seq(9), h.remote_seq(2), payload=b"!"))
    # Fifth step, CLOSE-WAIT: "Do the same processing as for the ESTABLISHED state."
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(10)), at=130)
    h.expect_nothing()
    assert h.state is State.CLOSE_WAIT
    assert h.conn.send_buffered == 0
    assert h.next_timer_ms() is None
    assert h.events() == [EndOfStream()]


def test_unacknowledged_data_is_retransmitted_then_times_out() -> None:
    h = Harness()
    h.to_close_wait()
    h.conn.send(b"lost", now=h.now)
    data = h.ours(PSH | ACK, h.local_seq(1), h.remote_seq(2), payload=b"lost")
    h.expect(data)
    # RFC 6298 5.4-5.6 backoff, RFC 9293 3.8.3 R2 give-up after data_retries=15.
    deadline = 0
    for k in range(RESENDS_BEFORE_R2):
        deadline += min(1000 << k, 120_000)
        assert h.next_timer_ms() == deadline
        h.fire(deadline)
        h.expect(data)
    deadline += 120_000
    assert h.next_timer_ms() == deadline
    h.fire(deadline)
    h.expect_nothing()
    assert h.path == [*CLOSE_WAIT_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.TIMEOUT)]


def test_retransmitted_fin_is_answered_with_an_ack() -> None:
    h = Harness()
    h.to_close_wait()
    h.events()
    # The peer did not get our ACK and sends its FIN again. It lies below RCV.NXT: first
    # step, "not acceptable ... an acknowledgment should be sent in reply".
    h.feed(h.peer(FIN | ACK, h.remote_seq(1), h.local_seq(1)), at=200)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(2)))
    assert h.state is State.CLOSE_WAIT
    assert h.events() == []  # no second end of stream
    assert h.next_timer_ms() is None


def test_close_sends_fin_and_enters_last_ack() -> None:
    h = Harness()
    h.to_close_wait()
    # RFC 9293 3.10.4 CLOSE in CLOSE-WAIT: "Queue this request until all preceding SENDs
    # have been segmentized; then send a FIN segment, enter LAST-ACK state."
    h.conn.close(now=h.at(500))
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(2)))
    assert h.path == [*CLOSE_WAIT_PATH, State.LAST_ACK]
    assert h.next_timer_ms() == 500 + 1000


def test_close_after_sending_data_puts_the_fin_after_it() -> None:
    h = Harness()
    h.to_close_wait()
    h.conn.send(b"last words", now=h.at(10))
    h.expect(h.ours(PSH | ACK, h.local_seq(1), h.remote_seq(2), payload=b"last words"))
    h.conn.close(now=h.at(11))
    h.expect(h.ours(FIN | ACK, h.local_seq(11), h.remote_seq(2)))
    assert h.state is State.LAST_ACK
    # The retransmission timer started with the data keeps its deadline.
    assert h.next_timer_ms() == 10 + 1000


def test_close_with_unsent_data_sends_the_fin_on_the_last_data_segment() -> None:
    h = Harness()
    h.to_close_wait()
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(1), window=0), at=1)
    h.expect_nothing()
    assert h.conn.send(b"held back", now=h.now) == 9
    h.expect_nothing()  # zero window: nothing goes out (a persist probe comes later)
    h.conn.close(now=h.now)
    h.expect_nothing()
    assert h.state is State.LAST_ACK
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(1), window=4096), at=2)
    h.expect(h.ours(PSH | FIN | ACK, h.local_seq(1), h.remote_seq(2), payload=b"held back"))
    h.feed(h.peer(ACK, h.remote_seq(2), h.local_seq(11)), at=3)
    h.expect_nothing()
    assert h.path == [*CLOSE_WAIT_PATH, State.LAST_ACK, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.NORMAL)]


def test_close_wait_lasts_forever_if_the_application_never_closes() -> None:
    h = Harness()
    h.to_close_wait()
    # Seed C8: only the application's close() leaves CLOSE_WAIT. No timer is armed and
    # running the timers hours later changes nothing.
    for hours in (1, 2, 24):
        h.fire(hours * HOUR_MS)
        h.expect_nothing()
        assert h.state is State.CLOSE_WAIT
        assert h.next_timer_ms() is None
    assert h.path == CLOSE_WAIT_PATH


def test_buffered_data_is_still_readable_after_the_fin() -> None:
    h = Harness()
    h.to_established()
    h.feed(h.peer(PSH | FIN | ACK, h.remote_seq(1), h.local_seq(1), payload=b"abc"), at=5)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(5)))
    assert h.state is State.CLOSE_WAIT
    assert h.events() == [DataAvailable(3), EndOfStream()]
    assert h.conn.receive(now=h.now) == b"abc"
    assert h.conn.receive(now=h.now) == b""
    h.expect_nothing()  # no window update after the peer's FIN


def test_text_after_the_fin_is_ignored() -> None:
    h = Harness()
    h.to_close_wait()
    h.events()
    # Seventh step, CLOSE-WAIT: "This should not occur since a FIN has been received
    # from the remote side. Ignore the segment text."
    h.feed(h.peer(PSH | ACK, h.remote_seq(2), h.local_seq(1), payload=b"junk"), at=7)
    h.expect_nothing()
    assert h.events() == []
    assert h.conn.receive(now=h.now) == b""
    assert h.conn.receive_buffered == 0
    assert h.state is State.CLOSE_WAIT


def test_rst_at_rcv_nxt_closes_with_reset() -> None:
    h = Harness()
    h.to_close_wait()
    # Second step, CLOSE-WAIT: "connection reset", enter CLOSED.
    h.feed(h.peer(RST, h.remote_seq(2)), at=8)
    h.expect_nothing()
    assert h.path == [*CLOSE_WAIT_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.RESET)]
    assert h.next_timer_ms() is None


def test_rst_at_the_old_fin_is_out_of_window_and_dropped() -> None:
    h = Harness()
    h.to_close_wait()
    # First step: RCV.NXT moved past the FIN, so an RST at the FIN's sequence number is
    # outside the window: dropped without an answer.
    h.feed(h.peer(RST, h.remote_seq(1)), at=8)
    h.expect_nothing()
    assert h.state is State.CLOSE_WAIT


def test_syn_gets_a_challenge_ack() -> None:
    h = Harness()
    h.to_close_wait()
    h.feed(h.peer(SYN, h.remote_seq(77)), at=9)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(2)))
    assert h.state is State.CLOSE_WAIT


def test_abort_sends_rst_at_snd_nxt() -> None:
    h = Harness()
    h.to_close_wait()
    h.conn.send(b"unacked", now=h.now)
    h.expect(h.ours(PSH | ACK, h.local_seq(1), h.remote_seq(2), payload=b"unacked"))
    # RFC 9293 3.10.5 ABORT in CLOSE-WAIT: <SEQ=SND.NXT><CTL=RST>; queued data is lost.
    h.conn.abort(now=h.at(15))
    h.expect(h.ours(RST, h.local_seq(8), window=0))
    assert h.path == [*CLOSE_WAIT_PATH, State.CLOSED]
    assert h.events() == [EndOfStream(), Closed(CloseReason.ABORTED)]
    assert h.next_timer_ms() is None
