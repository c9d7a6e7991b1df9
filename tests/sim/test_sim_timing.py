"""Exact arithmetic of delay, bandwidth, the FIFO transmitter queue and tail drop."""

from __future__ import annotations

import pytest

from tcpstack.core.codec import encode_segment
from tcpstack.sim import LinkParams, Network, What, datagram_size
from tcpstack.sim.network import NetRecord
from tcpstack.sim.testing import A, B, ScriptedNode, datagram, scripted_pair

# A payload that makes an IPv4 datagram exactly 1000 bytes: 20 IP + 20 TCP header.
PAYLOAD_1000 = bytes(960)


def arrival_times(node: ScriptedNode) -> list[int]:
    return [r.time for r in node.received]


def test_default_delay_is_one_millisecond() -> None:
    net, a, b = scripted_pair()
    a.send(datagram(A, B, b"x"))
    assert net.run_until_idle(limit=10_000)
    assert arrival_times(b) == [1_000]
    assert net.now == 1_000


def test_delay_is_added_to_the_send_time() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=2_500))
    net.run_for(700)
    a.send(datagram(A, B, b"x"))
    net.run_until_idle(limit=10_000)
    assert arrival_times(b) == [3_200]


@pytest.mark.parametrize("wire", [False, True])
def test_1000_bytes_at_8_mbit_take_1000_us_plus_delay(wire: bool) -> None:
    net, a, b = scripted_pair(wire=wire, params=LinkParams(delay=5_000, bandwidth=8_000_000))
    d = datagram(A, B, PAYLOAD_1000)
    assert datagram_size(d) == 1_000
    assert len(encode_segment(d.segment, A, B)) == 980  # the size counts the IP header too
    a.send(d)
    net.run_until_idle(limit=100_000)
    assert arrival_times(b) == [6_000]


def test_ipv6_header_is_40_bytes() -> None:
    x, y = "fd00::1", "fd00::2"
    net, a, b = scripted_pair(params=LinkParams(delay=0, bandwidth=8_000_000), a=x, b=y)
    d = datagram(x, y, bytes(940))
    assert datagram_size(d) == 1_000
    a.send(d)
    net.run_until_idle(limit=100_000)
    assert arrival_times(b) == [1_000]


def test_packets_queue_fifo_behind_each_other() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=500, bandwidth=8_000_000))
    for seq in range(3):
        a.send(datagram(A, B, PAYLOAD_1000, seq=seq))
    net.run_for(2_500)
    # Sent at 2500 while the third packet is on the transmitter until 3000.
    a.send(datagram(A, B, PAYLOAD_1000, seq=3))
    # Sent at 6000 on an idle transmitter: no waiting.
    net.run_until(lambda: False, limit=6_000)
    a.send(datagram(A, B, PAYLOAD_1000, seq=4))
    net.run_until_idle(limit=100_000)
    assert arrival_times(b) == [1_500, 2_500, 3_500, 4_500, 7_500]
    assert [r.datagram.segment.seq for r in b.received if r.datagram] == [0, 1, 2, 3, 4]


def test_serialisation_does_not_accumulate_rounding() -> None:
    # 100 bytes at 3 Mbit/s is 266.67 us: the departures are 266.67, 533.33 and 800.00,
    # each rounded up to the microsecond, not 267 + 267 + 267 = 801.
    net, a, b = scripted_pair(params=LinkParams(delay=0, bandwidth=3_000_000))
    for _ in range(3):
        a.send(datagram(A, B, bytes(60)))
    net.run_until_idle(limit=100_000)
    assert arrival_times(b) == [267, 534, 800]


def test_queue_limit_tail_drops_and_frees_up_as_packets_start() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=0, bandwidth=8_000_000, queue_limit=2))
    log: list[NetRecord] = []
    net.add_observer(log.append)
    for seq in range(5):  # one on the transmitter, two waiting, two dropped
        a.send(datagram(A, B, PAYLOAD_1000, seq=seq))
    net.run_until(lambda: False, limit=1_500)
    # At 1500: packet 1 is on the transmitter, packet 2 waits: room for one more.
    a.send(datagram(A, B, PAYLOAD_1000, seq=5))
    a.send(datagram(A, B, PAYLOAD_1000, seq=6))
    net.run_until_idle(limit=100_000)
    assert [(r.packet, r.time) for r in log if r.what == What.QUEUE_DROP] == [
        (3, 0),
        (4, 0),
        (6, 1_500),
    ]
    assert [r.datagram.segment.seq for r in b.received if r.datagram] == [0, 1, 2, 5]
    assert arrival_times(b) == [1_000, 2_000, 3_000, 4_000]
    stats = net.link_stats(A, B)
    assert (stats.entered, stats.queue_drops, stats.delivered) == (7, 3, 4)


def test_queue_limit_zero_accepts_only_on_an_idle_transmitter() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=0, bandwidth=8_000_000, queue_limit=0))
    a.send(datagram(A, B, PAYLOAD_1000, seq=0))
    a.send(datagram(A, B, PAYLOAD_1000, seq=1))
    net.run_until(lambda: False, limit=1_000)
    a.send(datagram(A, B, PAYLOAD_1000, seq=2))  # the transmitter is free again
    net.run_until_idle(limit=100_000)
    assert [r.datagram.segment.seq for r in b.received if r.datagram] == [0, 2]
    assert arrival_times(b) == [1_000, 2_000]


def test_infinite_bandwidth_never_queues() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=10, queue_limit=0))
    for _ in range(100):
        a.send(datagram(A, B, PAYLOAD_1000))
    net.run_until_idle(limit=100_000)
    assert arrival_times(b) == [10] * 100


def test_jitter_stays_within_bounds_and_in_whole_microseconds() -> None:
    net, a, b = scripted_pair(seed=3, params=LinkParams(delay=1_000, jitter=200))
    for _ in range(1_000):
        a.send(datagram(A, B, b"j"))
    net.run_until_idle(limit=100_000)
    times = arrival_times(b)
    assert all(type(t) is int and 1_000 <= t <= 1_200 for t in times)
    assert min(times) == 1_000 and max(times) == 1_200  # both ends are reachable
    assert len(set(times)) > 150


def test_reordered_packet_gets_the_extra_delay() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=1_000, reorder=1.0, reorder_delay=750))
    a.send(datagram(A, B, b"r"))
    net.run_until_idle(limit=100_000)
    assert arrival_times(b) == [1_750]
    assert net.link_stats(A, B).reordered == 1


def test_directions_can_differ() -> None:
    net, a, b = scripted_pair()
    net.link_direction(B, A, LinkParams(delay=3_000))
    a.send(datagram(A, B, b"ab"))
    b.send(datagram(B, A, b"ba"))
    net.run_until_idle(limit=100_000)
    assert arrival_times(b) == [1_000]
    assert arrival_times(a) == [3_000]
    assert net.link_params(A, B).delay == 1_000
    assert net.link_params(B, A).delay == 3_000


def test_cutting_a_link_mid_run_keeps_datagrams_already_on_their_way() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=1_000))
    a.send(datagram(A, B, b"before"))
    net.run_for(500)
    net.link(A, B, loss=1.0)
    a.send(datagram(A, B, b"after"))
    net.run_until_idle(limit=100_000)
    assert [r.datagram.segment.payload for r in b.received if r.datagram] == [b"before"]
    assert net.link_stats(A, B).lost == 1


def test_bandwidth_change_mid_run_keeps_the_packet_on_the_transmitter() -> None:
    net, a, b = scripted_pair(params=LinkParams(delay=0, bandwidth=8_000_000))
    a.send(datagram(A, B, PAYLOAD_1000, seq=0))  # on the transmitter until 1000
    net.run_for(100)
    net.link(A, B, delay=0, bandwidth=16_000_000)
    a.send(datagram(A, B, PAYLOAD_1000, seq=1))  # waits until 1000, then 500 us
    net.run_until_idle(limit=100_000)
    assert arrival_times(b) == [1_000, 1_500]


def test_link_keywords_override_the_given_params() -> None:
    net = Network(wire=False)
    base = LinkParams(delay=7, jitter=3, loss=0.5)
    net.link(A, B, base, jitter=0, bandwidth=1_000)
    expected = LinkParams(delay=7, jitter=0, loss=0.5, bandwidth=1_000)
    assert net.link_params(A, B) == expected
    assert net.link_params(B, A) == expected
