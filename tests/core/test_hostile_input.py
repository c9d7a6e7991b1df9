"""Hostile and malformed segments: each dropped by the Endpoint with a named counter and
a trace record, nothing sent back; and the RFC 9293 address rules MUST-46 and MUST-63."""

from __future__ import annotations

import pytest

from tcpstack.core.endpoint import is_unicast
from tcpstack.core.errors import InvalidOperation
from tcpstack.core.segment import Datagram, Flag, Segment
from tcpstack.core.state import State
from tcpstack.core.trace import TraceKind
from tests.core.test_endpoint import HOST, PEER, PEER_ISS, handshake, make, sent

SYN, ACK, RST, FIN, URG = Flag.SYN, Flag.ACK, Flag.RST, Flag.FIN, Flag.URG


def seg(
    flags: int, *, src_port: int = 5000, dst_port: int = 80, urgent: int = 0, payload: bytes = b""
) -> Segment:
    return Segment(src_port, dst_port, PEER_ISS, 0, flags, 65535, urgent, payload=payload)


CASES = [
    ("hostile.syn_fin", seg(SYN | FIN)),
    ("hostile.syn_rst", seg(SYN | RST)),
    ("hostile.no_flags", seg(0)),
    ("hostile.no_flags", seg(Flag.ECE | Flag.CWR)),
    ("hostile.port_zero", seg(SYN, src_port=0)),
    ("hostile.port_zero", seg(SYN, dst_port=0)),
]


@pytest.mark.parametrize(("counter", "segment"), CASES)
@pytest.mark.parametrize("with_listener", [False, True])
def test_hostile_segment_is_dropped_and_counted(
    counter: str, segment: Segment, with_listener: bool
) -> None:
    endpoint, trace = make()
    if with_listener:
        endpoint.listen(80)
    endpoint.receive_datagram(Datagram(PEER, HOST, segment), now=5)
    assert sent(endpoint, 5) == []
    assert endpoint.stats == {counter: 1}
    drops = trace.of_kind(TraceKind.DROP)
    assert [(d.data["reason"], d.segment) for d in drops] == [(counter, segment)]
    assert endpoint.connections == {}


def test_hostile_segment_for_an_established_connection_leaves_it_alone() -> None:
    endpoint, _ = make()
    endpoint.listen(80)
    handshake(endpoint, 5000)
    assert sent(endpoint) == []
    endpoint.receive_datagram(Datagram(PEER, HOST, seg(SYN | RST)), now=1)
    assert sent(endpoint, 1) == []
    assert endpoint.stats["hostile.syn_rst"] == 1
    (conn,) = endpoint.connections.values()
    assert conn.state is State.ESTABLISHED


@pytest.mark.parametrize("urgent", [3, 4, 0xFFFF])
def test_an_urgent_pointer_past_the_data_is_not_hostile(urgent: int) -> None:
    """Linux sends SND.UP - SEG.SEQ on every segment before the urgent data's end, so the
    pointer may lie past the segment's own data (RFC 9293 3.8.5, MUST-31): ordinary
    input, here answered like any segment for no connection."""
    endpoint, _ = make()
    segment = seg(ACK | URG, urgent=urgent, payload=b"abc")
    endpoint.receive_datagram(Datagram(PEER, HOST, segment), now=0)
    assert endpoint.stats == {"no_connection": 1}


@pytest.mark.parametrize(
    "source", ["0.0.0.0", "255.255.255.255", "224.0.0.1", "239.1.2.3", "::", "ff02::1"]
)
def test_syn_from_invalid_source_is_ignored_must_63(source: str) -> None:
    endpoint, trace = make()
    endpoint.listen(80)
    endpoint.receive_datagram(Datagram(source, HOST, seg(SYN)), now=0)
    endpoint.receive_datagram(Datagram(source, HOST, seg(ACK, dst_port=81)), now=0)
    assert sent(endpoint) == []  # no SYN,ACK and no RST to a group address
    assert endpoint.stats == {"hostile.bad_source": 2}
    assert len(trace.of_kind(TraceKind.DROP)) == 2
    assert endpoint.connections == {}


@pytest.mark.parametrize("address", ["255.255.255.255", "224.0.0.251", "0.0.0.0", "ff02::fb"])
def test_connect_to_broadcast_or_multicast_raises_must_46(address: str) -> None:
    endpoint, _ = make()
    with pytest.raises(InvalidOperation):
        endpoint.connect(address, 80, now=0)
    assert endpoint.connections == {}
    assert sent(endpoint) == []


def test_connect_to_port_zero_raises() -> None:
    endpoint, _ = make()
    with pytest.raises(InvalidOperation):
        endpoint.connect(PEER, 0, now=0)


def test_unicast_classification() -> None:
    assert is_unicast("10.0.0.1")
    assert is_unicast("2001:db8::1")
    assert is_unicast("not-an-address")  # host names in tests stay usable
    assert not is_unicast("224.0.0.1")
