"""The application heartbeat: framing, PING/PONG, misses, and a run over real connections."""

from __future__ import annotations

import pytest

from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.heartbeat import (
    DATA,
    PING,
    PONG,
    ByteStream,
    Heartbeat,
    HeartbeatChannel,
    HeartbeatError,
    HeartbeatEvent,
    Message,
    PeerDead,
    Pong,
    encode_frame,
)
from tcpstack.sim import Network

SECOND = 1_000_000
INTERVAL = 10 * SECOND


def ping(seq: int) -> bytes:
    return encode_frame(PING, seq.to_bytes(4, "big"))


def pong(seq: int) -> bytes:
    return encode_frame(PONG, seq.to_bytes(4, "big"))


def events(hb: Heartbeat) -> list[HeartbeatEvent]:
    out: list[HeartbeatEvent] = []
    while (event := hb.next_event()) is not None:
        out.append(event)
    return out


def test_frames_are_type_length_body() -> None:
    assert encode_frame(DATA, b"hi") == b"\x01\x00\x00\x00\x02hi"
    assert ping(7) == b"\x02\x00\x00\x00\x04\x00\x00\x00\x07"
    with pytest.raises(ValueError):
        encode_frame(9, b"")


def test_the_first_ping_goes_out_one_interval_after_creation() -> None:
    hb = Heartbeat(now=5, interval=INTERVAL)
    assert hb.next_deadline() == 5 + INTERVAL
    hb.handle_timer(now=4 + INTERVAL)  # early: nothing
    assert hb.data_to_send() == b""
    hb.handle_timer(now=5 + INTERVAL)
    assert hb.data_to_send() == ping(0)
    assert hb.data_to_send() == b""  # drained
    assert hb.next_deadline() == 5 + 2 * INTERVAL
    assert hb.pings_sent == 1


def test_a_pong_is_proof_of_life_with_its_rtt() -> None:
    hb = Heartbeat(now=0, interval=INTERVAL)
    hb.handle_timer(now=INTERVAL)
    hb.feed(pong(0), now=INTERVAL + 30_000)
    assert events(hb) == [Pong(0, 30_000)]
    assert hb.last_rtt == 30_000
    hb.handle_timer(now=2 * INTERVAL)
    assert hb.missed == 0
    assert hb.data_to_send() == ping(0) + ping(1)


def test_miss_limit_unanswered_pings_declare_the_peer_dead() -> None:
    hb = Heartbeat(now=0, interval=INTERVAL, miss_limit=3)
    hb.handle_timer(now=INTERVAL)  # PING 0, answered
    hb.feed(pong(0), now=INTERVAL + 1)
    events(hb)
    for k in range(2, 5):  # PING 1 at 2I unanswered; misses counted at 3I, 4I
        hb.handle_timer(now=k * INTERVAL)
        assert hb.alive
    assert hb.missed == 2
    hb.handle_timer(now=5 * INTERVAL)
    assert not hb.alive
    # First unanswered PING (2I) + miss_limit intervals.
    assert hb.dead_at == 2 * INTERVAL + 3 * INTERVAL
    assert events(hb) == [PeerDead(3, 5 * INTERVAL)]
    assert hb.next_deadline() is None
    assert hb.data_to_send() == ping(0) + ping(1) + ping(2) + ping(3)
    hb.handle_timer(now=6 * INTERVAL)  # dead: no more PINGs
    assert hb.data_to_send() == b""


def test_a_late_pong_resets_the_count() -> None:
    hb = Heartbeat(now=0, interval=INTERVAL, miss_limit=2)
    hb.handle_timer(now=INTERVAL)  # PING 0
    hb.handle_timer(now=2 * INTERVAL)  # miss 1, PING 1
    hb.feed(pong(0), now=2 * INTERVAL + 5)  # the peer was slow, not dead
    assert events(hb) == [Pong(0, INTERVAL + 5)]
    assert hb.missed == 0
    # Any PONG since the last PING proves the application alive, even one for an older PING.
    hb.handle_timer(now=3 * INTERVAL)
    assert hb.missed == 0 and hb.alive
    hb.feed(pong(0), now=3 * INTERVAL + 1)  # a duplicate PONG proves nothing
    assert events(hb) == []


def test_pings_from_the_peer_are_answered_with_pongs() -> None:
    hb = Heartbeat(now=0, interval=None)
    assert hb.next_deadline() is None
    hb.feed(ping(3) + ping(4), now=1)
    assert hb.data_to_send() == pong(3) + pong(4)
    assert hb.pings_answered == 2
    hb.handle_timer(now=10**12)  # passive: never pings, never declares
    assert hb.data_to_send() == b"" and hb.alive


def test_messages_share_the_stream_and_survive_any_split() -> None:
    sender = Heartbeat(now=0, interval=None)
    sender.send_message(b"hello")
    sender.send_message(b"")
    stream = sender.data_to_send() + ping(1) + encode_frame(DATA, b"x" * 300)
    for size in (1, 2, 5, 7, len(stream)):
        hb = Heartbeat(now=0, interval=None)
        for start in range(0, len(stream), size):
            hb.feed(stream[start : start + size], now=0)
        assert events(hb) == [Message(b"hello"), Message(b""), Message(b"x" * 300)]
        assert hb.data_to_send() == pong(1)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x09\x00\x00\x00\x00", "unknown frame type"),
        (b"\x01\x00\x10\x00\x01", "exceeds"),
        (b"\x02\x00\x00\x00\x03abc", "PING body of 3"),
        (b"\x03\x00\x00\x00\x05abcde", "PONG body of 5"),
    ],
)
def test_garbage_is_a_protocol_error(data: bytes, match: str) -> None:
    hb = Heartbeat(now=0, interval=None, max_frame=4096)
    with pytest.raises(HeartbeatError, match=match):
        hb.feed(encode_frame(DATA, b"ok") + data, now=0)
    assert events(hb) == [Message(b"ok")]  # what came before the bad frame stands


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Heartbeat(now=0, interval=0)
    with pytest.raises(ValueError):
        Heartbeat(now=0, interval=INTERVAL, miss_limit=0)
    with pytest.raises(ValueError):
        Heartbeat(now=0, interval=None, max_frame=3).send_message(b"four")


class Pipe:
    """A ByteStream that takes at most `room` bytes per send, for the channel tests."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.written = bytearray()
        self.incoming = bytearray()

    def send(self, data: bytes, *, now: int) -> int:
        taken = min(len(data), self.room)
        self.written += data[:taken]
        return taken

    def receive(self, max_bytes: int = 1 << 30, *, now: int) -> bytes:
        data = bytes(self.incoming[:max_bytes])
        del self.incoming[:max_bytes]
        return data


def test_the_channel_keeps_what_the_stream_did_not_take() -> None:
    pipe = Pipe(room=3)
    stream: ByteStream = pipe  # the structural check, done by mypy
    channel = HeartbeatChannel(stream, Heartbeat(now=0, interval=INTERVAL))
    pipe.incoming += ping(9)
    channel.pump(now=1)
    assert bytes(pipe.written) == pong(9)[:3]
    assert channel.unsent == len(pong(9)) - 3
    pipe.room = 100
    channel.tick(now=INTERVAL)
    assert bytes(pipe.written) == pong(9) + ping(0)
    assert channel.unsent == 0
    channel.send_message(b"m", now=INTERVAL)
    assert bytes(pipe.written).endswith(encode_frame(DATA, b"m"))
    assert channel.next_deadline() == 2 * INTERVAL


def test_over_tcp_a_hung_application_is_found_while_the_stack_answers() -> None:
    """Two Endpoints on the simulator; the passive side's application stops pumping."""
    net = Network(5, wire=True)
    a = Endpoint("10.0.0.1", isn_generator=lambda four_tuple, now: 1)
    b = Endpoint("10.0.0.2", isn_generator=lambda four_tuple, now: 2)
    net.add_node(a)
    net.add_node(b)
    net.link("10.0.0.1", "10.0.0.2", delay=10_000)
    b.listen(80)
    conn = a.connect("10.0.0.2", 80, now=0)
    accepted: list[Connection] = []

    def accept() -> bool:
        if (child := b.accept(80)) is not None:
            accepted.append(child)
        return bool(accepted)

    assert net.run_until(accept, limit=SECOND)
    peer = accepted[0]
    client = HeartbeatChannel(conn, Heartbeat(now=net.now, interval=INTERVAL, miss_limit=2))
    server = HeartbeatChannel(peer, Heartbeat(now=net.now, interval=None))
    start = net.now
    hung = False

    def pump() -> bool:
        client.pump(now=net.now)
        if not hung:
            server.pump(now=net.now)
        return False

    def run_to(until: int) -> None:
        """Run the network, pumping after every event and ticking at PING times."""
        while net.now < until:
            deadline = client.next_deadline()
            net.run_until(pump, limit=until if deadline is None else min(deadline, until))
            if deadline is not None and net.now == deadline:
                client.tick(now=net.now)

    run_to(start + 3 * INTERVAL + SECOND)
    assert client.heartbeat.pongs_received == 3
    hung = True
    run_to(start + 10 * INTERVAL)
    # PING 3 at start + 4I went unanswered; two misses later the peer is dead.
    assert client.heartbeat.dead_at == start + 4 * INTERVAL + 2 * INTERVAL
    assert client.heartbeat.pings_sent == 5  # at INTERVAL, 2I, 3I (answered), 4I, 5I
    assert peer.receive_buffered == 2 * len(ping(0))  # the stack took them; no-one read
    assert conn.state.value == "ESTABLISHED"  # TCP itself sees nothing wrong
