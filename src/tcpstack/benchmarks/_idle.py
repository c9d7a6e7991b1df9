"""Many idle connections on one listener Endpoint, built cheaply (no simulator).

The listener is driven directly on the object path: a batch of SYNs from distinct client
ports (and, past 64,512 ports, distinct client addresses), the SYN,ACKs collected, the
ACKs that complete the handshakes, then accept() until the queue is empty and every
connection's Established event drained, as an application would. What stays is what a
server holds for a connection that has said nothing since the handshake.

The clients are not Endpoints: their segments are built here from the server's
SYN,ACKs. The SYNs carry only an MSS option (no timestamps, SACK or window scale), like
the accept benchmark's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tcpstack.core.config import Config
from tcpstack.core.connection import Connection, FourTuple
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram, Flag, Options, Segment

__all__ = [
    "SERVER_IP",
    "SERVER_PORT",
    "IdleServer",
    "client_address",
]

SERVER_IP = "10.0.0.2"
SERVER_PORT = 80
_FIRST_PORT = 1024
_PORTS_PER_ADDRESS = 65536 - _FIRST_PORT
_SEQ_MASK = 0xFFFFFFFF
_BATCH = 1_000
_SYN_OPTIONS = Options(mss=1460)


def client_address(index: int) -> tuple[str, int]:
    """The (address, port) of client `index`: 64,512 ports per address."""
    host, port = divmod(index, _PORTS_PER_ADDRESS)
    return f"10.{1 + host // 250}.{host % 250}.1", _FIRST_PORT + port


def _isn(four_tuple: FourTuple, now: int) -> int:
    return (four_tuple[1] * 2_654_435_761 + four_tuple[3] * 40_503 + now) & _SEQ_MASK


@dataclass
class IdleServer:
    """A listener Endpoint and the connections it accepted (the application's list).

    `answers` maps each connection's client (address, port) to the bare ACK that client
    sends in reply to a keepalive probe (filled only with `keep_answers`).
    """

    endpoint: Endpoint
    connections: list[Connection] = field(default_factory=list)
    answers: dict[tuple[str, int], Datagram] = field(default_factory=dict)

    @classmethod
    def create(cls, capacity: int, config: Config | None = None) -> IdleServer:
        endpoint = Endpoint(
            SERVER_IP,
            isn_generator=_isn,
            config=config,
            syn_backlog=_BATCH,
            max_connections=capacity + _BATCH,
            max_time_wait=capacity + _BATCH,
            track_woken=False,
        )
        endpoint.listen(SERVER_PORT, backlog=_BATCH, now=0)
        return cls(endpoint)

    def establish(
        self,
        count: int,
        *,
        start: int = 0,
        at: Callable[[int], int] = lambda index: 0,
        keep_answers: bool = False,
        batch: int = _BATCH,
    ) -> None:
        """Complete `count` handshakes, clients start..start+count-1, `batch` at a
        time: SYNs, then the ACKs at the virtual time of the batch's last SYN; client
        i's SYN at virtual time at(i) (non-decreasing). batch=1: every handshake
        completes at its own at(i)."""
        endpoint = self.endpoint
        held = len(self.connections)
        for first in range(start, start + count, batch):
            last = min(first + batch, start + count)
            now = at(first)
            for index in range(first, last):
                address, port = client_address(index)
                syn = Segment(
                    port,
                    SERVER_PORT,
                    (index * 7_919) & _SEQ_MASK,
                    0,
                    Flag.SYN,
                    65535,
                    0,
                    _SYN_OPTIONS,
                )
                endpoint.receive_datagram(Datagram(address, SERVER_IP, syn), now=at(index))
                now = at(index)
            for datagram in endpoint.datagrams_to_send(now=now):
                seg = datagram.segment
                if seg.flags != Flag.SYN | Flag.ACK:
                    raise RuntimeError(f"idle connections: expected SYN,ACK, got {seg}")
                ack = Segment(
                    seg.dst_port,
                    seg.src_port,
                    seg.ack,
                    (seg.seq + 1) & _SEQ_MASK,
                    Flag.ACK,
                    65535,
                )
                endpoint.receive_datagram(Datagram(datagram.dst, SERVER_IP, ack), now=now)
                if keep_answers:
                    self.answers[(datagram.dst, seg.dst_port)] = Datagram(
                        datagram.dst, SERVER_IP, ack
                    )
            while (conn := endpoint.accept(SERVER_PORT)) is not None:
                while conn.next_event() is not None:
                    pass
                self.connections.append(conn)
            endpoint.datagrams_to_send(now=now)
        endpoint.next_timer()  # an event loop's first look: drops stale timer entries
        if len(self.connections) - held != count:
            raise RuntimeError(
                f"idle connections: {len(self.connections) - held} accepted, wanted {count}"
            )

    def close_into_time_wait(self, *, now: int = 0) -> None:
        """Close every connection actively (the server's FIN), answer with the client's
        FIN,ACK, so each ends in TIME_WAIT as the Endpoint's compact entry; then the
        application lets go of the Connection objects."""
        endpoint = self.endpoint
        connections = self.connections
        for first in range(0, len(connections), _BATCH):
            for conn in connections[first : first + _BATCH]:
                conn.close(now=now)
            for datagram in endpoint.datagrams_to_send(now=now):
                seg = datagram.segment
                if not seg.flags & Flag.FIN:
                    raise RuntimeError(f"idle connections: expected FIN, got {seg}")
                fin = Segment(
                    seg.dst_port,
                    seg.src_port,
                    seg.ack,
                    (seg.seq + 1) & _SEQ_MASK,
                    Flag.FIN | Flag.ACK,
                    65535,
                )
                endpoint.receive_datagram(Datagram(datagram.dst, SERVER_IP, fin), now=now)
            endpoint.datagrams_to_send(now=now)
            for conn in connections[first : first + _BATCH]:
                while conn.next_event() is not None:
                    pass
        count = len(connections)
        held = len(endpoint.time_wait) - count  # entries from earlier chunks
        connections.clear()
        self.answers.clear()
        endpoint.next_timer()
        if len(endpoint.time_wait) - held != count or endpoint.connection_count():
            raise RuntimeError(
                f"idle connections: {len(endpoint.time_wait) - held} more in TIME_WAIT, "
                f"wanted {count}"
            )
