"""A scripted `Node` for tests of the simulator and for tests that play a peer by hand.

`ScriptedNode` sends what it is told, records what it receives and has one timer the
test sets. Hooks (`on_receive`, `on_timer`) let it answer, e.g. echo every segment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tcpstack.core.segment import Datagram, Segment
from tcpstack.sim.link import LinkParams
from tcpstack.sim.network import Network

__all__ = ["Received", "ScriptedNode", "datagram", "scripted_pair"]

A = "10.0.0.1"
B = "10.0.0.2"


def datagram(
    src: str,
    dst: str,
    payload: bytes = b"",
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = 0,
    window: int = 65535,
    src_port: int = 1000,
    dst_port: int = 2000,
) -> Datagram:
    """A datagram carrying a simple segment: shorthand for tests."""
    segment = Segment(
        src_port=src_port,
        dst_port=dst_port,
        seq=seq,
        ack=ack,
        flags=flags,
        window=window,
        payload=payload,
    )
    return Datagram(src, dst, segment)


@dataclass(frozen=True, slots=True)
class Received:
    """One arrival: `datagram` in object mode, `data` (raw bytes) in wire mode."""

    time: int
    src: str
    dst: str
    datagram: Datagram | None = None
    data: bytes | None = None


class ScriptedNode:
    """A `Node` that does what the test says.

    - `send(d)` queues a datagram; the network collects it at its next flush.
    - `timer` is the absolute deadline `next_timer()` reports (None for none). When it
      fires, `handle_timer` records the time in `timer_calls`, clears `timer` (unless
      `sticky_timer` is set: then it keeps reporting the same deadline, a broken node
      that the simulator's loop guard must catch) and calls `on_timer`.
    - every arrival is appended to `received` and passed to `on_receive`.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.outbox: list[Datagram] = []
        self.received: list[Received] = []
        self.timer: int | None = None
        self.sticky_timer = False
        self.timer_calls: list[int] = []  # `now` of every handle_timer call that fired
        self.early_calls: list[int] = []  # `now` of calls before the deadline (no-ops)
        self.on_receive: Callable[[ScriptedNode, Received], None] | None = None
        self.on_timer: Callable[[ScriptedNode, int], None] | None = None

    def send(self, datagram: Datagram) -> None:
        self.outbox.append(datagram)

    def datagrams_to_send(self, *, now: int) -> list[Datagram]:
        out, self.outbox = self.outbox, []
        return out

    def receive_datagram(self, datagram: Datagram, *, now: int) -> None:
        self._arrived(Received(now, datagram.src, datagram.dst, datagram=datagram))

    def receive_bytes(self, src: str, dst: str, data: bytes, *, now: int) -> None:
        self._arrived(Received(now, src, dst, data=data))

    def _arrived(self, received: Received) -> None:
        self.received.append(received)
        if self.on_receive is not None:
            self.on_receive(self, received)

    def next_timer(self) -> int | None:
        return self.timer

    def handle_timer(self, *, now: int) -> None:
        if self.timer is None or now < self.timer:
            self.early_calls.append(now)
            return
        self.timer_calls.append(now)
        if not self.sticky_timer:
            self.timer = None
        if self.on_timer is not None:
            self.on_timer(self, now)


def scripted_pair(
    seed: int = 0,
    *,
    wire: bool = False,
    params: LinkParams | None = None,
    a: str = A,
    b: str = B,
) -> tuple[Network, ScriptedNode, ScriptedNode]:
    """A network of two scripted nodes joined by one link (both directions `params`)."""
    net = Network(seed, wire=wire)
    node_a, node_b = ScriptedNode(a), ScriptedNode(b)
    net.add_node(node_a)
    net.add_node(node_b)
    net.link(a, b, params)
    return net, node_a, node_b
