"""Which nodes a run asks for output after each event (issue 9: no per-event scan).

Inside one run only the node that handled an event can have new output or a new timer,
so only it is asked again; an observer may call into any node, so with one attached
every node is asked after every event (see the module docstring of sim/network.py).
"""

from __future__ import annotations

from tcpstack.core.segment import Datagram
from tcpstack.sim import NetRecord, What
from tcpstack.sim.testing import A, B, Received, ScriptedNode, datagram, scripted_pair


class CountingNode(ScriptedNode):
    """A scripted node that counts how often the network asks it for output."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.asked: list[int] = []

    def datagrams_to_send(self, *, now: int) -> list[Datagram]:
        self.asked.append(now)
        return super().datagrams_to_send(now=now)


def test_only_the_node_that_handled_an_event_is_asked_again() -> None:
    net, node_a, node_b = scripted_pair()
    idle = CountingNode("10.0.0.9")
    net.add_node(idle)

    def answer(node: ScriptedNode, received: Received) -> None:
        node.send(datagram(B, A))

    def answer_twice(node: ScriptedNode, received: Received) -> None:
        if len(node.received) < 3:
            node.send(datagram(A, B))

    node_a.on_receive = answer_twice
    node_b.on_receive = answer
    net.link(A, B, delay=1_000)
    node_a.send(datagram(A, B))
    assert net.run_until(lambda: len(node_a.received) == 3, 1_000_000)
    # Six deliveries, alternating B and A; the idle node was asked once, by the run's
    # first flush, and never after an event.
    assert [r.time for r in node_a.received] == [2_000, 4_000, 6_000]
    assert idle.asked == [0]


def test_with_an_observer_every_node_is_asked_after_every_event() -> None:
    net, node_a, _ = scripted_pair()
    third = CountingNode("10.0.0.9")
    net.add_node(third)
    net.link(A, "10.0.0.9", delay=0)

    # An observer that calls into a node no event reaches: on B's delivery, the third
    # node sends to A. Its datagram is collected right after that event, in this run.
    def poke(record: NetRecord) -> None:
        if record.what is What.DELIVERED and record.dst == B:
            third.send(datagram("10.0.0.9", A))

    net.add_observer(poke)
    net.link(A, B, delay=1_000)
    node_a.send(datagram(A, B))
    assert net.run_until(lambda: bool(node_a.received), 1_000_000)
    assert [(r.time, r.src) for r in node_a.received] == [(1_000, "10.0.0.9")]
    # Asked by the first flush, after B's delivery (when it sent) and after A's.
    assert third.asked == [0, 1_000, 1_000]
