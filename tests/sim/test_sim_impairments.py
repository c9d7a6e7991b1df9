"""Loss, duplication, reordering and corruption: rates, and what each does to a datagram.

The runs are deterministic, so each test asserts the exact count observed with its seed
(a change there means the random streams changed) and that the count is plausible for
the configured probability (a change there means the model is wrong).
"""

from __future__ import annotations

import itertools

import pytest

from tcpstack.core.codec import decode_segment, encode_segment
from tcpstack.core.errors import MalformedSegment
from tcpstack.sim import LinkParams, NetRecord, Network, What
from tcpstack.sim.testing import A, B, ScriptedNode, datagram, scripted_pair

N = 10_000


def blast(
    params: LinkParams, *, wire: bool = False, seed: int = 7
) -> tuple[Network, ScriptedNode, list[NetRecord]]:
    """Send N numbered datagrams A -> B, one every 100 us, and run to the end."""
    net, a, b = scripted_pair(seed, wire=wire, params=params)
    log: list[NetRecord] = []
    net.add_observer(log.append)
    for i in range(N):
        a.send(datagram(A, B, i.to_bytes(4, "big"), seq=i))
        net.run_for(100)
    assert net.run_until_idle(limit=net.now + 1_000_000)
    return net, b, log


def count(log: list[NetRecord], what: What) -> int:
    return sum(1 for r in log if r.what == what)


@pytest.mark.parametrize("wire", [False, True])
def test_loss_rate(wire: bool) -> None:
    net, b, log = blast(LinkParams(loss=0.1), wire=wire)
    lost = count(log, What.LOST)
    assert lost == 1_001
    assert 900 <= lost <= 1_100
    assert len(b.received) == N - lost
    assert net.link_stats(A, B).lost == lost


def test_duplicates_arrive_with_the_original() -> None:
    net, b, log = blast(LinkParams(duplicate=0.05))
    duplicated = count(log, What.DUPLICATED)
    assert duplicated == 469
    assert 400 <= duplicated <= 600
    assert net.link_stats(A, B).duplicated == duplicated
    assert len(b.received) == N + duplicated
    dup_packets = {r.packet for r in log if r.what == What.DUPLICATED}
    deliveries = [r for r in log if r.what == What.DELIVERED]
    for first, second in itertools.pairwise(deliveries):
        if first.packet in dup_packets and second.packet == first.packet:
            assert second.time == first.time
            assert second.datagram is first.datagram  # the same object: nothing copied
    assert len({r.packet for r in deliveries}) == N


def test_reorder_rate_and_effect() -> None:
    params = LinkParams(reorder=0.02, reorder_delay=1_000)
    net, b, log = blast(params)
    reordered = count(log, What.REORDERED)
    assert reordered == 194
    assert 150 <= reordered <= 250
    assert net.link_stats(A, B).reordered == reordered
    seqs = [r.datagram.segment.seq for r in b.received if r.datagram]
    assert sorted(seqs) == list(range(N))
    # A packet held back 1000 us is overtaken by the (up to) 10 sent after it.
    late = [s for i, s in enumerate(seqs) if any(s < t for t in seqs[max(0, i - 10) : i])]
    assert len(late) == reordered


def test_corruption_flips_exactly_one_bit_in_wire_mode() -> None:
    net, b, log = blast(LinkParams(corrupt=0.03), wire=True)
    corrupted = [r for r in log if r.what == What.CORRUPTED]
    assert len(corrupted) == 298
    assert 250 <= len(corrupted) <= 350
    assert net.link_stats(A, B).corrupted == len(corrupted)
    assert len(b.received) == N  # damaged datagrams still arrive: the receiver judges
    damaged_packets = {r.packet for r in corrupted}
    damaged_seen = 0
    for record in log:
        if record.what != What.DELIVERED:
            continue
        assert record.data is not None
        pristine = encode_segment(record.segment, A, B)
        diff = int.from_bytes(pristine, "big") ^ int.from_bytes(record.data, "big")
        if record.packet in damaged_packets:
            damaged_seen += 1
            assert len(record.data) == len(pristine)
            assert diff.bit_count() == 1
            # The Internet checksum catches every single-bit error.
            with pytest.raises(MalformedSegment) as excinfo:
                decode_segment(record.data, A, B)
            assert excinfo.value.reason == "bad_checksum"
        else:
            assert diff == 0
    assert damaged_seen == len(corrupted)
    # Each corrupted datagram's bytes reached the receiver exactly as recorded.
    received = [r.data for r in b.received]
    delivered = [r.data for r in log if r.what == What.DELIVERED]
    assert received == delivered


def test_corruption_in_object_mode_discards_the_datagram() -> None:
    net, b, log = blast(LinkParams(corrupt=0.03), wire=False)
    corrupted = [r for r in log if r.what == What.CORRUPTED]
    assert len(corrupted) == 298  # the same draws as in wire mode
    assert net.link_stats(A, B).delivered == N - len(corrupted)
    assert all(r.data is None for r in corrupted)
    assert len(b.received) == N - len(corrupted)
    delivered = {r.packet for r in log if r.what == What.DELIVERED}
    assert delivered.isdisjoint(r.packet for r in corrupted)


def test_object_and_wire_mode_make_the_same_run() -> None:
    params = LinkParams(
        delay=2_000,
        jitter=300,
        bandwidth=600_000,  # 64-byte datagrams every 100 us: a queue builds
        queue_limit=3,
        loss=0.05,
        duplicate=0.05,
        reorder=0.05,
        reorder_delay=700,
        corrupt=0.05,
    )
    _, _, wire_log = blast(params, wire=True, seed=11)
    _, _, object_log = blast(params, wire=False, seed=11)
    corrupted = {r.packet for r in wire_log if r.what == What.CORRUPTED}
    assert corrupted

    def key(r: NetRecord) -> tuple[int, str, int]:
        return (r.time, r.what, r.packet)

    # Object mode discards a corrupted datagram, so it never reorders, duplicates or
    # delivers it; everything else, random draws included, is the same.
    after_corruption = {What.REORDERED, What.DUPLICATED, What.DELIVERED}
    expected = [
        key(r) for r in wire_log if not (r.what in after_corruption and r.packet in corrupted)
    ]
    assert [key(r) for r in object_log] == expected
    assert count(wire_log, What.QUEUE_DROP) > 0


def test_certain_loss_loses_everything() -> None:
    _, b, log = blast(LinkParams(loss=1.0))
    assert b.received == []
    assert count(log, What.LOST) == N
