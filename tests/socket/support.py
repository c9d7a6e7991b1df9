"""Two simulated hosts for socket tests: A (client) and B (server), 10 ms apart."""

from __future__ import annotations

from dataclasses import dataclass, field

from tcpstack import socket as ts
from tcpstack.core.config import Config
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram, Flag, Segment
from tcpstack.scenarios.story import simulation_isn
from tcpstack.sim import NetRecord, Network, Verdict, What

A = "10.0.0.1"
B = "10.0.0.2"
PORT = 80
MS = 1_000
SECOND = 1_000_000
DELAY = 10 * MS  # one way: the round trip is 20 ms


@dataclass
class Net:
    network: Network
    driver: ts.SimDriver
    a: Endpoint
    b: Endpoint
    sent: list[NetRecord] = field(default_factory=list)

    @property
    def now(self) -> int:
        return self.network.now

    def client(self) -> ts.Socket:
        return ts.socket(driver=self.driver, address=A)

    def server(self, port: int = PORT, *, listen: bool = True) -> ts.Socket:
        sock = ts.socket(driver=self.driver, address=B)
        if listen:
            sock.bind(("", port))
            sock.listen()
        return sock

    def pair(self, port: int = PORT) -> tuple[ts.Socket, ts.Socket, ts.Socket]:
        """(client, accepted server-side socket, listening socket), established."""
        listener = self.server(port)
        client = self.client()
        client.connect((B, port))
        conn, peer = listener.accept()
        assert peer == client.getsockname()
        return client, conn, listener

    def segments_from(self, src: str, since: int = 0) -> list[tuple[int, Segment]]:
        """(time, segment) of every datagram `src` sent at or after `since`."""
        return [(r.time, r.segment) for r in self.sent if r.src == src and r.time >= since]

    def data_from(self, src: str, since: int = 0) -> list[tuple[int, Segment]]:
        return [(t, s) for t, s in self.segments_from(src, since) if s.payload]

    def blackhole(self) -> None:
        """From now on every datagram is dropped: the peer looks dead."""
        self.network.add_filter(_drop_all)


def _drop_all(datagram: Datagram) -> Verdict:
    return Verdict.DROP


def make_net(
    *, config_a: Config | None = None, config_b: Config | None = None, seed: int = 0
) -> Net:
    network = Network(seed=seed, wire=True)
    # Sockets read their own connections; nobody reads woken_connections().
    a = Endpoint(A, isn_generator=simulation_isn, config=config_a, track_woken=False)
    b = Endpoint(B, isn_generator=simulation_isn, config=config_b, track_woken=False)
    network.add_node(a)
    network.add_node(b)
    network.link(A, B, delay=DELAY)
    net = Net(network, ts.SimDriver(network), a, b)

    def observe(record: NetRecord) -> None:
        if record.what == What.SENT:
            net.sent.append(record)

    network.add_observer(observe)
    return net


def is_bare_ack(segment: Segment) -> bool:
    return segment.flags == Flag.ACK and not segment.payload
