"""CLOSED: RFC 9293 3.10.7.1 (segments) and 3.10.2-3.10.5 (user calls), exact segments."""

from __future__ import annotations

from collections.abc import Callable

import pytest

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

# RFC 9293 3.10.7.1: "If the ACK bit is on, <SEQ=SEG.ACK><CTL=RST>"; a RST carries no
# window (the core sends 0).


def test_segment_with_ack_gets_rst_at_seg_ack() -> None:
    h = Harness()
    h.feed(h.peer(ACK, 12_345, 67_890), at=5)
    h.expect(h.ours(RST, 67_890, window=0))
    assert h.path == [State.CLOSED]
    assert h.events() == []
    assert h.next_timer_ms() is None


def test_data_with_ack_gets_rst_at_seg_ack_and_the_data_is_discarded() -> None:
    h = Harness()
    h.feed(h.peer(ACK | PSH, REMOTE_ISS, LOCAL_ISS, payload=b"hello"))
    h.expect(h.ours(RST, LOCAL_ISS, window=0))
    assert h.conn.receive_buffered == 0
    assert h.events() == []


def test_syn_ack_gets_rst_at_seg_ack() -> None:
    h = Harness()
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, 2**32 - 1, options=MSS_OPTION))
    h.expect(h.ours(RST, 2**32 - 1, window=0))
    assert h.path == [State.CLOSED]


# RFC 9293 3.10.7.1: "If the ACK bit is off, sequence number zero is used,
# <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>", SEG.LEN counting SYN and FIN (3.4).


@pytest.mark.parametrize(
    ("flags", "payload", "seg_len"),
    [
        (SYN, b"", 1),
        (FIN, b"", 1),
        (0, b"", 0),
        (PSH, b"abc", 3),
        (SYN | FIN, b"", 2),
        (SYN | PSH, b"data", 5),
        (FIN | PSH, b"data", 5),
        (SYN | FIN | PSH, b"data", 6),
    ],
)
def test_segment_without_ack_gets_rst_ack_at_seg_seq_plus_seg_len(
    flags: int, payload: bytes, seg_len: int
) -> None:
    h = Harness()
    h.feed(h.peer(flags, 7_000, payload=payload))
    h.expect(h.ours(RST | ACK, 0, 7_000 + seg_len, window=0))
    assert h.path == [State.CLOSED]
    assert h.events() == []


def test_rst_ack_acknowledgment_wraps_past_2_to_the_32() -> None:
    h = Harness()
    # The remote ISN is 2**32 - 3: SYN + 4 data octets + FIN end at 3 after the wrap.
    h.feed(h.peer(SYN | FIN, REMOTE_ISS, payload=b"wrap"))
    h.expect(h.ours(RST | ACK, 0, 3, window=0))


@pytest.mark.parametrize("flags", [RST, RST | ACK, RST | SYN, RST | FIN, RST | SYN | ACK])
def test_rst_is_discarded(flags: int) -> None:
    """3.10.7.1: "An incoming segment containing a RST is discarded"."""
    h = Harness()
    h.feed(h.peer(flags, 5, 6, payload=b"x"))
    h.expect_nothing()
    assert h.path == [State.CLOSED]
    assert h.events() == []


def test_every_segment_is_answered_on_its_own() -> None:
    h = Harness()
    h.feed(h.peer(SYN, 100))
    h.feed(h.peer(ACK, 200, 300))
    h.expect(h.ours(RST | ACK, 0, 101, window=0), h.ours(RST, 300, window=0))


# User calls in CLOSED (RFC 9293 3.10.2-3.10.5): "error: connection does not exist";
# the call changes nothing.

USER_CALLS: dict[str, Callable[[Harness], object]] = {
    "send": lambda h: h.conn.send(b"data", now=h.now),
    "receive": lambda h: h.conn.receive(100, now=h.now),
    "close": lambda h: h.conn.close(now=h.now),
    "abort": lambda h: h.conn.abort(now=h.now),
    "shutdown": lambda h: h.conn.shutdown(now=h.now),
}


@pytest.mark.parametrize("call", sorted(USER_CALLS))
def test_user_call_on_a_connection_never_opened_is_an_error(call: str) -> None:
    h = Harness()
    with pytest.raises(InvalidOperation) as raised:
        USER_CALLS[call](h)
    assert raised.value.call == call
    assert raised.value.state is State.CLOSED
    assert raised.value.reason == "connection does not exist"
    h.expect_nothing()
    assert h.path == [State.CLOSED]
    assert h.events() == []
    assert h.next_timer_ms() is None
    assert h.conn.send_buffered == 0


def _closed_by_abort(h: Harness) -> list[State]:
    h.to_established()
    h.conn.abort(now=h.now)
    h.expect(h.ours(RST, h.local_seq(1), window=0))
    assert h.events() == [Closed(CloseReason.ABORTED)]
    return [State.CLOSED, State.SYN_SENT, State.ESTABLISHED, State.CLOSED]


def _closed_by_reset(h: Harness) -> list[State]:
    h.to_established()
    h.feed(h.peer(RST, h.remote_seq(1)))
    h.expect_nothing()
    assert h.events() == [Closed(CloseReason.RESET)]
    return [State.CLOSED, State.SYN_SENT, State.ESTABLISHED, State.CLOSED]


def _closed_from_listen(h: Harness) -> list[State]:
    h.to_listen()
    h.conn.close(now=h.now)
    h.expect_nothing()
    assert h.events() == [Closed(CloseReason.NORMAL)]
    return [State.CLOSED, State.LISTEN, State.CLOSED]


def _closed_after_time_wait(h: Harness) -> list[State]:
    h.to_time_wait()
    assert h.events() == [EndOfStream()]
    h.fire(60_000)  # 2*MSL with the default MSL of 30 s
    h.expect_nothing()
    assert h.events() == [Closed(CloseReason.NORMAL)]
    return [
        State.CLOSED,
        State.SYN_SENT,
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.TIME_WAIT,
        State.CLOSED,
    ]


REACH_CLOSED: dict[str, Callable[[Harness], list[State]]] = {
    "abort": _closed_by_abort,
    "reset": _closed_by_reset,
    "close_in_listen": _closed_from_listen,
    "time_wait_timeout": _closed_after_time_wait,
}


@pytest.mark.parametrize("how", sorted(REACH_CLOSED))
def test_a_connection_that_reached_closed_answers_like_closed(how: str) -> None:
    h = Harness()
    path = REACH_CLOSED[how](h)
    assert h.next_timer_ms() is None
    h.feed(h.peer(ACK | PSH, h.remote_seq(1), h.local_seq(1), payload=b"late"), at=70_000)
    h.expect(h.ours(RST, h.local_seq(1), window=0))
    h.feed(h.peer(SYN, h.remote_seq(9)))
    h.expect(h.ours(RST | ACK, 0, h.remote_seq(10), window=0))
    h.feed(h.peer(RST | ACK, h.remote_seq(1), h.local_seq(1)))
    h.expect_nothing()
    assert h.path == path
    assert h.events() == []
    assert h.next_timer_ms() is None


@pytest.mark.parametrize("call", ["send", "receive", "abort", "shutdown"])
@pytest.mark.parametrize("how", sorted(REACH_CLOSED))
def test_user_calls_after_reaching_closed_are_errors(how: str, call: str) -> None:
    h = Harness()
    path = REACH_CLOSED[how](h)
    with pytest.raises(InvalidOperation) as raised:
        USER_CALLS[call](h)
    assert raised.value.call == call
    assert raised.value.state is State.CLOSED
    h.expect_nothing()
    assert h.path == path
    assert h.events() == []
    assert h.next_timer_ms() is None


@pytest.mark.parametrize("how", sorted(REACH_CLOSED))
def test_close_after_reaching_closed_is_an_error(how: str) -> None:
    h = Harness()
    path = REACH_CLOSED[how](h)
    with pytest.raises(InvalidOperation) as raised:
        h.conn.close(now=h.now)
    assert raised.value.call == "close"
    assert raised.value.state is State.CLOSED
    h.expect_nothing()
    assert h.path == path
    assert h.events() == []
