"""The real core Endpoint runs on the simulator (it fits `Node` without inheriting)."""

from __future__ import annotations

import pytest

from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.sim import LinkParams, Network, Node
from tcpstack.sim.testing import A, B

DATA = bytes(range(256)) * 40


def transfer(wire: bool, params: LinkParams) -> tuple[int, int, bytes]:
    """Connect A to B, send DATA, return (finish time, events, bytes B received)."""
    net = Network(3, wire=wire)
    client = Endpoint(A, isn_generator=lambda four_tuple, now: 1_000)
    server = Endpoint(B, isn_generator=lambda four_tuple, now: 2**32 - 100)
    node: Node = client  # the structural check, done by mypy
    net.add_node(node)
    net.add_node(server)
    net.link(A, B, params)
    server.listen(80)
    conn = client.connect(B, 80, now=net.now)
    accepted: list[Connection] = []
    received = bytearray()
    sent = 0

    def all_received() -> bool:
        # Test code calling into the endpoints between steps: the network flushes.
        nonlocal sent
        if not accepted and (child := server.accept(80)) is not None:
            accepted.append(child)
        if sent < len(DATA) and conn.send_space > 0:
            sent += conn.send(DATA[sent:], now=net.now)
        if accepted:
            received.extend(accepted[0].receive(now=net.now))
        return len(received) == len(DATA)

    assert net.run_until(all_received, limit=60_000_000)
    return net.now, net.events_processed, bytes(received)


@pytest.mark.parametrize("wire", [False, True])
def test_bytes_arrive_over_a_perfect_link(wire: bool) -> None:
    _, _, received = transfer(wire, LinkParams(delay=1_000))
    assert received == DATA


def test_both_modes_make_the_same_run() -> None:
    params = LinkParams(delay=2_000, bandwidth=10_000_000, loss=0.05)
    assert transfer(False, params) == transfer(True, params)
