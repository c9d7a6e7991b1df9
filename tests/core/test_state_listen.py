"""LISTEN: RFC 9293 3.10.7.2 (segments) and 3.10.1-3.10.5 (user calls), exact segments."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tcpstack.core.connection import Connection
from tcpstack.core.errors import InvalidOperation
from tcpstack.core.events import Closed, CloseReason
from tcpstack.core.segment import Options, Segment
from tcpstack.core.state import State
from tests.core.harness import (
    ACK,
    FIN,
    LOCAL_IP,
    LOCAL_ISS,
    LOCAL_PORT,
    MSS_OPTION,
    PSH,
    REMOTE_ISS,
    RST,
    SYN,
    Harness,
)


def test_listen_sends_nothing_and_arms_no_timer() -> None:
    h = Harness()
    h.to_listen()
    assert h.path == [State.CLOSED, State.LISTEN]
    assert h.events() == []
    assert h.next_timer_ms() is None


@pytest.mark.parametrize("flags", [RST, RST | ACK, RST | SYN, RST | SYN | ACK, RST | FIN])
def test_rst_is_ignored(flags: int) -> None:
    """3.10.7.2 first: "An incoming RST segment could not be valid ... ignored"."""
    h = Harness()
    h.to_listen()
    h.feed(h.peer(flags, REMOTE_ISS, 77), at=1)
    h.expect_nothing()
    assert h.path == [State.CLOSED, State.LISTEN]
    assert h.events() == []


@pytest.mark.parametrize(
    ("flags", "payload"), [(ACK, b""), (ACK | PSH, b"data"), (SYN | ACK, b""), (FIN | ACK, b"")]
)
def test_any_ack_gets_rst_at_seg_ack(flags: int, payload: bytes) -> None:
    """3.10.7.2 second: "Any acknowledgment is bad ... <SEQ=SEG.ACK><CTL=RST>"."""
    h = Harness()
    h.to_listen()
    h.feed(h.peer(flags, REMOTE_ISS, 4_000_000_000, payload=payload), at=2)
    h.expect(h.ours(RST, 4_000_000_000, window=0))
    assert h.path == [State.CLOSED, State.LISTEN]
    assert h.events() == []
    assert h.next_timer_ms() is None


def test_syn_gets_syn_ack_with_our_mss_and_enters_syn_received() -> None:
    """3.10.7.2 third: RCV.NXT = SEG.SEQ+1, IRS = SEG.SEQ, <SEQ=ISS><ACK=RCV.NXT><SYN,ACK>."""
    h = Harness()
    h.to_listen()
    h.feed(h.peer(SYN, REMOTE_ISS, window=30_000, options=Options(mss=1200)), at=3)
    h.expect(h.ours(SYN | ACK, LOCAL_ISS, h.remote_seq(1), window=65535, options=MSS_OPTION))
    assert h.path == [State.CLOSED, State.LISTEN, State.SYN_RECEIVED]
    assert h.events() == []
    assert h.conn.irs == REMOTE_ISS
    assert h.conn.rcv_nxt == h.remote_seq(1) == 2**32 - 2
    assert h.conn.iss == LOCAL_ISS
    assert h.conn.snd_una == LOCAL_ISS
    assert h.conn.snd_nxt == h.local_seq(1)
    # The SYN's window is the peer's send window (never scaled on a SYN, RFC 7323 2.2).
    assert h.conn.snd_wnd == 30_000
    # The peer's MSS option bounds our segments (RFC 9293 3.7.1).
    assert h.conn.snd_mss == 1200
    # RFC 6298 2.1: the SYN,ACK is timed with the initial RTO of 1 s.
    assert h.next_timer_ms() == 1003


def test_syn_without_mss_option_means_536() -> None:
    """RFC 9293 3.7.1 (MUST-15): no MSS option -> assume 536 octets (IPv4)."""
    h = Harness()
    h.to_listen()
    h.feed(h.peer(SYN, REMOTE_ISS))
    h.expect(h.ours(SYN | ACK, LOCAL_ISS, h.remote_seq(1), options=MSS_OPTION))
    assert h.conn.snd_mss == 536


def test_text_on_a_syn_is_not_taken() -> None:
    """Like Linux without TCP Fast Open, text on the SYN is not queued (the code
    documents it): RCV.NXT covers the SYN only, so the peer resends the text later."""
    h = Harness()
    h.to_listen()
    h.feed(h.peer(SYN, REMOTE_ISS, payload=b"early"))
    h.expect(h.ours(SYN | ACK, LOCAL_ISS, h.remote_seq(1), options=MSS_OPTION))
    assert h.state is State.SYN_RECEIVED
    assert h.conn.receive_buffered == 0
    assert h.events() == []


@pytest.mark.parametrize("payload", [b"early", b""])
def test_syn_with_fin_is_discarded(payload: bytes) -> None:
    """SYN+FIN is a scanner's probe, not an opening: Linux discards it in LISTEN without
    a reply, and so does tcpstack."""
    h = Harness()
    h.to_listen()
    h.feed(h.peer(SYN | FIN, REMOTE_ISS, payload=payload))
    h.expect_nothing()
    assert h.state is State.LISTEN
    assert h.events() == []
    drops = [r for r in h.trace.of_kind("segment_in") if r.data["verdict"] == "drop"]
    assert [r.data["reason"] for r in drops] == ["SYN with FIN in LISTEN is discarded"]


def test_syn_from_another_port_than_the_open_named_gets_rst() -> None:
    """The harness's passive OPEN names its foreign socket: a SYN from another is reset."""
    h = Harness()
    h.to_listen()
    h.feed(replace(h.peer(SYN, 5_000), src_port=8080))
    h.expect(Segment(LOCAL_PORT, 8080, 0, 5_001, RST | ACK, 0))
    assert h.path == [State.CLOSED, State.LISTEN]


@pytest.mark.parametrize(("flags", "payload"), [(0, b""), (PSH, b"data"), (FIN, b""), (0, b"x")])
def test_segment_without_syn_ack_or_rst_is_dropped(flags: int, payload: bytes) -> None:
    """3.10.7.2 fourth: "Any other control or text-bearing segment ... drop it"."""
    h = Harness()
    h.to_listen()
    h.feed(h.peer(flags, REMOTE_ISS, payload=payload))
    h.expect_nothing()
    assert h.path == [State.CLOSED, State.LISTEN]
    assert h.conn.receive_buffered == 0
    assert h.events() == []
    assert h.next_timer_ms() is None


def test_close_in_listen_deletes_the_connection() -> None:
    """3.10.4 LISTEN: "Any outstanding RECEIVEs are returned ... delete TCB, enter CLOSED"."""
    h = Harness()
    h.to_listen()
    h.conn.close(now=h.now)
    h.expect_nothing()
    assert h.path == [State.CLOSED, State.LISTEN, State.CLOSED]
    assert h.events() == [Closed(CloseReason.NORMAL)]
    assert h.next_timer_ms() is None


def test_shutdown_in_listen_deletes_the_connection() -> None:
    h = Harness()
    h.to_listen()
    h.conn.shutdown(now=h.now)
    h.expect_nothing()
    assert h.path == [State.CLOSED, State.LISTEN, State.CLOSED]
    assert h.events() == [Closed(CloseReason.NORMAL)]


def test_abort_in_listen_closes_without_a_segment() -> None:
    """3.10.5 LISTEN: "Any outstanding RECEIVEs should be returned ... enter CLOSED"."""
    h = Harness()
    h.to_listen()
    h.conn.abort(now=h.now)
    h.expect_nothing()
    assert h.path == [State.CLOSED, State.LISTEN, State.CLOSED]
    assert h.events() == [Closed(CloseReason.ABORTED)]
    assert h.next_timer_ms() is None


def test_send_with_the_foreign_socket_known_turns_the_connection_active() -> None:
    """3.10.2 LISTEN: with the foreign socket specified, SEND changes the connection
    from passive to active: select an ISS, send SYN, enter SYN_SENT (figure 5). The
    data waits for ESTABLISHED."""
    h = Harness()
    h.to_listen()
    assert h.conn.send(b"hello", now=h.at(4)) == 5
    h.expect(h.ours(SYN, LOCAL_ISS, options=MSS_OPTION))
    assert h.path == [State.CLOSED, State.LISTEN, State.SYN_SENT]
    assert h.next_timer_ms() == 1004
    assert h.events() == []
    # The handshake completes like an active open; the data follows it.
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), options=MSS_OPTION), at=10)
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"hello"))
    assert h.path == [State.CLOSED, State.LISTEN, State.SYN_SENT, State.ESTABLISHED]


def test_send_without_a_foreign_socket_is_an_error() -> None:
    """3.10.2 LISTEN: "If the foreign socket is unspecified, then return 'error: foreign
    socket unspecified'"."""
    h = Harness()
    h.conn = Connection((LOCAL_IP, LOCAL_PORT), None, isn_generator=lambda _t, _n: LOCAL_ISS)
    h.to_listen()
    with pytest.raises(InvalidOperation) as raised:
        h.conn.send(b"x", now=h.now)
    assert raised.value.call == "send"
    assert raised.value.state is State.LISTEN
    h.expect_nothing()
    assert h.path == [State.CLOSED, State.LISTEN]


def test_receive_in_listen_returns_nothing() -> None:
    """3.10.3 LISTEN: RECEIVE is queued until the connection is established; the
    non-blocking core returns b''."""
    h = Harness()
    h.to_listen()
    assert h.conn.receive(100, now=h.now) == b""
    h.expect_nothing()
    assert h.path == [State.CLOSED, State.LISTEN]


@pytest.mark.parametrize("call", ["open", "listen"])
def test_open_in_listen_is_an_error_that_changes_nothing(call: str) -> None:
    """3.10.1: OPEN on an existing connection is "error: connection already exists"."""
    h = Harness()
    h.to_listen()
    with pytest.raises(InvalidOperation) as raised:
        getattr(h.conn, call)(now=h.now)
    assert raised.value.call == call
    assert raised.value.state is State.LISTEN
    h.expect_nothing()
    assert h.path == [State.CLOSED, State.LISTEN]
