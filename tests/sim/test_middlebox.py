"""The NAT middlebox: mappings, idle expiry at exactly N, and both inbound behaviours."""

from __future__ import annotations

import pytest

from tcpstack.core.codec import encode_segment
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.events import Closed, CloseReason
from tcpstack.core.segment import Datagram, Flag
from tcpstack.core.state import State
from tcpstack.sim import Network, Node
from tcpstack.sim.middlebox import Nat, NatEvent, NatEventKind, Outside
from tcpstack.sim.testing import ScriptedNode, datagram

PRIVATE = "192.168.1.2"
PUBLIC = "203.0.113.7"
REMOTE = "198.51.100.9"
OTHER = "198.51.100.10"
SECOND = 1_000_000
N = 300 * SECOND


def nat_with_inside(**options: object) -> tuple[Nat, ScriptedNode]:
    inside = ScriptedNode(PRIVATE)
    nat = Nat(inside, public_address=PUBLIC, idle_timeout=N, **options)  # type: ignore[arg-type]
    return nat, inside


def out_of(nat: Nat, inside: ScriptedNode, d: Datagram, now: int) -> Datagram:
    """Let the inside node send `d` and return what the NAT puts on the wire."""
    inside.send(d)
    (sent,) = nat.datagrams_to_send(now=now)
    return sent


def reply(public_port: int, *, src: str = REMOTE, src_port: int = 2000, seq: int = 7) -> Datagram:
    return datagram(
        src, PUBLIC, seq=seq, ack=11, flags=Flag.ACK, src_port=src_port, dst_port=public_port
    )


def request(*, src_port: int = 1000, dst: str = REMOTE, dst_port: int = 2000) -> Datagram:
    return datagram(
        PRIVATE,
        dst,
        b"hi",
        seq=10,
        ack=6,
        flags=Flag.ACK | Flag.PSH,
        src_port=src_port,
        dst_port=dst_port,
    )


def arrivals(node: ScriptedNode) -> list[Datagram]:
    return [r.datagram for r in node.received if r.datagram is not None]


def test_nat_is_a_node() -> None:
    nat, _ = nat_with_inside()
    node: Node = nat  # the structural check, done by mypy
    assert node.address == PUBLIC


def test_outbound_rewrites_source_and_preserves_the_port_the_first_time() -> None:
    nat, inside = nat_with_inside()
    sent = out_of(nat, inside, request(), now=5)
    assert (sent.src, sent.dst) == (PUBLIC, REMOTE)
    assert (sent.segment.src_port, sent.segment.dst_port) == (1000, 2000)
    assert sent.segment.payload == b"hi" and sent.segment.seq == 10
    (mapping,) = nat.mappings
    assert (mapping.inside_address, mapping.inside_port, mapping.public_port) == (
        PRIVATE,
        1000,
        1000,
    )
    assert (mapping.created_at, mapping.last_used) == (5, 5)
    assert [e.kind for e in nat.log] == [NatEventKind.MAPPED]
    assert nat.log[0].detail == f"{PRIVATE}:1000 -> {PUBLIC}:1000 for {REMOTE}:2000"


def test_inbound_is_rewritten_back_to_the_inside_host() -> None:
    nat, inside = nat_with_inside()
    out_of(nat, inside, request(), now=0)
    nat.receive_datagram(reply(1000), now=20)
    (got,) = arrivals(inside)
    assert (got.src, got.dst) == (REMOTE, PRIVATE)
    assert (got.segment.src_port, got.segment.dst_port) == (2000, 1000)
    assert got.segment.seq == 7
    assert nat.mapping_for(1000, REMOTE, 2000) is not None
    assert nat.mappings[0].last_used == 20


def test_each_flow_gets_its_own_mapping_and_ports_come_from_the_range() -> None:
    nat, inside = nat_with_inside(port_range=(40000, 40001))
    first = out_of(nat, inside, request(dst_port=2000), now=0)
    second = out_of(nat, inside, request(dst_port=2001), now=0)  # same inside port
    third = out_of(nat, inside, request(src_port=1001), now=0)
    assert [d.segment.src_port for d in (first, second, third)] == [1000, 40000, 1001]
    assert len(nat.mappings) == 3
    assert out_of(nat, inside, request(dst_port=2002), now=0).segment.src_port == 40001
    with pytest.raises(RuntimeError, match="in use"):
        out_of(nat, inside, request(dst_port=2003), now=0)


def test_preserve_ports_off_takes_every_port_from_the_range() -> None:
    nat, inside = nat_with_inside(preserve_ports=False)
    assert out_of(nat, inside, request(), now=0).segment.src_port == 20000


def test_inbound_from_another_remote_matches_no_mapping() -> None:
    nat, inside = nat_with_inside()
    out_of(nat, inside, request(), now=0)
    nat.receive_datagram(reply(1000, src=OTHER), now=1)
    nat.receive_datagram(reply(1000, src_port=2001), now=1)
    assert arrivals(inside) == []
    assert nat.stats[NatEventKind.DROPPED] == 2


def test_the_mapping_expires_at_exactly_idle_timeout_after_its_last_use() -> None:
    nat, inside = nat_with_inside()
    out_of(nat, inside, request(), now=1_000)
    assert nat.next_timer() == 1_000 + N
    # One microsecond before: still there, and the reply refreshes it.
    nat.receive_datagram(reply(1000), now=1_000 + N - 1)
    assert len(arrivals(inside)) == 1
    last = 1_000 + N - 1
    assert nat.next_timer() == last + N
    nat.handle_timer(now=last + N - 1)  # early: nothing expires
    assert len(nat.mappings) == 1
    nat.handle_timer(now=last + N)
    assert not nat.mappings
    assert nat.next_timer() is None
    expired = nat.log[-1]
    assert (expired.time, expired.kind) == (last + N, NatEventKind.EXPIRED)
    # A reply at exactly last + N finds nothing.
    nat.receive_datagram(reply(1000), now=last + N)
    assert len(arrivals(inside)) == 1
    assert nat.stats[NatEventKind.DROPPED] == 1


def test_expiry_is_exact_even_without_the_timer() -> None:
    """A datagram at exactly last_use + N finds the mapping gone, whichever event runs first."""
    nat, inside = nat_with_inside()
    out_of(nat, inside, request(), now=0)
    nat.receive_datagram(reply(1000), now=N)
    assert arrivals(inside) == []
    assert [(e.time, e.kind) for e in nat.log[1:]] == [
        (N, NatEventKind.EXPIRED),
        (N, NatEventKind.DROPPED),
    ]


def test_outbound_traffic_refreshes_the_mapping_too() -> None:
    nat, inside = nat_with_inside()
    out_of(nat, inside, request(), now=0)
    out_of(nat, inside, request(), now=N - 1)
    nat.handle_timer(now=N)
    assert len(nat.mappings) == 1
    assert nat.next_timer() == 2 * N - 1


def test_a_forgotten_flow_from_the_inside_gets_a_new_public_port() -> None:
    nat, inside = nat_with_inside()
    out_of(nat, inside, request(), now=0)
    nat.handle_timer(now=N)
    again = out_of(nat, inside, request(), now=N + 5)
    assert again.segment.src_port == 20000  # never the preserved 1000 again
    assert [e.kind for e in nat.log] == [
        NatEventKind.MAPPED,
        NatEventKind.EXPIRED,
        NatEventKind.MAPPED,
    ]
    # Replies to the old public port are strangers now.
    nat.receive_datagram(reply(1000), now=N + 6)
    nat.receive_datagram(reply(20000), now=N + 6)
    assert [d.segment.dst_port for d in arrivals(inside)] == [1000]


def test_drop_mode_is_silent() -> None:
    nat, _ = nat_with_inside(outside=Outside.DROP)
    nat.receive_datagram(reply(1234), now=3)
    assert nat.datagrams_to_send(now=3) == []
    (event,) = nat.log
    assert event.kind is NatEventKind.DROPPED
    assert event.detail == f"{REMOTE}:2000 -> {PUBLIC}:1234: no mapping, dropped"


def test_reject_mode_answers_with_a_reset_the_sender_accepts() -> None:
    nat, _ = nat_with_inside(outside=Outside.REJECT)
    nat.receive_datagram(reply(1234), now=3)  # an ACK: RST with SEQ = its ACK
    nat.receive_datagram(
        datagram(REMOTE, PUBLIC, b"abc", seq=50, flags=Flag.PSH, src_port=2000, dst_port=1234),
        now=3,
    )  # no ACK: RST+ACK acknowledging it
    nat.receive_datagram(
        datagram(REMOTE, PUBLIC, seq=9, flags=Flag.RST, src_port=2000, dst_port=1234), now=3
    )  # a RST is never answered
    rst, rst_ack = nat.datagrams_to_send(now=3)
    assert (rst.src, rst.dst) == (PUBLIC, REMOTE)
    assert (rst.segment.src_port, rst.segment.dst_port) == (1234, 2000)
    assert (rst.segment.flags, rst.segment.seq) == (Flag.RST, 11)
    assert (rst_ack.segment.flags, rst_ack.segment.ack) == (Flag.RST | Flag.ACK, 53)
    assert nat.stats[NatEventKind.REJECTED] == 2
    assert nat.stats[NatEventKind.DROPPED] == 1


def test_inside_timers_pass_through() -> None:
    nat, inside = nat_with_inside()
    inside.timer = 50
    assert nat.next_timer() == 50
    out_of(nat, inside, request(), now=0)
    assert nat.next_timer() == 50  # sooner than the expiry at N
    nat.handle_timer(now=50)
    assert inside.timer_calls == [50]
    assert nat.next_timer() == N
    nat.handle_timer(now=N)
    assert inside.early_calls == []  # the inside node is called only when due


def test_on_event_sees_everything_as_it_happens() -> None:
    seen: list[NatEvent] = []
    nat, inside = nat_with_inside(on_event=seen.append)
    out_of(nat, inside, request(), now=0)
    nat.handle_timer(now=N)
    assert seen == nat.log
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"idle_timeout": 0}, ValueError),
        ({"idle_timeout": 1.5}, TypeError),
        ({"idle_timeout": True}, TypeError),
        ({"idle_timeout": 1, "port_range": (0, 10)}, ValueError),
        ({"idle_timeout": 1, "port_range": (10, 9)}, ValueError),
        ({"idle_timeout": 1, "port_range": (10, 65536)}, ValueError),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Nat(ScriptedNode(PRIVATE), public_address=PUBLIC, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------- on a network


def test_wire_mode_rewrites_and_recomputes_checksums() -> None:
    net = Network(1, wire=True)
    inside, remote = ScriptedNode(PRIVATE), ScriptedNode(REMOTE)
    nat = Nat(inside, public_address=PUBLIC, idle_timeout=N)
    net.add_node(nat)
    net.add_node(remote)
    net.link(PUBLIC, REMOTE, delay=10_000)
    inside.send(request())
    net.run_until_idle(limit=SECOND)
    (at_remote,) = remote.received
    assert at_remote.data == encode_segment(request().segment, PUBLIC, REMOTE)
    remote.send(reply(1000))
    net.run_until_idle(limit=SECOND)
    (at_inside,) = inside.received
    expected = reply(1000).segment
    expected.dst_port = 1000
    assert at_inside.data == encode_segment(expected, REMOTE, PRIVATE)
    assert (at_inside.time, at_inside.src, at_inside.dst) == (20_000, REMOTE, PRIVATE)


def test_wire_mode_drops_bytes_that_do_not_decode() -> None:
    nat, inside = nat_with_inside()
    good = encode_segment(reply(1000).segment, REMOTE, PUBLIC)
    nat.receive_bytes(REMOTE, PUBLIC, good[:-1] + bytes([good[-1] ^ 1]), now=0)
    nat.receive_bytes(REMOTE, PUBLIC, good[:10], now=0)
    assert inside.received == []
    assert nat.stats[NatEventKind.MALFORMED] == 2


class Pair:
    """A client Endpoint behind a NAT and a server Endpoint, 10 ms apart."""

    def __init__(self, outside: Outside, *, wire: bool = True) -> None:
        self.net = Network(7, wire=wire)
        self.client = Endpoint(PRIVATE, isn_generator=lambda four_tuple, now: 1_000)
        self.server = Endpoint(REMOTE, isn_generator=lambda four_tuple, now: 2**32 - 100)
        self.nat = Nat(self.client, public_address=PUBLIC, idle_timeout=N, outside=outside)
        self.net.add_node(self.nat)
        self.net.add_node(self.server)
        self.net.link(PUBLIC, REMOTE, delay=10_000)
        self.server.listen(80)
        self.conn = self.client.connect(REMOTE, 80, now=0, local_port=40000)
        self.net.run_until(lambda: self.server.accept(80) is not None, limit=SECOND)
        (self.peer,) = self.server.connections.values()
        self.net.run_for(100_000)
        assert self.conn.state is State.ESTABLISHED and self.peer.state is State.ESTABLISHED
        assert self.peer.remote_ip == PUBLIC and self.peer.remote_port == 40000

    def idle_past_the_timeout(self) -> None:
        self.net.run_until(lambda: not self.nat.mappings, limit=self.net.now + 2 * N)


def closed_reasons(conn: Connection) -> list[CloseReason]:
    out: list[CloseReason] = []
    while (event := conn.next_event()) is not None:
        if isinstance(event, Closed):
            out.append(event.reason)
    return out


@pytest.mark.parametrize("wire", [False, True])
def test_inside_sender_after_expiry_gets_a_reset_from_the_server(wire: bool) -> None:
    pair = Pair(Outside.DROP, wire=wire)
    last_use = pair.nat.mappings[0].last_used
    pair.idle_past_the_timeout()
    assert pair.net.now == last_use + N
    pair.conn.send(b"are you there?", now=pair.net.now)
    pair.net.run_until(lambda: pair.conn.state is State.CLOSED, limit=pair.net.now + SECOND)
    # 10 ms there, RST 10 ms back: the server saw a stranger on port 20000, an ACK
    # for its listening port 80 that no connection takes (RFC 9293 3.10.7.2).
    assert pair.net.now == last_use + N + 20_000
    assert closed_reasons(pair.conn) == [CloseReason.RESET]
    assert pair.server.stats["listen_ack"] == 1
    assert pair.peer.state is State.ESTABLISHED  # the server's own connection never knew
    assert [m.public_port for m in pair.nat.mappings] == [20000]


def test_outside_sender_after_expiry_meets_silence_in_drop_mode() -> None:
    pair = Pair(Outside.DROP)
    pair.idle_past_the_timeout()
    pair.peer.send(b"news", now=pair.net.now)
    pair.net.run_for(60 * SECOND)
    assert pair.peer.state is State.ESTABLISHED
    assert pair.peer.total_retransmissions >= 5  # retransmitting into the void
    assert pair.conn.receive_buffered == 0
    assert pair.nat.stats[NatEventKind.DROPPED] == 1 + pair.peer.total_retransmissions


def test_outside_sender_after_expiry_is_reset_in_reject_mode() -> None:
    pair = Pair(Outside.REJECT)
    pair.idle_past_the_timeout()
    start = pair.net.now
    pair.peer.send(b"news", now=start)
    pair.net.run_until(lambda: pair.peer.state is State.CLOSED, limit=start + SECOND)
    assert pair.net.now == start + 20_000
    assert closed_reasons(pair.peer) == [CloseReason.RESET]
    assert pair.conn.state is State.ESTABLISHED  # the inside host never knew


def test_traffic_more_often_than_the_timeout_keeps_the_flow() -> None:
    pair = Pair(Outside.DROP)
    pair.conn.configure(
        now=pair.net.now, keepalive=True, keepalive_idle=N - SECOND, keepalive_interval=10 * SECOND
    )
    pair.net.run_for(5 * N)
    assert len(pair.nat.mappings) == 1
    assert pair.nat.stats[NatEventKind.EXPIRED] == 0
    pair.peer.send(b"still here", now=pair.net.now)
    pair.net.run_for(SECOND)
    assert pair.conn.receive(now=pair.net.now) == b"still here"
