"""Review of ICMP error handling (RFC 9293 3.9.2.2, RFC 5927 4.1 and 5.2, RFC 1122
4.2.3.9, RFC 1191 / RFC 8201): exact segments and verdicts for the paths the first
tests (tests/core/test_icmp_errors.py) leave out.
"""

from __future__ import annotations

import pytest

from tcpstack.core.config import PLAIN
from tcpstack.core.icmp import IcmpKind, IcmpReport
from tcpstack.core.segment import Options
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tests.core.test_endpoint import (
    ACK,
    HOST,
    ISS,
    MS,
    PEER,
    PEER_ISS,
    SYN,
    from_peer,
    make,
    sent,
)

from .harness import (
    FIN,
    LOCAL_IP,
    LOCAL_ISS,
    LOCAL_PORT,
    PSH,
    REMOTE_IP,
    REMOTE_ISS,
    REMOTE_PORT,
    Harness,
)


def report(seq: int, kind: IcmpKind, mtu: int | None = None) -> IcmpReport:
    return IcmpReport(LOCAL_IP, LOCAL_PORT, REMOTE_IP, REMOTE_PORT, seq, kind, mtu, "10.0.0.254")


def test_fragmentation_needed_above_the_effective_mss_resends_nothing() -> None:
    """The peer's MSS (536) already keeps our segments below the reported MTU (1000, so
    a path MSS of 960): the path limit is recorded, but the segments in flight fit the
    path, so nothing was dropped for its size and nothing goes again (RFC 1191 6.5
    resends what was too big; Linux's tcp_simple_retransmit marks lost only segments
    longer than the new MSS). Resending here would be a spurious go-back-N."""
    h = Harness()
    h.to_syn_sent()
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), options=Options(mss=536)), at=1)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    h.conn.send(b"z" * 1000, now=h.at(10))
    h.expect(
        h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"z" * 536),
        h.ours(ACK | PSH, h.local_seq(537), h.remote_seq(1), payload=b"z" * 464),
    )
    error = report(h.local_seq(1), IcmpKind.FRAGMENTATION_NEEDED, 1000)
    assert h.conn.receive_icmp_error(error, now=h.at(15)) == "pmtu_lowered"
    assert h.conn.pmtu_mss == 960 and h.conn.effective_mss == 536
    h.expect_nothing()
    assert h.conn.snd_nxt == h.local_seq(1001)


def test_fragmentation_needed_in_fin_wait_1_resends_data_and_fin() -> None:
    """Go-back to SND.UNA in FIN_WAIT_1: the data at the new size, the FIN on the last."""
    h = Harness()
    h.to_established()
    h.conn.send(b"x" * 3000, now=h.at(10))
    h.conn.close(now=h.at(10))
    h.expect(
        h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"x" * 1460),
        h.ours(ACK, h.local_seq(1461), h.remote_seq(1), payload=b"x" * 1460),
        h.ours(ACK | PSH, h.local_seq(2921), h.remote_seq(1), payload=b"x" * 80),
        h.ours(FIN | ACK, h.local_seq(3001), h.remote_seq(1)),
    )
    assert h.state is State.FIN_WAIT_1
    error = report(h.local_seq(1461), IcmpKind.FRAGMENTATION_NEEDED, 1280)
    assert h.conn.receive_icmp_error(error, now=h.at(15)) == "pmtu_lowered"
    h.expect(
        h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"x" * 1240),
        h.ours(ACK, h.local_seq(1241), h.remote_seq(1), payload=b"x" * 1240),
        # The resent FIN rides on the last data segment, as a retransmission may.
        h.ours(FIN | ACK | PSH, h.local_seq(2481), h.remote_seq(1), payload=b"x" * 520),
    )
    assert h.conn.snd_nxt == h.conn.snd_max == h.local_seq(3002)
    h.feed(h.peer(ACK, h.remote_seq(1), h.local_seq(3002)), at=20)
    assert h.path[-2:] == [State.FIN_WAIT_1, State.FIN_WAIT_2]


def test_error_quoting_a_segment_sent_before_an_rto_rollback_is_accepted() -> None:
    """After the RTO SND.NXT goes back to SND.UNA; the segments up to SND.MAX were sent
    and still draw ICMP errors, so they pass RFC 5927 4.1's check (Linux's snd_nxt
    never goes back). NewReno: after the RTO cwnd is one segment (RFC 5681 3.1)."""
    h = Harness(PLAIN.with_changes(congestion_control="newreno"))
    h.to_established()
    h.conn.send(b"d" * 2920, now=h.at(10))
    h.expect(
        h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"d" * 1460),
        h.ours(ACK | PSH, h.local_seq(1461), h.remote_seq(1), payload=b"d" * 1460),
    )
    deadline = h.next_timer_ms()
    assert deadline is not None
    h.fire(deadline)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"d" * 1460))
    assert h.conn.snd_nxt == h.local_seq(1461) and h.conn.snd_max == h.local_seq(2921)
    error = report(h.local_seq(1461), IcmpKind.HOST_UNREACHABLE)
    assert h.conn.receive_icmp_error(error, now=h.now) == "soft_error"
    assert h.conn.icmp_error == error
    beyond = report(h.local_seq(2921), IcmpKind.HOST_UNREACHABLE)
    assert h.conn.receive_icmp_error(beyond, now=h.now) == "seq_out_of_window"
    assert h.conn.icmp_error == error
    h.expect_nothing()
    assert h.state is State.ESTABLISHED


@pytest.mark.parametrize("kind", list(IcmpKind))
def test_no_icmp_error_ends_an_established_connection(kind: IcmpKind) -> None:
    """RFC 5927 5.2 / RFC 9293 MUST-56: whatever an attacker who guessed the sequence
    number sends, the connection stays ESTABLISHED and keeps its retransmission timer;
    the worst is an MSS at the floor (RFC 5927 7)."""
    h = Harness()
    h.to_established()
    h.conn.send(b"a" * 100, now=h.at(10))
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"a" * 100))
    timer = h.next_timer_ms()
    h.conn.receive_icmp_error(report(h.local_seq(1), kind, 68), now=h.at(11))
    assert h.state is State.ESTABLISHED and h.events() == []
    assert h.conn.effective_mss >= 512
    if kind is IcmpKind.FRAGMENTATION_NEEDED:
        # 100 bytes fit a 552-byte path: nothing goes again.
        h.expect_nothing()
    assert h.next_timer_ms() == timer


def test_hard_error_for_a_listeners_child_keeps_the_child_and_the_listener() -> None:
    """An ICMP error quoting a child's SYN,ACK (SYN_RECEIVED) reaches that child only:
    recorded, the child stays, the listener is untouched; the handshake then completes."""
    endpoint, _ = make()
    endpoint.listen(80)
    endpoint.receive_datagram(from_peer(5000, 80, SYN, PEER_ISS, options=Options(mss=1460)), now=0)
    assert [d.segment.flags for d in sent(endpoint, 0)] == [SYN | ACK]
    key = (HOST, 80, PEER, 5000)
    child = endpoint.connections[key]
    error = IcmpReport(HOST, 80, PEER, 5000, ISS, IcmpKind.PORT_UNREACHABLE, None, PEER)
    assert endpoint.receive_icmp_error(error, now=MS) == "soft_error"
    assert endpoint.stats["icmp.soft_error"] == 1
    assert child.state is State.SYN_RECEIVED and child.icmp_error == error
    assert 80 in endpoint.listeners and sent(endpoint, MS) == []
    endpoint.receive_datagram(from_peer(5000, 80, ACK, seq_add(PEER_ISS, 1), ISS + 1), now=2 * MS)
    assert endpoint.accept(80) is child
    assert child.state_history[-2:] == [State.SYN_RECEIVED, State.ESTABLISHED]
    assert child.icmp_error is None  # the ACK of our SYN forgets it (Linux's tcp_ack)


def ipv6_too_big(seq: int, mtu: int) -> IcmpReport:
    return IcmpReport(
        "2001:db8::1",
        LOCAL_PORT,
        "2001:db8::2",
        REMOTE_PORT,
        seq,
        IcmpKind.FRAGMENTATION_NEEDED,
        mtu,
        "2001:db8::fe",
    )


@pytest.mark.parametrize("mtu", [0, 600, 1279])
def test_ipv6_packet_too_big_below_1280_is_discarded(mtu: int) -> None:
    """RFC 8201 4: "If a node receives a Packet Too Big message reporting a next-hop MTU
    that is less than the IPv6 minimum link MTU, it must discard it" (Linux's tcp_v6_err
    does). Nothing is lowered and nothing is resent."""
    h = Harness(PLAIN)
    h.to_established()
    h.conn.send(b"b" * 1460, now=h.at(10))
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"b" * 1460))
    verdict = h.conn.receive_icmp_error(ipv6_too_big(h.local_seq(1), mtu), now=h.at(11))
    assert verdict == "pmtu_discarded"
    assert h.conn.pmtu_mss is None and h.conn.effective_mss == 1460
    h.expect_nothing()


def test_ipv6_packet_too_big_of_1280_lowers_the_mss_to_1220() -> None:
    h = Harness(PLAIN)
    h.to_established()
    h.conn.send(b"b" * 1460, now=h.at(10))
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"b" * 1460))
    verdict = h.conn.receive_icmp_error(ipv6_too_big(h.local_seq(1), 1280), now=h.at(11))
    assert verdict == "pmtu_lowered" and h.conn.pmtu_mss == 1280 - 40 - 20
    h.expect(
        h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"b" * 1220),
        h.ours(ACK | PSH, h.local_seq(1221), h.remote_seq(1), payload=b"b" * 240),
    )


def test_unknown_four_tuple_is_counted_and_answered_by_nothing() -> None:
    endpoint, _ = make()
    error = IcmpReport(HOST, 4000, PEER, 80, LOCAL_ISS, IcmpKind.PORT_UNREACHABLE, None, PEER)
    assert endpoint.receive_icmp_error(error, now=0) == "no_connection"
    assert endpoint.stats["icmp.no_connection"] == 1
    assert sent(endpoint, 0) == [] and endpoint.connections == {}
