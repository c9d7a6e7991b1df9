"""Exact tests of the Endpoint: demultiplexing, RST for no connection, listeners and their
backlog, address errors, ephemeral ports, malformed bytes and the timer heap.

No simulator: the tests call receive_datagram / receive_bytes / datagrams_to_send /
next_timer / handle_timer directly, with a fixed ISN, and compare whole datagrams.
Peer ISNs sit just below 2**32 so sequence arithmetic wraps. Connections use the PLAIN
configuration (RFC 9293 alone), so every expected segment follows from RFC 9293.
"""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest

from tcpstack.core.codec import encode_segment, tcp_checksum
from tcpstack.core.config import PLAIN, Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import EPHEMERAL_PORTS, Endpoint
from tcpstack.core.errors import AddressInUse
from tcpstack.core.events import Closed, CloseReason, Established, Event
from tcpstack.core.segment import NO_OPTIONS, Datagram, Flag, Options, Segment
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tcpstack.core.trace import TraceCollector, TraceKind

HOST = "10.0.0.2"  # the endpoint under test
PEER = "10.0.0.1"
OTHER = "10.0.0.3"
ISS = 7_000  # every connection of the endpoint under test starts here
PEER_ISS = 2**32 - 2  # the peer's ISN: its first data byte wraps past 2**32
SECOND = 1_000_000
MS = 1_000

SYN = Flag.SYN
ACK = Flag.ACK
RST = Flag.RST
FIN = Flag.FIN
PSH = Flag.PSH
MSS = Options(mss=1460)
WINDOW = 65535


def fixed_isn(_four_tuple: tuple[str, int, str, int], _now: int) -> int:
    return ISS


def make(
    *,
    config: Config = PLAIN,
    syn_backlog: int = 256,
    ephemeral_ports: tuple[int, int] = EPHEMERAL_PORTS,
) -> tuple[Endpoint, TraceCollector]:
    trace = TraceCollector()
    endpoint = Endpoint(
        HOST,
        isn_generator=fixed_isn,
        config=config,
        tracer=trace,
        syn_backlog=syn_backlog,
        ephemeral_ports=ephemeral_ports,
    )
    return endpoint, trace


def from_peer(
    src_port: int,
    dst_port: int,
    flags: int,
    seq: int,
    ack: int = 0,
    *,
    payload: bytes = b"",
    window: int = WINDOW,
    options: Options = NO_OPTIONS,
    src: str = PEER,
) -> Datagram:
    return Datagram(
        src, HOST, Segment(src_port, dst_port, seq, ack, flags, window, 0, options, payload)
    )


def to_peer(
    src_port: int,
    dst_port: int,
    flags: int,
    seq: int,
    ack: int = 0,
    *,
    payload: bytes = b"",
    window: int = WINDOW,
    options: Options = NO_OPTIONS,
    dst: str = PEER,
) -> Datagram:
    return Datagram(
        HOST, dst, Segment(src_port, dst_port, seq, ack, flags, window, 0, options, payload)
    )


def sent(endpoint: Endpoint, now: int = 0) -> list[Datagram]:
    return endpoint.datagrams_to_send(now=now)


def events(conn: Connection) -> list[Event]:
    out: list[Event] = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


def handshake(endpoint: Endpoint, peer_port: int, port: int = 80, *, now: int = 0) -> None:
    """Play a peer's SYN and ACK against a listener on `port` (its SYN,ACK checked)."""
    endpoint.receive_datagram(from_peer(peer_port, port, SYN, PEER_ISS, options=MSS), now=now)
    assert sent(endpoint, now) == [
        to_peer(port, peer_port, SYN | ACK, ISS, seq_add(PEER_ISS, 1), options=MSS)
    ]
    endpoint.receive_datagram(
        from_peer(peer_port, port, ACK, seq_add(PEER_ISS, 1), ISS + 1), now=now
    )
    assert sent(endpoint, now) == []


# ------------------------------------------------------------------ demultiplexing


def test_two_connections_from_one_peer_ip_get_their_own_segments() -> None:
    endpoint, _ = make()
    endpoint.listen(80)
    handshake(endpoint, 1111)
    handshake(endpoint, 2222)
    first = endpoint.accept(80)
    second = endpoint.accept(80)
    assert first is not None and second is not None
    assert (first.remote_port, second.remote_port) == (1111, 2222)
    assert set(endpoint.connections) == {(HOST, 80, PEER, 1111), (HOST, 80, PEER, 2222)}

    data_seq = seq_add(PEER_ISS, 1)
    endpoint.receive_datagram(
        from_peer(2222, 80, ACK | PSH, data_seq, ISS + 1, payload=b"to second"), now=MS
    )
    assert (first.receive_buffered, second.receive_buffered) == (0, 9)
    assert sent(endpoint, MS) == [
        to_peer(80, 2222, ACK, ISS + 1, seq_add(data_seq, 9), window=WINDOW - 9)
    ]
    endpoint.receive_datagram(
        from_peer(1111, 80, ACK | PSH, data_seq, ISS + 1, payload=b"first"), now=2 * MS
    )
    assert first.receive(now=2 * MS) == b"first"
    assert second.receive(now=2 * MS) == b"to second"


def test_active_connections_to_one_peer_are_told_apart_by_local_port() -> None:
    endpoint, _ = make()
    a = endpoint.connect(PEER, 80, now=0)
    b = endpoint.connect(PEER, 80, now=0)
    assert sent(endpoint) == [
        to_peer(32768, 80, SYN, ISS, options=MSS),
        to_peer(32769, 80, SYN, ISS, options=MSS),
    ]
    endpoint.receive_datagram(
        from_peer(80, 32769, SYN | ACK, PEER_ISS, ISS + 1, options=MSS), now=MS
    )
    assert (a.state, b.state) == (State.SYN_SENT, State.ESTABLISHED)
    assert sent(endpoint, MS) == [to_peer(32769, 80, ACK, ISS + 1, seq_add(PEER_ISS, 1))]


def test_a_segment_for_another_address_is_dropped() -> None:
    endpoint, trace = make()
    endpoint.listen(80)
    endpoint.receive_datagram(Datagram(PEER, OTHER, Segment(1111, 80, PEER_ISS, 0, SYN)), now=0)
    assert sent(endpoint) == []
    assert endpoint.stats["wrong_address"] == 1
    assert endpoint.connections == {}
    assert trace.of_kind(TraceKind.DROP)[0].data["reason"] == "wrong_address"


# ------------------------------------------------------------------ no connection: RST


def test_segment_with_ack_for_no_connection_gets_rst_seq_seg_ack() -> None:
    endpoint, _ = make()
    endpoint.receive_datagram(
        from_peer(1111, 9, ACK | PSH, PEER_ISS, 123_456, payload=b"hello"), now=0
    )
    # RFC 9293 3.10.7.1: <SEQ=SEG.ACK><CTL=RST>.
    assert sent(endpoint) == [to_peer(9, 1111, RST, 123_456, 0, window=0)]
    assert endpoint.stats["no_connection"] == 1
    assert endpoint.connections == {}


@pytest.mark.parametrize(
    ("flags", "payload", "length"),
    [
        (SYN, b"", 1),
        (SYN, b"abc", 4),
        (FIN, b"", 1),
        (PSH, b"xy", 2),
        # SYN+FIN and segments without any flag are dropped as hostile (counted, no
        # RST): see test_hostile_input.py.
    ],
)
def test_segment_without_ack_for_no_connection_gets_rst_ack(
    flags: int, payload: bytes, length: int
) -> None:
    endpoint, _ = make()
    endpoint.receive_datagram(from_peer(1111, 9, flags, PEER_ISS, payload=payload), now=0)
    # RFC 9293 3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, wrapping mod 2**32.
    assert sent(endpoint) == [to_peer(9, 1111, RST | ACK, 0, seq_add(PEER_ISS, length), window=0)]
    assert endpoint.stats["no_connection"] == 1


def test_rst_is_answered_to_the_sender_whoever_it_is() -> None:
    endpoint, _ = make()
    endpoint.receive_datagram(from_peer(5555, 9, SYN, 10, src=OTHER), now=0)
    assert sent(endpoint) == [to_peer(9, 5555, RST | ACK, 0, 11, window=0, dst=OTHER)]


@pytest.mark.parametrize("flags", [RST, RST | ACK])
def test_rst_for_no_connection_is_dropped_and_counted(flags: int) -> None:
    endpoint, trace = make()
    endpoint.receive_datagram(from_peer(1111, 9, flags, PEER_ISS, 55), now=0)
    assert sent(endpoint) == []
    assert endpoint.stats["no_connection_rst"] == 1
    assert endpoint.stats["no_connection"] == 0
    (drop,) = trace.of_kind(TraceKind.DROP)
    assert drop.data["reason"] == "no_connection_rst"


def test_no_connection_counter_counts_every_answer() -> None:
    endpoint, _ = make()
    for port in (1, 2, 3):
        endpoint.receive_datagram(from_peer(1111, port, SYN, PEER_ISS), now=0)
    endpoint.receive_datagram(from_peer(1111, 4, RST, PEER_ISS), now=0)
    assert len(sent(endpoint)) == 3
    assert endpoint.stats["no_connection"] == 3
    assert endpoint.stats["no_connection_rst"] == 1


# ------------------------------------------------------------------ listeners


def test_listener_answers_syn_with_syn_ack() -> None:
    endpoint, _ = make()
    endpoint.listen(80)
    endpoint.receive_datagram(from_peer(1111, 80, SYN, PEER_ISS, options=MSS), now=0)
    assert sent(endpoint) == [to_peer(80, 1111, SYN | ACK, ISS, seq_add(PEER_ISS, 1), options=MSS)]
    child = endpoint.connections[(HOST, 80, PEER, 1111)]
    assert child.state is State.SYN_RECEIVED
    assert endpoint.accept(80) is None  # not established yet
    assert endpoint.next_timer() == 1 * SECOND  # the SYN,ACK's retransmission timer


def test_ack_to_a_listener_without_connection_gets_rst() -> None:
    endpoint, _ = make()
    endpoint.listen(80)
    endpoint.receive_datagram(from_peer(1111, 80, ACK, PEER_ISS, 4_242), now=0)
    # RFC 9293 3.10.7.2: <SEQ=SEG.ACK><CTL=RST>.
    assert sent(endpoint) == [to_peer(80, 1111, RST, 4_242, 0, window=0)]
    assert endpoint.stats["listen_ack"] == 1
    assert endpoint.connections == {}


def test_rst_to_a_listener_is_ignored() -> None:
    endpoint, _ = make()
    endpoint.listen(80)
    endpoint.receive_datagram(from_peer(1111, 80, RST, PEER_ISS), now=0)
    endpoint.receive_datagram(from_peer(1111, 80, RST | ACK, PEER_ISS, 1), now=0)
    assert sent(endpoint) == []
    assert endpoint.stats["listen_rst"] == 2
    assert endpoint.connections == {}
    assert 80 in endpoint.listeners


def test_segment_without_syn_ack_or_rst_to_a_listener_is_dropped() -> None:
    endpoint, _ = make()
    endpoint.listen(80)
    endpoint.receive_datagram(from_peer(1111, 80, FIN, PEER_ISS), now=0)
    assert sent(endpoint) == []
    assert endpoint.stats["listen_no_syn"] == 1


def test_accept_returns_the_established_connection_once() -> None:
    endpoint, _ = make()
    endpoint.listen(80)
    handshake(endpoint, 1111)
    child = endpoint.accept(80)
    assert child is not None
    assert child.state is State.ESTABLISHED
    assert child.four_tuple == (HOST, 80, PEER, 1111)
    assert child.state_history == [
        State.CLOSED,
        State.LISTEN,
        State.SYN_RECEIVED,
        State.ESTABLISHED,
    ]
    assert events(child) == [Established()]
    assert endpoint.accept(80) is None
    assert endpoint.connections[(HOST, 80, PEER, 1111)] is child


def test_accept_queue_is_first_established_first_out() -> None:
    endpoint, _ = make()
    endpoint.listen(80)
    endpoint.receive_datagram(from_peer(1111, 80, SYN, PEER_ISS), now=0)
    endpoint.receive_datagram(from_peer(2222, 80, SYN, PEER_ISS), now=0)
    sent(endpoint)
    for port in (2222, 1111):  # the second SYN completes first
        endpoint.receive_datagram(from_peer(port, 80, ACK, seq_add(PEER_ISS, 1), ISS + 1), now=0)
    accepted = [endpoint.accept(80), endpoint.accept(80), endpoint.accept(80)]
    assert [c.remote_port if c is not None else None for c in accepted] == [2222, 1111, None]


def test_full_accept_queue_drops_syn_until_accept_frees_room() -> None:
    endpoint, trace = make()
    endpoint.listen(80, backlog=2)
    handshake(endpoint, 1111)
    handshake(endpoint, 2222)
    endpoint.receive_datagram(from_peer(3333, 80, SYN, PEER_ISS, options=MSS), now=0)
    assert sent(endpoint) == []
    assert endpoint.stats["listen_overflow"] == 1
    assert (HOST, 80, PEER, 3333) not in endpoint.connections
    assert trace.of_kind(TraceKind.DROP)[-1].data["reason"] == "listen_overflow"

    first = endpoint.accept(80)
    assert first is not None and first.remote_port == 1111
    # The client retransmits its SYN after its RTO: now there is room.
    endpoint.receive_datagram(from_peer(3333, 80, SYN, PEER_ISS, options=MSS), now=SECOND)
    assert sent(endpoint, SECOND) == [
        to_peer(80, 3333, SYN | ACK, ISS, seq_add(PEER_ISS, 1), options=MSS)
    ]
    endpoint.receive_datagram(
        from_peer(3333, 80, ACK, seq_add(PEER_ISS, 1), ISS + 1), now=SECOND + MS
    )
    assert [c.remote_port for c in (endpoint.accept(80), endpoint.accept(80)) if c] == [2222, 3333]
    assert endpoint.stats["listen_overflow"] == 1


def test_syn_backlog_limit_drops_syn_while_too_many_are_half_open() -> None:
    endpoint, trace = make(syn_backlog=2)
    endpoint.listen(80)
    endpoint.receive_datagram(from_peer(1111, 80, SYN, PEER_ISS), now=0)
    endpoint.receive_datagram(from_peer(2222, 80, SYN, PEER_ISS), now=0)
    assert len(sent(endpoint)) == 2
    endpoint.receive_datagram(from_peer(3333, 80, SYN, PEER_ISS), now=0)
    assert sent(endpoint) == []
    assert endpoint.stats["syn_backlog_full"] == 1
    assert (HOST, 80, PEER, 3333) not in endpoint.connections
    assert trace.of_kind(TraceKind.DROP)[-1].data["reason"] == "syn_backlog_full"

    # One half-open child completes: room for one more.
    endpoint.receive_datagram(from_peer(1111, 80, ACK, seq_add(PEER_ISS, 1), ISS + 1), now=MS)
    endpoint.receive_datagram(from_peer(3333, 80, SYN, PEER_ISS), now=SECOND)
    assert sent(endpoint, SECOND) == [
        to_peer(80, 3333, SYN | ACK, ISS, seq_add(PEER_ISS, 1), options=MSS)
    ]
    assert endpoint.stats["syn_backlog_full"] == 1


def test_child_reset_in_syn_received_is_forgotten_and_the_listener_still_works() -> None:
    endpoint, _ = make()
    listener = endpoint.listen(80)
    endpoint.receive_datagram(from_peer(1111, 80, SYN, PEER_ISS), now=0)
    sent(endpoint)
    child = endpoint.connections[(HOST, 80, PEER, 1111)]
    # RST at RCV.NXT (RFC 9293 3.10.7.4 second step): back to LISTEN.
    endpoint.receive_datagram(from_peer(1111, 80, RST, seq_add(PEER_ISS, 1)), now=MS)
    assert sent(endpoint, MS) == []
    assert child.state is State.LISTEN
    assert child.state_history[-2:] == [State.SYN_RECEIVED, State.LISTEN]
    assert endpoint.connections == {}
    assert listener.embryonic == set() and not listener.accept_queue
    assert endpoint.next_timer() is None
    assert endpoint.accept(80) is None

    # The same peer port connects again: a new child, a new handshake.
    handshake(endpoint, 1111, now=2 * MS)
    again = endpoint.accept(80)
    assert again is not None and again is not child
    assert again.state is State.ESTABLISHED


def test_child_that_gives_up_in_syn_received_is_forgotten() -> None:
    endpoint, _ = make(config=replace(PLAIN, synack_retries=1))
    listener = endpoint.listen(80)
    endpoint.receive_datagram(from_peer(1111, 80, SYN, PEER_ISS), now=0)
    sent(endpoint)
    child = endpoint.connections[(HOST, 80, PEER, 1111)]
    endpoint.handle_timer(now=1 * SECOND)  # SYN,ACK resent, RTO doubled
    assert len(sent(endpoint, SECOND)) == 1
    assert endpoint.next_timer() == 3 * SECOND
    endpoint.handle_timer(now=3 * SECOND)
    assert sent(endpoint, 3 * SECOND) == []
    assert child.state is State.CLOSED
    assert events(child) == [Closed(CloseReason.TIMEOUT)]
    assert endpoint.connections == {} and listener.embryonic == set()
    assert endpoint.next_timer() is None


# ------------------------------------------------------------------ address errors


def test_listen_on_a_used_port_raises_address_in_use_and_changes_nothing() -> None:
    endpoint, _ = make()
    listener = endpoint.listen(80, backlog=5)
    with pytest.raises(AddressInUse) as raised:
        endpoint.listen(80, backlog=1)
    assert raised.value.call == "listen"
    assert raised.value.state is State.LISTEN
    assert endpoint.listeners == {80: listener}
    assert listener.backlog == 5


def _to_time_wait(endpoint: Endpoint, local_port: int) -> Connection:
    """An active connection from `local_port` to PEER:80, closed first by us."""
    conn = endpoint.connect(PEER, 80, now=0, local_port=local_port)
    endpoint.receive_datagram(
        from_peer(80, local_port, SYN | ACK, PEER_ISS, ISS + 1, options=MSS), now=MS
    )
    conn.close(now=2 * MS)
    sent(endpoint, 2 * MS)
    fin = from_peer(80, local_port, FIN | ACK, seq_add(PEER_ISS, 1), ISS + 2)
    endpoint.receive_datagram(fin, now=3 * MS)
    assert sent(endpoint, 3 * MS) == [
        to_peer(local_port, 80, ACK, ISS + 2, seq_add(PEER_ISS, 2)),
    ]
    assert conn.state is State.TIME_WAIT
    return conn


def test_connect_to_a_four_tuple_in_time_wait_raises_address_in_use() -> None:
    endpoint, _ = make()
    held = _to_time_wait(endpoint, 4000)
    with pytest.raises(AddressInUse) as raised:
        endpoint.connect(PEER, 80, now=4 * MS, local_port=4000)
    assert raised.value.call == "connect"
    assert raised.value.state is State.TIME_WAIT
    # TIME_WAIT lives on as a compact entry; the Connection object still says so.
    assert endpoint.connections == {}
    assert list(endpoint.time_wait) == [(HOST, 4000, PEER, 80)]
    assert held.state is State.TIME_WAIT
    assert sent(endpoint, 4 * MS) == []
    # Another remote port is another 4-tuple.
    endpoint.connect(PEER, 81, now=4 * MS, local_port=4000)
    # After 2*MSL the 4-tuple is free again.
    deadline = 3 * MS + PLAIN.time_wait_duration
    endpoint.handle_timer(now=deadline)
    assert held.state_history[-1] is State.CLOSED
    again = endpoint.connect(PEER, 80, now=deadline, local_port=4000)
    assert again.state is State.SYN_SENT


def test_connect_right_after_abort_may_reuse_the_four_tuple() -> None:
    # The aborted connection is CLOSED at once (RFC 9293 3.10.5 "delete the TCB"):
    # the 4-tuple is free even before the driver next collects output.
    endpoint, _ = make()
    first = endpoint.connect(PEER, 80, now=0, local_port=4000)
    first.abort(now=MS)
    again = endpoint.connect(PEER, 80, now=MS, local_port=4000)
    assert again is not first
    assert endpoint.connections == {(HOST, 4000, PEER, 80): again}


def test_ephemeral_ports_are_consecutive_from_32768_and_skip_listeners() -> None:
    endpoint, _ = make()
    assert EPHEMERAL_PORTS == (32768, 60999)
    endpoint.listen(32770)
    ports = [endpoint.connect(PEER, 80, now=0).local_port for _ in range(4)]
    assert ports == [32768, 32769, 32771, 32772]


def test_ephemeral_ports_wrap_and_run_out() -> None:
    endpoint, _ = make(ephemeral_ports=(40000, 40002))
    ports = [endpoint.connect(PEER, 80, now=0).local_port for _ in range(3)]
    assert ports == [40000, 40001, 40002]
    # Past the top the search wraps to the bottom; 40000 is free towards another port.
    assert endpoint.connect(PEER, 81, now=0).local_port == 40000
    with pytest.raises(AddressInUse) as raised:
        endpoint.connect(PEER, 80, now=0)
    assert raised.value.call == "connect"
    assert len(endpoint.connections) == 4
    # A freed port is found again wherever the search is.
    endpoint.connections[(HOST, 40001, PEER, 80)].abort(now=MS)
    assert endpoint.connect(PEER, 80, now=MS).local_port == 40001


# ------------------------------------------------------------------ malformed bytes


def _raw(header_words: int, options: bytes, *, fix_checksum: bool = True) -> bytes:
    """A SYN to port 80 with a given data offset and options area, checksummed."""
    header = struct.pack("!HHIIBBHHH", 1111, 80, PEER_ISS, 0, header_words << 4, SYN, WINDOW, 0, 0)
    data = header + options
    if not fix_checksum:
        return data
    checksum = tcp_checksum(PEER, HOST, data)
    return data[:16] + struct.pack("!H", checksum) + data[18:]


def _bad_checksum() -> bytes:
    good = bytearray(encode_segment(Segment(1111, 80, PEER_ISS, 0, SYN, WINDOW), PEER, HOST))
    good[4] ^= 0x01
    return bytes(good)


MALFORMED = {
    "short_header": bytes(19),
    "bad_checksum": _bad_checksum(),
    "bad_data_offset": _raw(4, b""),
    "bad_data_offset_past_end": _raw(6, b""),
    "truncated_option": _raw(6, bytes([1, 1, 1, 2])),
    "truncated_option_runs_past": _raw(6, bytes([2, 8, 5, 0xB4])),
    "bad_option_length": _raw(6, bytes([2, 3, 5, 0])),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_bytes_are_dropped_counted_and_traced(name: str) -> None:
    reason = name.removesuffix("_past_end").removesuffix("_runs_past")
    endpoint, trace = make()
    endpoint.listen(80)
    endpoint.receive_bytes(PEER, HOST, MALFORMED[name], now=5)
    assert sent(endpoint, 5) == []
    assert endpoint.connections == {}
    assert endpoint.stats == {f"malformed.{reason}": 1}
    (drop,) = trace.of_kind(TraceKind.DROP)
    assert (drop.time, drop.conn, drop.data["reason"]) == (5, HOST, f"malformed.{reason}")


def test_well_formed_bytes_reach_the_listener() -> None:
    endpoint, _ = make()
    endpoint.listen(80)
    endpoint.receive_bytes(PEER, HOST, _raw(6, bytes([2, 4, 5, 0xB4])), now=0)
    assert sent(endpoint) == [to_peer(80, 1111, SYN | ACK, ISS, seq_add(PEER_ISS, 1), options=MSS)]
    assert not endpoint.stats


# ------------------------------------------------------------------ timers


def test_next_timer_is_the_earliest_deadline_of_all_connections() -> None:
    endpoint, _ = make()
    assert endpoint.next_timer() is None
    late = endpoint.connect(PEER, 80, now=300 * MS)
    assert endpoint.next_timer() == 1_300 * MS
    early = endpoint.connect(PEER, 81, now=100 * MS)
    assert endpoint.next_timer() == 1_100 * MS
    assert endpoint.next_timer() == min(late.next_timer() or 0, early.next_timer() or 0)


def test_handle_timer_before_the_deadline_is_a_no_op() -> None:
    endpoint, trace = make()
    conn = endpoint.connect(PEER, 80, now=0)
    sent(endpoint)
    before = len(trace.records)
    for now in (0, 500 * MS, SECOND - 1):
        endpoint.handle_timer(now=now)
        assert sent(endpoint, now) == []
    assert len(trace.records) == before
    assert conn.retransmissions == 0
    assert endpoint.next_timer() == SECOND
    endpoint.handle_timer(now=SECOND)
    assert sent(endpoint, SECOND) == [to_peer(conn.local_port, 80, SYN, ISS, options=MSS)]


def spy_on_timers(monkeypatch: pytest.MonkeyPatch, conn: Connection) -> list[int]:
    """Record every `now` the endpoint calls conn.handle_timer with."""
    calls: list[int] = []
    original = Connection.handle_timer

    # Connection has __slots__, so the spy wraps the class's method and records only
    # the calls for `conn`.
    def handle_timer(self: Connection, *, now: int) -> None:
        if self is conn:
            calls.append(now)
        original(self, now=now)

    monkeypatch.setattr(Connection, "handle_timer", handle_timer)
    return calls


def test_a_timer_that_moved_later_does_not_fire_at_its_old_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, _ = make()
    moved = endpoint.connect(PEER, 80, now=0)  # SYN timer at 1 s
    stopped = endpoint.connect(PEER, 81, now=0)  # SYN timer at 1 s
    sent(endpoint)
    moved_calls = spy_on_timers(monkeypatch, moved)
    stopped_calls = spy_on_timers(monkeypatch, stopped)
    assert endpoint.next_timer() == SECOND
    # `moved`: SYN,ACK after 200 ms (RTO becomes 1 s, the minimum), then data at 600 ms
    # arms the retransmission timer at 1.6 s.
    endpoint.receive_datagram(
        from_peer(80, moved.local_port, SYN | ACK, PEER_ISS, ISS + 1), now=200 * MS
    )
    moved.send(b"x", now=600 * MS)
    # `stopped`: SYN,ACK too, and nothing to send: no timer at all.
    endpoint.receive_datagram(
        from_peer(81, stopped.local_port, SYN | ACK, PEER_ISS, ISS + 1), now=600 * MS
    )
    assert len(sent(endpoint, 600 * MS)) == 2
    assert (moved.next_timer(), stopped.next_timer()) == (1_600 * MS, None)
    assert endpoint.next_timer() == 1_600 * MS
    endpoint.handle_timer(now=SECOND)  # the stale 1 s entries
    assert sent(endpoint, SECOND) == []
    assert (moved_calls, stopped_calls) == ([], [])
    endpoint.handle_timer(now=1_600 * MS)
    assert (moved_calls, stopped_calls) == ([1_600 * MS], [])
    assert sent(endpoint, 1_600 * MS) == [
        to_peer(moved.local_port, 80, ACK | PSH, ISS + 1, seq_add(PEER_ISS, 1), payload=b"x")
    ]
    assert endpoint.next_timer() == 3_600 * MS  # backed off: 2 s


def test_a_stopped_timer_armed_again_fires_only_at_its_new_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, _ = make()
    conn = endpoint.connect(PEER, 80, now=0)
    calls = spy_on_timers(monkeypatch, conn)
    endpoint.receive_datagram(
        from_peer(80, conn.local_port, SYN | ACK, PEER_ISS, ISS + 1), now=200 * MS
    )
    conn.send(b"a", now=300 * MS)  # retransmission timer at 1.3 s
    assert endpoint.next_timer() == 1_300 * MS
    endpoint.receive_datagram(
        from_peer(80, conn.local_port, ACK, seq_add(PEER_ISS, 1), ISS + 2), now=400 * MS
    )
    assert endpoint.next_timer() is None
    conn.send(b"b", now=500 * MS)
    assert endpoint.next_timer() == 1_500 * MS
    endpoint.handle_timer(now=1_300 * MS)
    assert calls == []
    endpoint.handle_timer(now=1_500 * MS)
    assert calls == [1_500 * MS]
    assert conn.retransmissions == 1


def test_one_handle_timer_retransmits_a_thousand_syns() -> None:
    endpoint, _ = make()
    conns = [endpoint.connect(PEER, 80, now=0) for _ in range(1000)]
    first = sent(endpoint)
    assert len(first) == 1000
    assert endpoint.next_timer() == SECOND
    endpoint.handle_timer(now=SECOND)
    again = sent(endpoint, SECOND)
    assert again == first
    assert [d.segment.dst_port for d in again] == [80] * 1000
    assert sorted(d.segment.src_port for d in again) == list(range(32768, 33768))
    assert all(c.state is State.SYN_SENT and c.retransmissions == 1 for c in conns)
    assert endpoint.next_timer() == 3 * SECOND


# ------------------------------------------------------------------ what users see


def shuttle(a: Endpoint, b: Endpoint, now: int) -> int:
    """Deliver everything a and b send to each other until both are quiet."""
    count = 0
    for _ in range(100):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for datagram in src.datagrams_to_send(now=now):
                assert datagram.dst == dst.address
                dst.receive_datagram(datagram, now=now)
                count += 1
                moved = True
        if not moved:
            return count
    raise AssertionError("endpoints never went quiet")


def test_connect_to_a_closed_port_is_refused() -> None:
    client = Endpoint(PEER, isn_generator=fixed_isn, config=PLAIN)
    server, _ = make()
    conn = client.connect(HOST, 80, now=0)
    assert shuttle(client, server, MS) == 2  # SYN, RST,ACK
    assert server.stats["no_connection"] == 1
    assert conn.state is State.CLOSED
    assert conn.state_history == [State.CLOSED, State.SYN_SENT, State.CLOSED]
    assert events(conn) == [Closed(CloseReason.REFUSED)]
    assert conn.close_reason is CloseReason.REFUSED
    assert client.connections == {}
    assert client.next_timer() is None


def test_reset_of_an_established_connection_is_reported_as_reset() -> None:
    client = Endpoint(PEER, isn_generator=fixed_isn, config=PLAIN)
    server, _ = make()
    server.listen(80)
    conn = client.connect(HOST, 80, now=0)
    shuttle(client, server, MS)
    child = server.accept(80)
    assert child is not None
    assert conn.state_history[-1] is State.ESTABLISHED
    child.abort(now=2 * MS)
    assert shuttle(client, server, 2 * MS) == 1  # the RST, answered by nothing
    assert conn.state is State.CLOSED
    assert events(conn) == [Established(), Closed(CloseReason.RESET)]
    assert events(child) == [Established(), Closed(CloseReason.ABORTED)]
    assert client.connections == {} and server.connections == {}
