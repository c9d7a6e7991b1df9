"""RFC 9293 3.7.1 (MUST-15): a SYN without the MSS option means a send MSS of 536 over
IPv4 and 1220 over IPv6; exact segments for both families, active, passive and through
a SYN cookie."""

from __future__ import annotations

import pytest

from tcpstack.core.config import PLAIN
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.segment import Datagram, Flag, Options, Segment
from tcpstack.core.state import State
from tcpstack.core.syncookies import SynCookies

ISS = 1_000
PEER_ISS = 5_000
FAMILIES = [("10.0.0.1", "10.0.0.2", 536), ("fd00::1", "fd00::2", 1220)]


def collect(conn: Connection, now: int = 0) -> list[Segment]:
    return conn.segments_to_send(now=now)


@pytest.mark.parametrize(("local", "remote", "mss"), FAMILIES)
def test_active_open_without_peer_mss_option(local: str, remote: str, mss: int) -> None:
    conn = Connection((local, 4242), (remote, 80), config=PLAIN, isn_generator=lambda *_: ISS)
    conn.open(now=0)
    assert collect(conn) == [Segment(4242, 80, ISS, 0, Flag.SYN, 65535, 0, Options(mss=1460))]
    conn.receive_segment(Segment(80, 4242, PEER_ISS, ISS + 1, Flag.SYN | Flag.ACK, 65535), now=0)
    assert collect(conn) == [Segment(4242, 80, ISS + 1, PEER_ISS + 1, Flag.ACK, 65535)]
    assert conn.snd_mss == mss
    conn.send(bytes(3000), now=0)
    sizes = [len(seg.payload) for seg in collect(conn)]
    assert sizes[:2] == [mss, mss]


@pytest.mark.parametrize(("local", "remote", "mss"), FAMILIES)
def test_passive_open_without_peer_mss_option(local: str, remote: str, mss: int) -> None:
    conn = Connection((local, 80), (remote, 4242), config=PLAIN, isn_generator=lambda *_: ISS)
    conn.listen(now=0)
    conn.receive_segment(Segment(4242, 80, PEER_ISS, 0, Flag.SYN, 65535), now=0)
    (syn_ack,) = collect(conn)
    assert syn_ack.flags == Flag.SYN | Flag.ACK and syn_ack.options == Options(mss=1460)
    assert conn.snd_mss == mss


def test_an_mss_option_wins_over_the_family_default() -> None:
    conn = Connection(
        ("fd00::1", 4242), ("fd00::2", 80), config=PLAIN, isn_generator=lambda *_: ISS
    )
    conn.open(now=0)
    collect(conn)
    syn_ack = Segment(80, 4242, PEER_ISS, ISS + 1, Flag.SYN | Flag.ACK, 65535, 0, Options(mss=700))
    conn.receive_segment(syn_ack, now=0)
    assert conn.snd_mss == 700


@pytest.mark.parametrize(("local", "remote", "mss"), FAMILIES)
def test_a_syn_cookie_keeps_the_family_default(local: str, remote: str, mss: int) -> None:
    """A SYN without MSS answered with a cookie (backlog full): the cookie carries the
    family's default (both are in its MSS table), and the connection the ACK completes
    sends segments of that size."""
    secret = b"default-mss-cookie-secret-012345"
    endpoint = Endpoint(
        local, isn_generator=lambda *_: ISS, config=PLAIN, syn_backlog=1, syn_cookie_secret=secret
    )
    endpoint.listen(80)
    replies = []
    for port in (5001, 5002):  # the first fills the backlog, the second gets a cookie
        syn = Segment(port, 80, PEER_ISS, 0, Flag.SYN, 65535)
        endpoint.receive_datagram(Datagram(remote, local, syn), now=0)
        (reply,) = endpoint.datagrams_to_send(now=0)
        replies.append(reply.segment)
    assert [(seg.dst_port, seg.flags) for seg in replies] == [
        (5001, Flag.SYN | Flag.ACK),
        (5002, Flag.SYN | Flag.ACK),
    ]
    cookie = replies[1].seq
    assert endpoint.stats["syn_cookie.sent"] == 1
    assert SynCookies(secret).check((local, 80, remote, 5002), PEER_ISS, cookie, 0) == mss
    ack = Segment(5002, 80, PEER_ISS + 1, (cookie + 1) & 0xFFFFFFFF, Flag.ACK, 65535)
    endpoint.receive_datagram(Datagram(remote, local, ack), now=1)
    conn = endpoint.accept(80)
    assert conn is not None and conn.state is State.ESTABLISHED
    assert conn.snd_mss == mss
