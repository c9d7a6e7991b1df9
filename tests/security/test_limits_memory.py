"""The resource limits hold under hostile peers, measured with tracemalloc.

Three peers that would make an unlimited stack grow without end:

(a) one that opens connections without end: spoofed SYNs that never complete, and
    completed handshakes (each sending some data) whose connections the application
    accepts but never reads;
(b) one that sends only out-of-order data (never the byte at RCV.NXT) on many
    connections, so all of it waits for reassembly;
(c) one that never reads: its window stays zero while the application keeps writing.

Each test runs long enough that keeping everything would need several times the bound
(asserted from the offered load), samples the connection count / buffers at every
step, and checks tracemalloc's peak against a bound derived from the configured limits.

The one measured constant, CONNECTION_OVERHEAD: an established, idle connection
(Connection object with its buffers, reassembly queue, scoreboard, RTT estimator,
congestion controller, deques, the Endpoint's dict and timer-heap entries) measured
3.3 KB with tracemalloc (Config() options, 2,000 connections, Python 3.11); a
SYN_RECEIVED child 2.3 KB. 8 KiB per connection leaves room for state histories,
stale timer-heap entries and events without hiding a leak: an unbounded stack in these
runs would need more than three times the bound.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tcpstack.core.config import PLAIN, Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.isn import KeyedIsnGenerator
from tcpstack.core.segment import Datagram, Flag, Segment
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State

HOST = "10.0.0.2"
ATTACKER = "10.66.0.1"
MS = 1_000
KIB = 1024
CONNECTION_OVERHEAD = 8 * KIB  # see the module docstring
# Everything that does not scale with connections or buffers: the Endpoint, listener,
# counters, the test's own bookkeeping, the interpreter's caches warming up.
FIXED_OVERHEAD = 512 * KIB
SYN, ACK, PSH = Flag.SYN, Flag.ACK, Flag.PSH


@dataclass
class Measure:
    base: int = 0
    peak: int = 0  # bytes above `base` at the highest point


@contextmanager
def traced() -> Iterator[Measure]:
    """tracemalloc around a block: `peak` is the highest traced memory above the start."""
    gc.collect()
    tracemalloc.start()
    measure = Measure(base=tracemalloc.get_traced_memory()[0])
    try:
        yield measure
    finally:
        measure.peak = tracemalloc.get_traced_memory()[1] - measure.base
        tracemalloc.stop()


def _segment(
    sport: int, seq: int, ack: int, flags: int, payload: bytes = b"", window: int = 65535
) -> Segment:
    return Segment(sport, 80, seq, ack, flags, window, 0, payload=payload)


# ---------------------------------------------------------------------------- (a)

MAX_CONNECTIONS = 200
SYN_BACKLOG = 32
RECEIVE_BUFFER_A = 4 * KIB
DATA_PER_CONNECTION = 1000
ROUNDS_A = 1500
SPOOFED_PER_ROUND = 8
HANDSHAKES_PER_ROUND = 2


def test_endless_connections_are_capped_and_memory_bounded() -> None:
    rng = random.Random(11)
    config = Config(receive_buffer_size=RECEIVE_BUFFER_A, send_buffer_size=4 * KIB)
    server = Endpoint(
        HOST,
        isn_generator=KeyedIsnGenerator(b"s" * 32),
        config=config,
        syn_backlog=SYN_BACKLOG,
        syn_cookie_secret=b"k" * 32,
        max_connections=MAX_CONNECTIONS,
        track_woken=False,
    )
    server.listen(80, backlog=MAX_CONNECTIONS)
    accepted: list[Connection] = []  # the application holds them and never reads
    next_port = 1024
    handshakes = 0
    peak_connections = 0
    with traced() as measure:
        for step in range(1, ROUNDS_A + 1):
            now = step * MS
            for _ in range(SPOOFED_PER_ROUND):
                source = f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                syn = _segment(rng.randrange(1024, 65536), rng.getrandbits(32), 0, SYN)
                server.receive_datagram(Datagram(source, HOST, syn), now=now)
            ports = []
            for _ in range(HANDSHAKES_PER_ROUND):
                ports.append(next_port)
                server.receive_datagram(
                    Datagram(ATTACKER, HOST, _segment(next_port, 0, 0, SYN)), now=now
                )
                next_port += 1
                handshakes += 1
            # The attacker completes its handshakes (answering whatever SYN,ACK or cookie
            # came back) and sends data at once; SYN,ACKs to spoofed sources are lost.
            for datagram in server.datagrams_to_send(now=now):
                seg = datagram.segment
                if datagram.dst == ATTACKER and seg.flags == SYN | ACK and seg.dst_port in ports:
                    ack = seq_add(seg.seq, 1)
                    third = _segment(seg.dst_port, 1, ack, ACK | PSH, bytes(DATA_PER_CONNECTION))
                    server.receive_datagram(Datagram(ATTACKER, HOST, third), now=now)
            deadline = server.next_timer()
            if deadline is not None and deadline <= now:
                server.handle_timer(now=now)
            server.datagrams_to_send(now=now)
            while (conn := server.accept(80)) is not None:
                accepted.append(conn)
            peak_connections = max(peak_connections, server.connection_count())
            assert server.connection_count() <= MAX_CONNECTIONS
    established = [c for c in accepted if c.state is State.ESTABLISHED]
    print(
        f"\n(a) {handshakes} handshakes + {ROUNDS_A * SPOOFED_PER_ROUND} spoofed SYNs: "
        f"peak {peak_connections} connections (limit {MAX_CONNECTIONS}), "
        f"{len(established)} established never read, traced peak {measure.peak / KIB:.0f} KiB, "
        f"refused {server.stats['limit.connections']}, cookies {server.stats['syn_cookie.sent']}"
    )
    assert peak_connections == MAX_CONNECTIONS
    assert server.stats["limit.connections"] > 0
    assert all(c.receive_buffered == DATA_PER_CONNECTION for c in established)
    # Each connection holds at most its receive buffer of unread data plus bookkeeping.
    bound = MAX_CONNECTIONS * (CONNECTION_OVERHEAD + RECEIVE_BUFFER_A) + FIXED_OVERHEAD
    assert measure.peak <= bound, f"peak {measure.peak} above bound {bound}"
    # Keeping every handshake's connection (at least 2.3 KB each, measured) and its data
    # would need more than three times the bound: growth would have shown.
    assert handshakes * (2300 + DATA_PER_CONNECTION) > 3 * bound


# ---------------------------------------------------------------------------- (b)

OOO_CONNECTIONS = 128
STACK_REASSEMBLY_LIMIT = 256 * KIB
SEGMENTS_PER_CONNECTION = 40
OOO_SEGMENT = 1400
OOO_STRIDE = 1500  # 100-byte gaps: no two segments merge into one block
REASSEMBLY_BLOCK_OVERHEAD = 128  # a bytes object's header and list slots, per block


def _established_children(server: Endpoint, count: int, now: int) -> list[tuple[int, Connection]]:
    """`count` connections from ATTACKER, handshakes completed; (peer port, conn)."""
    for port in range(2000, 2000 + count):
        server.receive_datagram(Datagram(ATTACKER, HOST, _segment(port, 0, 0, SYN)), now=now)
    for datagram in server.datagrams_to_send(now=now):
        seg = datagram.segment
        ack = _segment(seg.dst_port, 1, seq_add(seg.seq, 1), ACK)
        server.receive_datagram(Datagram(ATTACKER, HOST, ack), now=now)
    server.datagrams_to_send(now=now)
    out = []
    while (conn := server.accept(80)) is not None:
        out.append((conn.remote_port, conn))
    assert len(out) == count
    return out


def test_out_of_order_data_is_capped_per_connection_and_per_stack() -> None:
    config = PLAIN.with_changes(receive_buffer_size=65535, max_reassembly_blocks=64)
    server = Endpoint(
        HOST,
        isn_generator=lambda _t, _n: 5000,
        config=config,
        max_reassembly_bytes=STACK_REASSEMBLY_LIMIT,
        syn_backlog=OOO_CONNECTIONS,
        track_woken=False,
    )
    server.listen(80, backlog=OOO_CONNECTIONS)
    conns = _established_children(server, OOO_CONNECTIONS, 0)
    payload = bytes(OOO_SEGMENT)
    peak_held = 0
    with traced() as measure:
        for k in range(1, SEGMENTS_PER_CONNECTION + 1):
            now = k * MS
            for port, conn in conns:
                # Byte 0 (RCV.NXT) never comes: everything waits for reassembly.
                seg = _segment(port, 1 + k * OOO_STRIDE, 5001, ACK, payload)
                server.receive_datagram(Datagram(ATTACKER, HOST, seg), now=now)
                assert conn.reassembly_held <= config.receive_buffer_size
            server.datagrams_to_send(now=now)
            held = sum(conn.reassembly_held for _, conn in conns)
            assert held == server.reassembly_budget.held <= STACK_REASSEMBLY_LIMIT
            peak_held = max(peak_held, held)
    offered = OOO_CONNECTIONS * SEGMENTS_PER_CONNECTION * OOO_SEGMENT
    print(
        f"\n(b) {offered / KIB:.0f} KiB out-of-order offered on {OOO_CONNECTIONS} connections: "
        f"held peak {peak_held / KIB:.0f} KiB (stack limit {STACK_REASSEMBLY_LIMIT / KIB:.0f} "
        f"KiB), refused {server.stats['limit.reassembly_bytes']} times, "
        f"traced peak {measure.peak / KIB:.0f} KiB"
    )
    assert server.reassembly_budget.peak <= STACK_REASSEMBLY_LIMIT
    assert peak_held > STACK_REASSEMBLY_LIMIT - OOO_SEGMENT  # the stack limit was reached
    assert server.stats["limit.reassembly_bytes"] > 0
    assert all(conn.receive_buffered == 0 for _, conn in conns)
    # The connections existed before tracing started, so only growth counts: the held
    # bytes (the stack limit), per connection at most max_reassembly_blocks block
    # headers, one merge's transient copies (a bytearray and a bytes of at most a
    # receive buffer each) and the fixed part.
    bound = (
        STACK_REASSEMBLY_LIMIT
        + OOO_CONNECTIONS * 64 * REASSEMBLY_BLOCK_OVERHEAD
        + 2 * config.receive_buffer_size
        + FIXED_OVERHEAD
    )
    assert measure.peak <= bound, f"peak {measure.peak} above bound {bound}"
    assert offered > 3 * bound


def test_reassembly_blocks_are_capped_per_connection() -> None:
    """Tiny segments with gaps between them: the block limit (64) binds long before the
    byte limit, so a peer cannot make a connection keep thousands of small objects."""
    config = PLAIN.with_changes(receive_buffer_size=65535, max_reassembly_blocks=64)
    server = Endpoint(HOST, isn_generator=lambda _t, _n: 5000, config=config, track_woken=False)
    server.listen(80)
    ((port, conn),) = _established_children(server, 1, 0)
    for k in range(1, 3000):
        seg = _segment(port, 1 + 20 * k, 5001, ACK, bytes(10))
        server.receive_datagram(Datagram(ATTACKER, HOST, seg), now=k)
        server.datagrams_to_send(now=k)
    assert conn.reassembly_held == 64 * 10  # 64 blocks of 10 bytes, the rest refused
    assert server.stats["limit.reassembly_connection"] == 2999 - 64
    # A duplicate of held text is not a refusal.
    seg = _segment(port, 1 + 20, 5001, ACK, bytes(10))
    server.receive_datagram(Datagram(ATTACKER, HOST, seg), now=5000)
    assert server.stats["limit.reassembly_connection"] == 2999 - 64
    assert conn.state is State.ESTABLISHED


# ---------------------------------------------------------------------------- (c)

SEND_BUFFER = 10_000
PEER_WINDOW = 2000  # what the peer accepts before closing its window for good
WRITE = 1024
SECONDS_C = 120


def test_peer_that_never_reads_bounds_the_send_buffer() -> None:
    config = PLAIN.with_changes(send_buffer_size=SEND_BUFFER)
    client = Endpoint(HOST, isn_generator=lambda _t, _n: 100, config=config, track_woken=False)
    peer_isn = 2**32 - 5
    conn = client.connect(ATTACKER, 80, now=0, local_port=4000)

    def from_peer(seq: int, ack: int, flags: int, window: int) -> None:
        seg = Segment(80, 4000, seq, ack, flags, window)
        client.receive_datagram(Datagram(ATTACKER, HOST, seg), now=now)

    now = 0
    client.datagrams_to_send(now=now)
    from_peer(peer_isn, 101, SYN | ACK, PEER_WINDOW)
    writes: list[int] = []
    probes = 0
    peer_rcv_nxt = 101  # our first data byte (ISN 100 + 1)
    with traced() as measure:
        for step in range(1, SECONDS_C * 1000 + 1):
            now = step * MS
            if step % 10 == 0:  # the application writes 1 KiB every 10 ms, for ever
                writes.append(conn.send(bytes(WRITE), now=now))
                assert conn.send_buffered <= SEND_BUFFER
            deadline = client.next_timer()
            if deadline is not None and deadline <= now:
                client.handle_timer(now=now)
            for datagram in client.datagrams_to_send(now=now):
                seg = datagram.segment
                if not seg.payload:
                    continue
                # The peer takes the first PEER_WINDOW bytes in order and nothing more;
                # every segment gets an ACK with what is left of its window, which goes
                # to zero: it is alive (answers every probe) but never reads.
                if seg.seq == peer_rcv_nxt and peer_rcv_nxt != 101 + PEER_WINDOW:
                    room = 101 + PEER_WINDOW - peer_rcv_nxt
                    peer_rcv_nxt += min(len(seg.payload), room)
                else:
                    probes += 1
                from_peer(seq_add(peer_isn, 1), peer_rcv_nxt, ACK, 101 + PEER_WINDOW - peer_rcv_nxt)
    accepted = sum(writes)
    partial = [n for n in writes if 0 < n < WRITE]
    first_zero = writes.index(0)
    print(
        f"\n(c) {len(writes)} writes of {WRITE} bytes over {SECONDS_C} s: accepted {accepted} "
        f"bytes, {probes} zero-window probes answered, traced peak {measure.peak / KIB:.0f} KiB"
    )
    # The send buffer holds SEND_BUFFER bytes; the first PEER_WINDOW were acknowledged
    # and left it, so exactly that much more was accepted; then only EAGAIN (0).
    assert accepted == SEND_BUFFER + PEER_WINDOW
    assert len(partial) == 1 and writes[first_zero - 1] == partial[0]
    assert all(n == 0 for n in writes[first_zero:])
    assert conn.state is State.ESTABLISHED
    assert conn.send_buffered == SEND_BUFFER
    assert probes >= 5
    # The buffer, one write's bytes in flight through send(), one connection's
    # bookkeeping and the fixed part; the list of write results (8 bytes a slot and a
    # small int object) grows with the test, not the stack, and is counted too.
    bound = SEND_BUFFER + WRITE + CONNECTION_OVERHEAD + FIXED_OVERHEAD + 64 * len(writes)
    assert measure.peak <= bound, f"peak {measure.peak} above bound {bound}"
    assert len(writes) * WRITE > 3 * bound
