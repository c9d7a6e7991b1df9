"""A SYN flood at a listener while 100 legitimate clients connect.

Spoofed SYNs from random addresses and ports arrive every millisecond; their SYN,ACKs
go nowhere, so each fills a SYN_RECEIVED slot until it times out. Once the listener's
SYN backlog is full, SYN cookies answer (RFC 4987 3.6) and keep nothing. All 100
clients must complete their handshakes and be accepted; SYN_RECEIVED entries stay
within the backlog.
"""

from __future__ import annotations

import random
import tracemalloc

from tcpstack.core.config import Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.isn import KeyedIsnGenerator
from tcpstack.core.segment import Datagram, Flag, Options, Segment
from tcpstack.core.state import State
from tests.security.support import MS, Network

SERVER = "10.0.0.2"
CLIENT = "10.0.0.1"
SYN_BACKLOG = 64
FLOOD_PER_SECOND = 100_000  # the rate: 100 spoofed SYNs every millisecond
CLIENTS = 100
SECONDS = 1


def test_syn_flood_with_legitimate_clients() -> None:
    rng = random.Random(7)
    config = Config()
    server = Endpoint(
        SERVER,
        isn_generator=KeyedIsnGenerator(b"s" * 32),
        config=config,
        syn_backlog=SYN_BACKLOG,
        syn_cookie_secret=b"k" * 32,
    )
    client = Endpoint(CLIENT, isn_generator=KeyedIsnGenerator(b"c" * 32), config=config)
    listener = server.listen(80, backlog=CLIENTS)
    net = Network(client, server)
    clients: list[Connection] = []
    accepted: list[Connection] = []
    peak_embryonic = 0
    peak_bytes = 0
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    per_step = FLOOD_PER_SECOND // 1000
    steps = SECONDS * 1000
    for step in range(1, steps + 1):
        now = step * MS
        for _ in range(per_step):
            source = f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            seg = Segment(
                rng.randrange(1024, 65536),
                80,
                rng.getrandbits(32),
                0,
                Flag.SYN,
                65535,
                0,
                Options(mss=1460),
            )
            server.receive_datagram(Datagram(source, SERVER, seg), now=now)
        if step % (steps // CLIENTS) == 0 and len(clients) < CLIENTS:
            clients.append(client.connect(SERVER, 80, now=now))
        net.tick(now)
        while (conn := server.accept(80)) is not None:
            accepted.append(conn)
        peak_embryonic = max(peak_embryonic, len(listener.embryonic))
        current, _ = tracemalloc.get_traced_memory()
        peak_bytes = max(peak_bytes, current - base)
    tracemalloc.stop()
    net.tick(steps * MS)
    assert len(clients) == CLIENTS
    assert all(c.state is State.ESTABLISHED for c in clients)
    assert len(accepted) == CLIENTS
    assert {c.remote_port for c in accepted} == {c.local_port for c in clients}
    assert peak_embryonic <= SYN_BACKLOG
    assert len(server.connections) <= SYN_BACKLOG + CLIENTS
    assert len(listener.accept_queue) <= listener.backlog
    flood = per_step * steps
    print(
        f"flood SYNs {flood}, cookies sent {server.stats['syn_cookie.sent']}, "
        f"cookie handshakes {server.stats['syn_cookie.accepted']}, peak SYN_RECEIVED "
        f"{peak_embryonic}, peak traced bytes {peak_bytes}, SYN,ACKs lost {net.lost}"
    )
    assert server.stats["syn_cookie.accepted"] >= 1
