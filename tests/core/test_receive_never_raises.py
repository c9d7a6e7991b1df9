"""Property: whatever a peer sends, in any state, receive_segment never raises.

For every state the harness can reach, arbitrary segments (any flags, sequence and
acknowledgment numbers anywhere but also near RCV.NXT and SND.NXT, any window, payloads
up to 3000 octets, random options) are fed one after another, with the clock moving and
timers firing in between. Checked after every step: nothing raised, every state change
in the path is a TRANSITIONS edge (RFC 9293 figure 5 as data), at most one Closed event
was produced (exactly one once the connection is CLOSED after being opened), no RST
answers a RST (RFC 9293 3.10.7.1, 3.5.2) and every segment sent fits its header fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcpstack.core.config import PLAIN
from tcpstack.core.events import Closed, Event
from tcpstack.core.segment import NO_OPTIONS, Flag, Options, Segment
from tcpstack.core.seq import seq_add
from tcpstack.core.state import TRANSITIONS, State
from tests.core.harness import LOCAL_PORT, REMOTE_PORT, Harness

EDGES = {(state, target) for (state, _trigger), target in TRANSITIONS.items()}

REACH: dict[State, Callable[[Harness], None]] = {
    State.CLOSED: lambda h: None,
    State.LISTEN: Harness.to_listen,
    State.SYN_SENT: Harness.to_syn_sent,
    State.SYN_RECEIVED: Harness.to_syn_received,
    State.ESTABLISHED: Harness.to_established,
    State.FIN_WAIT_1: Harness.to_fin_wait_1,
    State.FIN_WAIT_2: Harness.to_fin_wait_2,
    State.CLOSE_WAIT: Harness.to_close_wait,
    State.CLOSING: Harness.to_closing,
    State.LAST_ACK: Harness.to_last_ack,
    State.TIME_WAIT: Harness.to_time_wait,
}
# States in which send() queues data without changing state: start some runs with data
# queued or in flight.
CAN_SEND = (State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSE_WAIT)

U32 = st.integers(min_value=0, max_value=2**32 - 1)
# A sequence or acknowledgment number: anywhere (None, value), or (anchor index, small
# or medium distance) from one of the connection's variables at feed time (sequence:
# RCV.NXT, IRS, the window's right edge, 0; acknowledgment: SND.NXT, SND.UNA, SND.MAX, ISS).
NUMBER = st.one_of(
    st.tuples(st.none(), U32),
    st.tuples(
        st.integers(min_value=0, max_value=3),
        st.integers(min_value=-3, max_value=3) | st.integers(min_value=-70_000, max_value=70_000),
    ),
)
OPTIONS = st.one_of(
    st.just(NO_OPTIONS),
    st.builds(
        Options,
        mss=st.none() | st.integers(min_value=0, max_value=65535),
        window_scale=st.none() | st.integers(min_value=0, max_value=255),
        sack_permitted=st.booleans(),
        sack_blocks=st.lists(st.tuples(U32, U32), max_size=4).map(tuple),
        timestamp=st.none() | st.tuples(U32, U32),
        unknown=st.lists(
            st.tuples(st.integers(min_value=0, max_value=255), st.binary(max_size=8)),
            max_size=2,
        ).map(tuple),
    ),
)
PAYLOAD = st.one_of(
    st.just(b""),
    st.binary(max_size=16),
    st.integers(min_value=0, max_value=3000).map(bytes),
)


@dataclass(frozen=True)
class Step:
    """Move the clock, maybe run the timers, then feed one segment."""

    advance_ms: int
    run_timers: bool
    flags: int
    seq: tuple[int | None, int]
    ack: tuple[int | None, int]
    window: int
    payload: bytes
    options: Options


STEPS = st.lists(
    st.builds(
        Step,
        advance_ms=st.sampled_from([0, 1, 200, 1500, 70_000]),
        run_timers=st.booleans(),
        flags=st.integers(min_value=0, max_value=Flag.ALL),
        seq=NUMBER,
        ack=NUMBER,
        window=st.integers(min_value=0, max_value=65535),
        payload=PAYLOAD,
        options=OPTIONS,
    ),
    min_size=1,
    max_size=6,
)


def _number(spec: tuple[int | None, int], anchors: tuple[int, int, int, int]) -> int:
    anchor, value = spec
    return value if anchor is None else seq_add(anchors[anchor], value)


def _check_sent(sent: list[Segment]) -> None:
    for seg in sent:
        assert seg.src_port == LOCAL_PORT
        assert seg.dst_port == REMOTE_PORT or seg.flags & Flag.RST
        assert 0 <= seg.seq < 2**32
        assert 0 <= seg.ack < 2**32
        assert 0 <= seg.window <= 65535


@pytest.mark.parametrize("state", list(REACH), ids=str)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    receive_buffer=st.sampled_from([65535, 4000, 100]),
    send_buffer=st.sampled_from([65536, 1000]),
    queued=st.none() | st.integers(min_value=0, max_value=3000),
    steps=STEPS,
)
def test_receive_segment_never_raises(
    state: State, receive_buffer: int, send_buffer: int, queued: int | None, steps: list[Step]
) -> None:
    h = Harness(
        PLAIN.with_changes(receive_buffer_size=receive_buffer, send_buffer_size=send_buffer)
    )
    REACH[state](h)
    assert h.state is state
    if state in CAN_SEND and queued is not None:
        h.conn.send(bytes(queued), now=h.now)
    events: list[Event] = h.events()
    opened = state is not State.CLOSED

    for step in steps:
        h.at(h.now / 1000 + step.advance_ms)
        if step.run_timers:
            h.conn.handle_timer(now=h.now)
        _check_sent(h.sent())
        conn = h.conn
        seg = h.peer(
            step.flags,
            _number(step.seq, (conn.rcv_nxt, conn.irs, seq_add(conn.rcv_nxt, conn.rcv_wnd), 0)),
            _number(step.ack, (conn.snd_nxt, conn.snd_una, conn.snd_max, conn.iss)),
            window=step.window,
            payload=step.payload,
            options=step.options,
        )
        h.feed(seg)
        sent = h.sent()
        _check_sent(sent)
        if seg.flags & Flag.RST:
            assert not any(out.flags & Flag.RST for out in sent), "RST answered with RST"
        events += h.events()

        path = h.path
        assert path[0] is State.CLOSED
        for edge in pairwise(path):
            assert edge in EDGES, f"{edge[0]} -> {edge[1]} is not a TRANSITIONS edge"
        closed = sum(isinstance(event, Closed) for event in events)
        assert closed <= 1
        if opened:
            assert closed == (1 if h.state is State.CLOSED else 0)
        else:
            assert closed == 0
