"""The event loop: timers, steps, run_until / run_for / run_until_idle, loop guards."""

from __future__ import annotations

import pytest

from tcpstack.core.segment import Datagram
from tcpstack.sim import LinkParams, NetRecord, Network, SimulationStuck, What
from tcpstack.sim.testing import A, B, Received, ScriptedNode, datagram, scripted_pair


def test_timer_fires_exactly_at_its_deadline() -> None:
    net, a, _ = scripted_pair()
    a.timer = 12_345
    assert net.step()
    assert a.timer_calls == [12_345]
    assert net.now == 12_345
    assert a.early_calls == []
    assert not net.step()  # nothing left


def test_moved_timers_leave_stale_entries_that_are_skipped() -> None:
    net, a, _ = scripted_pair()
    a.timer = 5_000
    net.flush()
    a.timer = 9_000  # later: the 5000 entry is stale
    net.flush()
    a.timer = 3_000  # earlier: the 9000 entry is stale too
    net.run_until_idle(limit=100_000)
    assert a.timer_calls == [3_000]
    assert a.early_calls == []
    assert net.events_processed == 1
    assert net.now == 3_000


def test_cancelled_timer_never_fires() -> None:
    net, a, _ = scripted_pair()
    a.timer = 5_000
    net.flush()
    a.timer = None
    net.run_for(10_000)
    assert a.timer_calls == []
    assert a.early_calls == []
    assert net.events_processed == 0


def test_many_rescheduled_timers_fire_once() -> None:
    net, a, _ = scripted_pair()
    for deadline in range(1_000_000, 1_000, -100):
        a.timer = deadline
        net.flush()
    net.run_until_idle(limit=2_000_000)
    assert a.timer_calls == [1_100]


def test_a_deadline_in_the_past_fires_now() -> None:
    net, a, _ = scripted_pair()
    net.run_for(10_000)
    a.timer = 4_000  # the node is late; the clock does not go back
    net.step()
    assert a.timer_calls == [10_000]
    assert net.now == 10_000


def test_periodic_timer_set_from_its_own_handler() -> None:
    net, a, _ = scripted_pair()

    def again(node: ScriptedNode, now: int) -> None:
        node.timer = now + 250

    a.on_timer = again
    a.timer = 1_000
    net.run_for(2_000)
    assert a.timer_calls == [1_000, 1_250, 1_500, 1_750, 2_000]
    assert net.now == 2_000


def test_timers_and_deliveries_at_the_same_instant_keep_scheduling_order() -> None:
    net, a, b = scripted_pair()
    order: list[str] = []
    b.on_receive = lambda node, r: order.append("delivery")
    b.on_timer = lambda node, now: order.append("timer")
    a.send(datagram(A, B))  # scheduled first (A is flushed first), arrives at 1000
    b.timer = 1_000
    net.run_until_idle(limit=10_000)
    assert order == ["delivery", "timer"]


def test_run_until_returns_false_at_the_limit() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=1_000))
    a.send(datagram(A, B))
    assert not net.run_until(lambda: bool(b.received), limit=999)
    assert net.now == 999
    assert b.received == []
    assert net.pending_deliveries == 1
    # Events at exactly the limit still run.
    assert net.run_until(lambda: bool(b.received), limit=1_000)
    assert net.now == 1_000


def test_run_until_stops_right_after_the_event_that_satisfies_it() -> None:
    net, a, b = scripted_pair()
    for i in range(5):
        a.send(datagram(A, B, seq=i))
        net.run_for(100)
    assert net.run_until(lambda: len(b.received) == 2, limit=1_000_000)
    assert net.now == 1_100
    assert net.pending_deliveries == 3


def test_run_until_checks_the_predicate_before_any_event() -> None:
    net, a, _ = scripted_pair()
    a.timer = 10
    assert net.run_until(lambda: True, limit=100)
    assert a.timer_calls == []
    assert net.now == 0


def test_run_until_rejects_bad_limits() -> None:
    net, _, _ = scripted_pair()
    net.run_for(100)
    with pytest.raises(ValueError, match="in the past"):
        net.run_until(lambda: False, limit=50)
    with pytest.raises(TypeError):
        net.run_until(lambda: False, limit=1e6)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        net.run_for(-1)


def test_run_for_advances_the_clock_even_when_idle() -> None:
    net, _, _ = scripted_pair()
    net.run_for(123_456)
    assert net.now == 123_456


def test_run_until_idle_leaves_far_timers_alone() -> None:
    net, a, b = scripted_pair()
    a.send(datagram(A, B))
    a.timer = 7_200_000_000  # a keepalive two hours away
    assert net.run_until_idle(limit=1_000_000)
    assert net.now == 1_000
    assert a.timer_calls == []
    assert len(b.received) == 1


def test_run_until_idle_runs_timers_due_before_the_limit() -> None:
    net, a, _ = scripted_pair()
    a.timer = 500_000
    assert net.run_until_idle(limit=1_000_000)
    assert a.timer_calls == [500_000]
    assert net.now == 500_000


def test_run_until_idle_is_false_while_datagrams_are_still_travelling() -> None:
    net, a, _ = scripted_pair(params=LinkParams(delay=2_000_000))
    a.send(datagram(A, B))
    assert not net.run_until_idle(limit=1_000_000)
    assert net.now == 1_000_000
    assert net.pending_deliveries == 1


def test_step_runs_one_event_at_a_time() -> None:
    net, a, b = scripted_pair()
    assert not net.step()
    a.send(datagram(A, B, seq=1))
    a.send(datagram(A, B, seq=2))
    assert net.step()
    assert len(b.received) == 1
    assert net.step()
    assert len(b.received) == 2
    assert not net.step()
    assert net.now == 1_000


def test_datagrams_queued_between_steps_leave_at_that_time() -> None:
    """User code calling into a node between runs is collected before time moves."""
    net, a, b = scripted_pair()
    net.run_for(2_000)
    a.send(datagram(A, B, seq=1))
    net.run_for(3_000)
    assert [r.time for r in b.received] == [3_000]


def test_answers_leave_at_the_arrival_time() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=1_500))

    def echo(node: ScriptedNode, received: Received) -> None:
        assert received.datagram is not None
        segment = received.datagram.segment
        node.send(datagram(B, A, segment.payload, seq=segment.seq))

    b.on_receive = echo
    a.send(datagram(A, B, b"ping", seq=7))
    net.run_until_idle(limit=100_000)
    assert [(r.time, r.datagram.segment.payload) for r in a.received if r.datagram] == [
        (3_000, b"ping")
    ]


def test_unroutable_datagrams_are_reported_and_dropped() -> None:
    net, a, _ = scripted_pair()
    c = ScriptedNode("10.0.0.3")
    net.add_node(c)  # attached, but with no link to A
    log: list[NetRecord] = []
    net.add_observer(log.append)
    a.send(datagram(A, "10.0.0.3"))
    a.send(datagram(A, "10.9.9.9"))  # no such node
    net.link(A, "10.9.9.9")  # a link to nowhere
    a.send(datagram(A, "10.9.9.9"))
    assert net.run_until_idle(limit=100_000)
    assert c.received == []
    assert [(r.what, r.packet) for r in log] == [
        (What.SENT, 0),
        (What.NO_ROUTE, 0),
        (What.SENT, 1),
        (What.NO_ROUTE, 1),
        (What.SENT, 2),
        (What.NO_ROUTE, 2),
    ]


def test_inject_plays_a_peer_that_is_not_a_node() -> None:
    net = Network(wire=False)
    b = ScriptedNode(B)
    net.add_node(b)
    net.link_direction("192.0.2.1", B, LinkParams(delay=10))
    net.inject(datagram("192.0.2.1", B, b"hi"))
    net.run_until_idle(limit=1_000)
    assert [(r.time, r.src) for r in b.received] == [(10, "192.0.2.1")]


def test_observer_sees_sent_then_delivered_with_times() -> None:
    net, a, _ = scripted_pair(params=LinkParams(delay=250))
    log: list[NetRecord] = []
    net.add_observer(log.append)
    d = datagram(A, B, b"x")
    a.send(d)
    net.run_until_idle(limit=1_000)
    assert [(r.time, r.what, r.src, r.dst, r.packet) for r in log] == [
        (0, What.SENT, A, B, 0),
        (250, What.DELIVERED, A, B, 0),
    ]
    assert log[1].datagram is d  # object mode delivers the very object sent
    assert log[1].segment is d.segment
    net.remove_observer(log.append)
    a.send(datagram(A, B))
    net.run_until_idle(limit=10_000)
    assert len(log) == 2


def test_sticky_timer_at_the_current_time_raises_simulation_stuck() -> None:
    net = Network(wire=False, max_events_per_instant=1_000)
    node = ScriptedNode(A)
    node.sticky_timer = True  # keeps reporting a deadline it has already handled
    node.timer = 5_000
    net.add_node(node)
    with pytest.raises(SimulationStuck, match="t=5000") as excinfo:
        net.run_until(lambda: False, limit=1_000_000)
    assert excinfo.value.time == 5_000
    assert excinfo.value.events == 1_000
    assert "timer of 10.0.0.1" in excinfo.value.last_event
    assert len(node.timer_calls) == 1_000


def test_zero_delay_ping_pong_raises_simulation_stuck() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=0))
    net = Network(wire=False, max_events_per_instant=500)
    for node in (a, b):
        net.add_node(node)
    net.link(A, B, delay=0)

    def bounce(node: ScriptedNode, received: Received) -> None:
        assert received.datagram is not None
        node.send(datagram(node.address, received.src))

    a.on_receive = bounce
    b.on_receive = bounce
    a.send(datagram(A, B))
    with pytest.raises(SimulationStuck, match="delivery"):
        net.run_until_idle(limit=1_000)


def test_many_events_at_one_instant_are_fine_below_the_guard() -> None:
    net = Network(wire=False, max_events_per_instant=1_000)
    a, b = ScriptedNode(A), ScriptedNode(B)
    net.add_node(a)
    net.add_node(b)
    net.link(A, B)
    for _ in range(999):
        a.send(datagram(A, B))
    assert net.run_until_idle(limit=10_000)
    assert len(b.received) == 999


def test_node_addresses_must_be_unique() -> None:
    net, _, _ = scripted_pair()
    with pytest.raises(ValueError, match="already attached"):
        net.add_node(ScriptedNode(A))
    assert net.node(A) is net.nodes[0]


def test_a_float_deadline_is_rejected() -> None:
    net, a, _ = scripted_pair()
    a.timer = 1.5  # type: ignore[assignment]
    with pytest.raises(TypeError, match="next_timer"):
        net.step()


def test_wire_mode_hands_bytes_to_receive_bytes() -> None:
    from tcpstack.core.codec import decode_segment

    net, a, b = scripted_pair(wire=True)
    assert net.wire
    d = datagram(A, B, b"payload", seq=4_294_967_000)
    a.send(d)
    net.run_until_idle(limit=10_000)
    (received,) = b.received
    assert received.datagram is None and received.data is not None
    assert (received.src, received.dst) == (A, B)
    assert decode_segment(received.data, A, B) == d.segment


def test_an_injected_encoder_is_used_in_wire_mode() -> None:
    calls: list[tuple[int, str, str]] = []

    def encoder(segment: object, src: str, dst: str) -> bytes:
        calls.append((len(calls), src, dst))
        return b"\x00" * 20

    net = Network(wire=True, encoder=encoder)
    a, b = ScriptedNode(A), ScriptedNode(B)
    net.add_node(a)
    net.add_node(b)
    net.link(A, B)
    a.send(datagram(A, B))
    net.run_until_idle(limit=10_000)
    assert calls == [(0, A, B)]
    assert [r.data for r in b.received] == [bytes(20)]


def test_object_mode_never_touches_the_codec() -> None:
    def encoder(segment: object, src: str, dst: str) -> bytes:
        raise AssertionError("object mode encoded a segment")

    net = Network(wire=False, encoder=encoder)
    assert not net.wire
    a, b = ScriptedNode(A), ScriptedNode(B)
    net.add_node(a)
    net.add_node(b)
    net.link(A, B, corrupt=0.5)
    for _ in range(10):
        a.send(datagram(A, B))
    net.run_until_idle(limit=10_000)
    assert all(isinstance(r.datagram, Datagram) for r in b.received)
