"""Filters: lose or hold exactly the datagrams a test names."""

from __future__ import annotations

import pytest

from tcpstack.core.segment import Datagram, Flag
from tcpstack.sim import (
    LinkParams,
    NetRecord,
    Verdict,
    What,
    drop_nth,
    drop_where,
    hold_where,
)
from tcpstack.sim.testing import A, B, ScriptedNode, datagram, scripted_pair


def seqs(node: ScriptedNode) -> list[int]:
    return [r.datagram.segment.seq for r in node.received if r.datagram is not None]


def fin_from_b(d: Datagram) -> bool:
    return d.src == B and d.segment.has(Flag.FIN)


def test_drop_the_first_fin_from_b_only() -> None:
    net, a, b = scripted_pair()
    rule = drop_where(fin_from_b)
    net.add_filter(rule)
    log: list[NetRecord] = []
    net.add_observer(log.append)
    b.send(datagram(B, A, seq=1, flags=Flag.ACK))
    b.send(datagram(B, A, seq=2, flags=Flag.FIN | Flag.ACK))
    a.send(datagram(A, B, seq=3, flags=Flag.FIN | Flag.ACK))  # a FIN, but not from B
    net.run_for(5_000)
    b.send(datagram(B, A, seq=2, flags=Flag.FIN | Flag.ACK))  # the retransmission passes
    net.run_until_idle(limit=100_000)
    assert seqs(a) == [1, 2]
    assert seqs(b) == [3]
    assert [d.segment.seq for d in rule.hits] == [2]
    assert rule.exhausted
    assert [(r.time, r.packet) for r in log if r.what == What.FILTERED] == [(0, 2)]


def test_drop_nth_drops_only_that_one() -> None:
    net, a, b = scripted_pair()
    rule = drop_nth(lambda d: d.segment.payload == b"data", 2)
    net.add_filter(rule)
    for seq in range(4):
        a.send(datagram(A, B, b"data", seq=seq))
    net.run_until_idle(limit=100_000)
    assert seqs(b) == [0, 2, 3]
    assert rule.seen == 2


def test_drop_every_match() -> None:
    net, a, b = scripted_pair()
    net.add_filter(drop_where(lambda d: d.segment.seq % 2 == 1, count=None))
    for seq in range(6):
        a.send(datagram(A, B, seq=seq))
    net.run_until_idle(limit=100_000)
    assert seqs(b) == [0, 2, 4]


def test_hold_and_release() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=1_000))
    net.add_filter(hold_where(lambda d: d.segment.seq == 1))
    log: list[NetRecord] = []
    net.add_observer(log.append)
    for seq in range(3):
        a.send(datagram(A, B, seq=seq))
    assert net.run_until_idle(limit=100_000)  # held datagrams are not "in flight"
    assert seqs(b) == [0, 2]
    (held,) = net.held
    assert (held.time, held.src, held.datagram.segment.seq) == (0, A, 1)
    net.run_for(4_000)
    net.release(held)
    assert net.held == ()
    net.run_until_idle(limit=100_000)
    assert seqs(b) == [0, 2, 1]
    assert b.received[-1].time == 6_000  # released at 5000, plus the link's delay
    assert [r.what for r in log if r.packet == held.packet] == [
        What.SENT,
        What.HELD,
        What.RELEASED,
        What.DELIVERED,
    ]
    with pytest.raises(ValueError, match="not being held"):
        net.release(held)


def test_release_all_keeps_order_and_encodes_in_wire_mode() -> None:
    net, a, b = scripted_pair(wire=True)
    net.add_filter(hold_where(lambda d: True, count=3))
    for seq in range(3):
        a.send(datagram(A, B, seq=seq))
    net.run_until_idle(limit=100_000)
    assert len(net.held) == 3
    net.release_all()
    net.run_until_idle(limit=100_000)
    assert [r.data is not None for r in b.received] == [True, True, True]
    assert [int.from_bytes(r.data[4:8], "big") for r in b.received if r.data] == [0, 1, 2]


def test_filters_run_in_order_and_first_non_pass_wins() -> None:
    net, a, b = scripted_pair()
    calls: list[str] = []

    def first(d: Datagram) -> Verdict:
        calls.append("first")
        return Verdict.DROP if d.segment.seq == 0 else Verdict.PASS

    def second(d: Datagram) -> Verdict:
        calls.append("second")
        return Verdict.PASS

    net.add_filter(first)
    net.add_filter(second)
    a.send(datagram(A, B, seq=0))
    a.send(datagram(A, B, seq=1))
    net.run_until_idle(limit=100_000)
    assert calls == ["first", "first", "second"]
    assert seqs(b) == [1]
    net.remove_filter(first)
    net.remove_filter(second)
    a.send(datagram(A, B, seq=0))
    net.run_until_idle(limit=100_000)
    assert seqs(b) == [1, 0]


def test_filter_may_remove_itself() -> None:
    net, a, b = scripted_pair()

    def once(d: Datagram) -> Verdict:
        net.remove_filter(once)
        return Verdict.DROP

    net.add_filter(once)
    a.send(datagram(A, B, seq=0))
    a.send(datagram(A, B, seq=1))
    net.run_until_idle(limit=100_000)
    assert seqs(b) == [1]


def test_filters_act_before_random_loss() -> None:
    net, a, _ = scripted_pair(params=LinkParams(loss=1.0))
    rule = drop_where(lambda d: True, count=None)
    net.add_filter(rule)
    a.send(datagram(A, B))
    net.run_until_idle(limit=100_000)
    assert len(rule.hits) == 1
    assert net.link_stats(A, B).entered == 0


def test_a_filter_must_return_a_verdict() -> None:
    net, a, _ = scripted_pair()
    net.add_filter(lambda d: None)  # type: ignore[arg-type, return-value]
    a.send(datagram(A, B))
    with pytest.raises(TypeError, match="not a Verdict"):
        net.step()


def test_rule_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        drop_nth(lambda d: True, 0)
    with pytest.raises(ValueError):
        drop_where(lambda d: True, count=-1)
