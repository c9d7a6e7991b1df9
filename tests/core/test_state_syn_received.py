"""SYN_RECEIVED: RFC 9293 3.10.7.4 (segments), 3.10.2-3.10.5 (user calls), exact segments."""

from __future__ import annotations

import pytest

from tcpstack.core.config import PLAIN, SECOND
from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import (
    Closed,
    CloseReason,
    DataAvailable,
    EndOfStream,
    Established,
)
from tcpstack.core.segment import Options
from tcpstack.core.state import State
from tests.core.harness import (
    ACK,
    FIN,
    LOCAL_ISS,
    MS,
    MSS_OPTION,
    PSH,
    REMOTE_ISS,
    RST,
    SYN,
    Harness,
)

PASSIVE = [State.CLOSED, State.LISTEN, State.SYN_RECEIVED]
SIMULTANEOUS = [State.CLOSED, State.SYN_SENT, State.SYN_RECEIVED]


def _simultaneous_open(h: Harness) -> None:
    """SYN_RECEIVED from an active OPEN: our SYN and the peer's SYN cross (3.10.7.3)."""
    h.to_syn_sent()
    h.feed(h.peer(SYN, REMOTE_ISS, options=MSS_OPTION))
    h.expect(h.ours(SYN | ACK, LOCAL_ISS, h.remote_seq(1), options=MSS_OPTION))
    assert h.path == SIMULTANEOUS


def test_syn_ack_timer_is_armed_with_the_initial_rto() -> None:
    h = Harness()
    h.to_syn_received()
    assert h.path == PASSIVE
    assert h.events() == []
    assert h.next_timer_ms() == 1000  # RFC 6298 2.1


# -- fifth step: the ACK field --------------------------------------------------------


def test_ack_of_our_syn_establishes() -> None:
    """3.10.7.4 fifth step, SYN-RECEIVED: "If SND.UNA < SEG.ACK =< SND.NXT, then enter
    ESTABLISHED state", SND.WND from the segment."""
    h = Harness()
    h.to_syn_received()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1), window=20_000), at=40)
    h.expect_nothing()
    assert h.path == [*PASSIVE, State.ESTABLISHED]
    assert h.events() == [Established()]
    assert h.conn.snd_una == h.local_seq(1)
    assert h.conn.snd_wnd == 20_000
    assert h.next_timer_ms() is None  # nothing outstanding
    assert h.conn.srtt == 40 * MS  # the SYN,ACK was timed (RFC 6298 2.2)


def test_ack_of_our_syn_with_data_establishes_and_takes_the_data() -> None:
    h = Harness()
    h.to_syn_received()
    h.feed(h.peer(ACK | PSH, h.remote_seq(1), h.local_seq(1), payload=b"hi"), at=1)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(3), window=65533))
    assert h.path == [*PASSIVE, State.ESTABLISHED]
    assert h.events() == [Established(), DataAvailable(2)]
    assert h.conn.receive(10, now=h.now) == b"hi"


def test_ack_of_our_syn_with_fin_establishes_then_closes_the_receive_side() -> None:
    h = Harness()
    h.to_syn_received()
    h.feed(h.peer(ACK | FIN, h.remote_seq(1), h.local_seq(1)), at=1)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(2)))
    assert h.path == [*PASSIVE, State.ESTABLISHED, State.CLOSE_WAIT]
    assert h.events() == [Established(), EndOfStream()]


@pytest.mark.parametrize("ack_offset", [0, -1, 2, 1_000, 2**31])
def test_unacceptable_ack_gets_rst_at_seg_ack(ack_offset: int) -> None:
    """3.10.7.4 fifth step, SYN-RECEIVED: "If the segment acknowledgment is not
    acceptable, form a reset segment <SEQ=SEG.ACK><CTL=RST> and send it"."""
    h = Harness()
    h.to_syn_received()
    bad_ack = h.local_seq(ack_offset)
    h.feed(h.peer(ACK, h.remote_seq(1), bad_ack), at=5)
    h.expect(h.ours(RST, bad_ack, window=0))
    assert h.path == PASSIVE
    assert h.events() == []
    assert h.next_timer_ms() == 1000  # still waiting for the ACK of our SYN


@pytest.mark.parametrize(("flags", "payload"), [(0, b""), (PSH, b"data"), (FIN, b""), (0, b"x")])
def test_segment_without_ack_is_dropped(flags: int, payload: bytes) -> None:
    """3.10.7.4 fifth step: "if the ACK bit is off, drop the segment and return"."""
    h = Harness()
    h.to_syn_received()
    h.feed(h.peer(flags, h.remote_seq(1), payload=payload), at=5)
    h.expect_nothing()
    assert h.path == PASSIVE
    assert h.conn.receive_buffered == 0
    assert h.events() == []
    assert h.next_timer_ms() == 1000


# -- first step: sequence number check -------------------------------------------------


@pytest.mark.parametrize("seq_offset", [-1, 65_536, 2**31])
def test_unacceptable_segment_gets_an_ack(seq_offset: int) -> None:
    """3.10.7.4 first step: "If an incoming segment is not acceptable, an acknowledgment
    should be sent in reply ... <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>"."""
    h = Harness()
    h.to_syn_received()
    h.feed(h.peer(ACK | PSH, h.remote_seq(seq_offset), h.local_seq(1), payload=b"zz"), at=2)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.path == PASSIVE
    assert h.events() == []


# -- second step: RST ------------------------------------------------------------------


@pytest.mark.parametrize("flags", [RST, RST | ACK])
def test_rst_at_rcv_nxt_returns_a_passive_connection_to_listen(flags: int) -> None:
    """3.10.7.4 second step, SYN-RECEIVED: "If this connection was initiated with a
    passive OPEN (i.e., came from the LISTEN state), then return this connection to
    LISTEN state and return. The user need not be informed"."""
    h = Harness()
    h.to_syn_received()
    h.feed(h.peer(flags, h.remote_seq(1), h.local_seq(1)), at=20)
    h.expect_nothing()
    assert h.path == [*PASSIVE, State.LISTEN]
    assert h.events() == []
    assert h.next_timer_ms() is None


def test_after_returning_to_listen_a_new_syn_starts_afresh() -> None:
    """The SYN,ACK of the next connection gets the initial RTO (RFC 6298 2.1) and the
    full retry count, not the backoff left by the connection that was reset."""
    h = Harness()
    h.to_syn_received()
    h.fire(1000)
    h.fire(3000)
    syn_ack = h.ours(SYN | ACK, LOCAL_ISS, h.remote_seq(1), options=MSS_OPTION)
    h.expect(syn_ack, syn_ack)
    h.feed(h.peer(RST, h.remote_seq(1)), at=3500)
    h.expect_nothing()
    assert h.state is State.LISTEN
    h.feed(h.peer(SYN, 50_000, options=Options(mss=900)), at=4000)
    h.expect(h.ours(SYN | ACK, LOCAL_ISS, 50_001, options=MSS_OPTION))
    assert h.path == [*PASSIVE, State.LISTEN, State.SYN_RECEIVED]
    assert h.conn.snd_mss == 900
    deadline = 4000
    for k in range(5):
        deadline += 1000 << k
        assert h.next_timer_ms() == deadline
        h.fire(deadline)
        h.expect(h.ours(SYN | ACK, LOCAL_ISS, 50_001, options=MSS_OPTION))
    deadline += 1000 << 5
    assert h.next_timer_ms() == deadline == 67_000
    h.fire(deadline)
    h.expect_nothing()
    assert h.events() == [Closed(CloseReason.TIMEOUT)]


def test_rst_in_window_but_not_at_rcv_nxt_gets_a_challenge_ack() -> None:
    """3.10.7.4 second step (RFC 5961 3.2): "If the RST bit is set and the sequence
    number does not exactly match the next expected sequence value, yet is within the
    current receive window, TCP endpoints MUST send an acknowledgment (challenge ACK):
    <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>"."""
    h = Harness()
    h.to_syn_received()
    h.feed(h.peer(RST, h.remote_seq(2)), at=1)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.path == PASSIVE
    assert h.events() == []
    assert h.next_timer_ms() == 1000


@pytest.mark.parametrize("seq_offset", [0, 65_536, -100])
def test_rst_outside_the_window_is_dropped_silently(seq_offset: int) -> None:
    h = Harness()
    h.to_syn_received()
    h.feed(h.peer(RST, h.remote_seq(seq_offset)), at=1)
    h.expect_nothing()
    assert h.path == PASSIVE
    assert h.events() == []


def test_rst_in_a_simultaneous_open_means_refused() -> None:
    """3.10.7.4 second step, SYN-RECEIVED: "If this connection was initiated with an
    active OPEN (i.e., came from SYN-SENT state), then the connection was refused; signal
    the user 'connection refused'"."""
    h = Harness()
    _simultaneous_open(h)
    h.feed(h.peer(RST, h.remote_seq(1)), at=30)
    h.expect_nothing()
    assert h.path == [*SIMULTANEOUS, State.CLOSED]
    assert h.events() == [Closed(CloseReason.REFUSED)]
    assert h.next_timer_ms() is None


# -- fourth step: SYN ------------------------------------------------------------------


@pytest.mark.parametrize("seq_offset", [1, 2, 500])
def test_in_window_syn_returns_a_passive_connection_to_listen(seq_offset: int) -> None:
    """3.10.7.4 fourth step: "In SYN-RECEIVED state, if the connection was initiated with
    a passive OPEN, then return this connection to the LISTEN state and return"."""
    h = Harness()
    h.to_syn_received()
    h.feed(h.peer(SYN, h.remote_seq(seq_offset), options=MSS_OPTION), at=10)
    h.expect_nothing()
    assert h.path == [*PASSIVE, State.LISTEN]
    assert h.events() == []
    assert h.next_timer_ms() is None


def test_retransmitted_syn_gets_the_syn_ack_again() -> None:
    """A SYN with SEG.SEQ == IRS is the peer's retransmission: Linux resends the SYN,ACK
    (the code documents it); RFC 9293 alone would answer the out-of-window SYN with a
    bare ACK. The retransmission timer keeps its deadline."""
    h = Harness()
    h.to_syn_received()
    h.feed(h.peer(SYN, REMOTE_ISS, options=MSS_OPTION), at=500)
    h.expect(h.ours(SYN | ACK, LOCAL_ISS, h.remote_seq(1), options=MSS_OPTION))
    assert h.path == PASSIVE
    assert h.next_timer_ms() == 1000
    # Karn's rule: an ACK after the SYN,ACK went twice gives no RTT sample.
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1)), at=600)
    h.expect_nothing()
    assert h.path == [*PASSIVE, State.ESTABLISHED]
    assert h.conn.srtt is None
    # RFC 6298 5.7 as Linux applies it: no sample from the handshake -> RTO 3 s.
    assert h.conn.rto == 3 * SECOND


def test_syn_outside_the_window_gets_an_ack() -> None:
    h = Harness()
    h.to_syn_received()
    h.feed(h.peer(SYN, h.remote_seq(-10)), at=1)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.path == PASSIVE


def test_in_window_syn_in_a_simultaneous_open_gets_a_challenge_ack() -> None:
    """Not from a passive OPEN: the synchronized-state rule applies (3.10.7.4 fourth
    step, RFC 5961 4.2): <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>."""
    h = Harness()
    _simultaneous_open(h)
    h.feed(h.peer(SYN, h.remote_seq(5)), at=1)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.path == SIMULTANEOUS
    assert h.events() == []


# -- timers ----------------------------------------------------------------------------


def test_syn_ack_is_retransmitted_with_backoff_then_times_out() -> None:
    """RFC 6298 5.5 backoff; give-up after Linux's tcp_synack_retries=5 (RFC 9293 3.8.3
    R2): resends at 1, 3, 7, 15, 31 s, CLOSED at 63 s."""
    h = Harness()
    h.to_syn_received()
    deadline = 0
    for k in range(5):
        deadline += 1000 << k
        assert h.next_timer_ms() == deadline
        h.fire(deadline - 1)
        h.expect_nothing()  # early: a no-op
        h.fire(deadline)
        h.expect(h.ours(SYN | ACK, LOCAL_ISS, h.remote_seq(1), options=MSS_OPTION))
        assert h.conn.rto == (2 << k) * SECOND
    deadline += 1000 << 5
    assert h.next_timer_ms() == deadline == 63_000
    h.fire(deadline)
    h.expect_nothing()
    assert h.path == [*PASSIVE, State.CLOSED]
    assert h.events() == [Closed(CloseReason.TIMEOUT)]
    assert h.next_timer_ms() is None


def test_synack_retries_is_configurable() -> None:
    h = Harness(PLAIN.with_changes(synack_retries=1))
    h.to_syn_received()
    h.fire(1000)
    h.expect(h.ours(SYN | ACK, LOCAL_ISS, h.remote_seq(1), options=MSS_OPTION))
    assert h.next_timer_ms() == 3000
    h.fire(3000)
    h.expect_nothing()
    assert h.events() == [Closed(CloseReason.TIMEOUT)]


# -- user calls (3.10.2-3.10.5) --------------------------------------------------------


def test_send_queues_data_until_established() -> None:
    """3.10.2 SYN-RECEIVED: "Queue the data for transmission after entering ESTABLISHED
    state"."""
    h = Harness()
    h.to_syn_received()
    assert h.conn.send(b"hello", now=h.at(1)) == 5
    h.expect_nothing()
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1)), at=50)
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"hello"))
    assert h.path == [*PASSIVE, State.ESTABLISHED]
    assert h.events() == [Established()]
    assert h.next_timer_ms() == 1050


def test_receive_before_established_returns_nothing() -> None:
    h = Harness()
    h.to_syn_received()
    assert h.conn.receive(100, now=h.now) == b""
    h.expect_nothing()
    assert h.path == PASSIVE


def test_close_with_nothing_queued_sends_fin_at_once() -> None:
    """3.10.4 SYN-RECEIVED: "If no SENDs have been issued and there is no pending data
    to send, then form a FIN segment and send it, and enter FIN-WAIT-1 state". The FIN
    follows our SYN in sequence space: <SEQ=ISS+1><ACK=RCV.NXT><CTL=FIN,ACK>."""
    h = Harness()
    h.to_syn_received()
    h.conn.close(now=h.at(5))
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.path == [*PASSIVE, State.FIN_WAIT_1]
    assert h.next_timer_ms() == 1000  # the SYN,ACK's timer runs on
    # One ACK for both our SYN and our FIN.
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)), at=30)
    h.expect_nothing()
    assert h.path == [*PASSIVE, State.FIN_WAIT_1, State.FIN_WAIT_2]
    assert h.events() == []
    assert h.next_timer_ms() is None


def test_close_then_ack_of_syn_only_waits_for_the_ack_of_fin() -> None:
    h = Harness()
    h.to_syn_received()
    h.conn.close(now=h.at(5))
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1)))
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1)), at=30)
    h.expect_nothing()  # the FIN is already out
    assert h.path == [*PASSIVE, State.FIN_WAIT_1]
    assert h.next_timer_ms() == 1030  # restarted for the FIN (RFC 6298 5.3)
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)), at=60)
    h.expect_nothing()
    assert h.path == [*PASSIVE, State.FIN_WAIT_1, State.FIN_WAIT_2]


def test_close_then_timeout_resends_syn_ack_and_fin() -> None:
    h = Harness()
    h.to_syn_received()
    h.conn.close(now=h.at(5))
    h.expect(h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1)))
    h.fire(1000)
    h.expect(
        h.ours(SYN | ACK, LOCAL_ISS, h.remote_seq(1), options=MSS_OPTION),
        h.ours(FIN | ACK, h.local_seq(1), h.remote_seq(1)),
    )
    assert h.next_timer_ms() == 3000
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(2)), at=3100)
    h.expect_nothing()
    assert h.path == [*PASSIVE, State.FIN_WAIT_1, State.FIN_WAIT_2]


def test_close_with_data_queued_sends_data_and_fin_once_our_syn_is_acked() -> None:
    """3.10.4 SYN-RECEIVED: with data pending the FIN waits for it, and the data waits
    for ESTABLISHED (3.10.2): data and FIN leave together on the ACK of our SYN.

    The state changes at once (figure 5's SYN-RCVD -> FIN-WAIT-1 edge, as Linux's
    tcp_close does) rather than after an ESTABLISHED step as 3.10.4's "queue for
    processing after entering ESTABLISHED state" reads; the segments are the same."""
    h = Harness()
    h.to_syn_received()
    assert h.conn.send(b"data", now=h.at(1)) == 4
    h.conn.close(now=h.at(2))
    h.expect_nothing()
    assert h.path == [*PASSIVE, State.FIN_WAIT_1]
    with pytest.raises(InvalidOperation) as raised:
        h.conn.send(b"more", now=h.now)
    assert (raised.value.call, raised.value.state) == ("send", State.FIN_WAIT_1)
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(1)), at=20)
    h.expect(h.ours(ACK | PSH | FIN, h.local_seq(1), h.remote_seq(1), payload=b"data"))
    assert h.next_timer_ms() == 1020
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(6)), at=40)
    h.expect_nothing()
    assert h.path == [*PASSIVE, State.FIN_WAIT_1, State.FIN_WAIT_2]
    assert h.events() == []


def test_abort_sends_rst_at_snd_nxt() -> None:
    """3.10.5 SYN-RECEIVED: "Send a reset segment: <SEQ=SND.NXT><CTL=RST>"."""
    h = Harness()
    h.to_syn_received()
    h.conn.abort(now=h.at(3))
    h.expect(h.ours(RST, h.local_seq(1), window=0))
    assert h.path == [*PASSIVE, State.CLOSED]
    assert h.events() == [Closed(CloseReason.ABORTED)]
    assert h.next_timer_ms() is None
