"""The IP layer around the TCP codec: encode/decode, counted drops, ICMP (no root needed)."""

from __future__ import annotations

import struct

import pytest

from tcpstack.core.codec import decode_segment, encode_segment, internet_checksum
from tcpstack.core.segment import Datagram, Flag, Options, Segment
from tcpstack.net.packet import (
    ICMP,
    ICMPV6,
    TCP,
    IcmpError,
    IcmpReply,
    IpLayer,
    PacketError,
    TcpPayload,
    decode_ip,
    encode_datagram,
    encode_ipv4,
    encode_ipv6,
    parse_icmp_error,
)

US4, PEER4 = "10.77.0.2", "10.77.0.1"
US6, PEER6 = "fd77::2", "fd77::1"


def syn(src_port: int = 40000, dst_port: int = 80) -> Segment:
    return Segment(src_port, dst_port, 0xFFFFFF00, 0, Flag.SYN, 65535, options=Options(mss=1460))


def test_ipv4_round_trip_and_header_checksum() -> None:
    tcp = encode_segment(syn(), PEER4, US4)
    packet = encode_ipv4(PEER4, US4, TCP, tcp)
    assert len(packet) == 20 + len(tcp)
    assert internet_checksum(packet[:20]) == 0  # a correct header sums to zero
    assert packet[6] & 0x40  # DF
    ip = decode_ip(packet)
    assert (ip.version, ip.src, ip.dst, ip.protocol, ip.payload) == (4, PEER4, US4, TCP, tcp)
    assert decode_segment(ip.payload, ip.src, ip.dst).flags == Flag.SYN


def test_ipv4_header_checksum_for_many_identifications() -> None:
    # The incremental header checksum must be right whatever the ID and length.
    for size in (0, 1, 1459, 1460):
        for _ in range(300):
            packet = encode_ipv4(PEER4, US4, TCP, bytes(size))
            assert internet_checksum(packet[:20]) == 0


def test_ipv6_round_trip() -> None:
    tcp = encode_segment(syn(), PEER6, US6)
    packet = encode_ipv6(PEER6, US6, TCP, tcp)
    ip = decode_ip(packet)
    assert (ip.version, ip.src, ip.dst, ip.protocol, ip.payload) == (6, PEER6, US6, TCP, tcp)


def test_encode_datagram_picks_the_family() -> None:
    v4 = encode_datagram(Datagram(US4, PEER4, syn()))
    v6 = encode_datagram(Datagram(US6, PEER6, syn()))
    assert v4[0] >> 4 == 4 and v6[0] >> 4 == 6


def _with_ipv4_header(
    packet: bytes, *, ihl_words: int = 5, frag: int = 0x4000, fix: bool = True
) -> bytes:
    """Rewrite an IPv4 packet's IHL (adding NOP options) or fragment field."""
    header = bytearray(packet[:20])
    options = b"\x01" * ((ihl_words - 5) * 4)
    header[0] = 0x40 | ihl_words
    total = 20 + len(options) + len(packet) - 20
    header[2:4] = struct.pack("!H", total)
    header[6:8] = struct.pack("!H", frag)
    header[10:12] = b"\0\0"
    full = bytes(header) + options
    if fix:
        full = full[:10] + struct.pack("!H", internet_checksum(full)) + full[12:]
    return full + packet[20:]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p[:12], "ipv4.short"),
        (lambda p: bytes([0x55]) + p[1:], "ip.bad_version"),
        (lambda p: _with_ipv4_header(p, ihl_words=6), "ipv4.options"),
        (lambda p: _with_ipv4_header(p, frag=0x2000), "ipv4.fragment"),  # MF: first fragment
        (lambda p: _with_ipv4_header(p, frag=0x0010), "ipv4.fragment"),  # a later fragment
        (lambda p: p[:10] + bytes([p[10] ^ 1]) + p[11:], "ipv4.bad_checksum"),
        (lambda p: p[:-4], "ipv4.bad_length"),
    ],
)
def test_rejected_ipv4_packets_are_counted(mutate: object, reason: str) -> None:
    packet = encode_ipv4(PEER4, US4, TCP, encode_segment(syn(), PEER4, US4))
    layer = IpLayer({US4})
    assert callable(mutate)
    assert layer.classify(mutate(packet)) is None
    assert layer.stats == {reason: 1}


def test_ipv6_fragments_and_extension_headers_are_counted() -> None:
    layer = IpLayer({US6})
    tcp = encode_segment(syn(), PEER6, US6)
    fragment = encode_ipv6(PEER6, US6, 44, bytes([TCP, 0, 0, 1, 0, 0, 0, 7]) + tcp)
    hop_by_hop = encode_ipv6(PEER6, US6, 0, bytes([TCP, 0, 1, 4, 0, 0, 0, 0]) + tcp)
    assert layer.classify(fragment) is None
    assert layer.classify(hop_by_hop) is None
    assert layer.classify(encode_ipv6(PEER6, US6, TCP, tcp)[:30]) is None
    assert layer.stats == {"ipv6.fragment": 1, "ipv6.extension_header": 1, "ipv6.short": 1}


def test_other_protocols_and_addresses_are_counted() -> None:
    layer = IpLayer({US4})
    assert layer.classify(encode_ipv4(PEER4, US4, 17, b"udp")) is None
    assert layer.classify(encode_ipv4(PEER4, "10.77.0.9", TCP, b"x" * 20)) is None
    assert layer.classify(b"") is None
    assert layer.stats == {"ip.protocol.17": 1, "ip.not_for_us": 1, "ip.empty": 1}


def test_tcp_goes_to_the_endpoint() -> None:
    layer = IpLayer({US4})
    tcp = encode_segment(syn(), PEER4, US4)
    assert layer.classify(encode_ipv4(PEER4, US4, TCP, tcp)) == TcpPayload(PEER4, US4, tcp)
    assert layer.stats == {"rx.tcp": 1}


def _echo_request(ident: int, seq: int, data: bytes) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    return body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]


def test_icmp_echo_request_is_answered() -> None:
    layer = IpLayer({US4})
    request = encode_ipv4(PEER4, US4, ICMP, _echo_request(0x1234, 7, b"ping data"))
    answer = layer.classify(request)
    assert isinstance(answer, IcmpReply)
    ip = decode_ip(answer.packet)
    assert (ip.src, ip.dst, ip.protocol) == (US4, PEER4, ICMP)
    assert ip.payload[0] == 0 and ip.payload[4:] == _echo_request(0x1234, 7, b"ping data")[4:]
    assert internet_checksum(ip.payload) == 0
    assert layer.stats == {"icmp.echo_request": 1}


def test_icmpv6_echo_request_is_answered_with_a_valid_checksum() -> None:
    layer = IpLayer({US6})
    body = struct.pack("!BBHHH", 128, 0, 0, 1, 2) + b"v6 ping"
    # Fill the checksum the way the kernel does (pseudo-header included).
    from tcpstack.net.packet import _icmpv6_checksum, _icmpv6_valid

    request = body[:2] + struct.pack("!H", _icmpv6_checksum(PEER6, US6, body)) + body[4:]
    answer = layer.classify(encode_ipv6(PEER6, US6, ICMPV6, request))
    assert isinstance(answer, IcmpReply)
    ip = decode_ip(answer.packet)
    assert ip.payload[0] == 129 and _icmpv6_valid(ip.src, ip.dst, ip.payload)
    assert layer.stats == {"icmpv6.echo_request": 1}


def test_icmp_with_a_bad_checksum_is_counted() -> None:
    layer = IpLayer({US4})
    request = bytearray(_echo_request(1, 1, b"x"))
    request[-1] ^= 0xFF
    assert layer.classify(encode_ipv4(PEER4, US4, ICMP, bytes(request))) is None
    assert layer.stats == {"icmp.bad_checksum": 1}


def _unreachable_v4(code: int, quoted: bytes, mtu: int = 0) -> bytes:
    body = struct.pack("!BBHHH", 3, code, 0, 0, mtu) + quoted
    return body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]


def test_icmp_destination_unreachable_is_parsed() -> None:
    ours = encode_ipv4(US4, "10.77.1.5", TCP, encode_segment(syn(40001, 80), US4, "10.77.1.5"))
    message = _unreachable_v4(1, ours[:28])  # the IP header and 8 bytes, as RFC 792 asks
    layer = IpLayer({US4})
    error = layer.classify(encode_ipv4(PEER4, US4, ICMP, message))
    assert isinstance(error, IcmpError)
    assert error.four_tuple == (US4, 40001, "10.77.1.5", 80)
    assert (error.kind, error.code, error.code_name, error.seq) == (
        "unreachable",
        1,
        "host_unreachable",
        0xFFFFFF00,
    )
    assert error.reporter == PEER4 and error.mtu is None
    assert layer.stats == {"icmp.unreachable.host_unreachable": 1}


def test_icmp_fragmentation_needed_reports_the_mtu() -> None:
    ours = encode_ipv4(US4, PEER4, TCP, encode_segment(syn(), US4, PEER4))
    error = parse_icmp_error(
        decode_ip(encode_ipv4(PEER4, US4, ICMP, _unreachable_v4(4, ours, 1280)))
    )
    assert error.code_name == "fragmentation_needed" and error.mtu == 1280


def test_icmpv6_unreachable_and_packet_too_big_are_parsed() -> None:
    ours = encode_ipv6(US6, "fd77:1::5", TCP, encode_segment(syn(), US6, "fd77:1::5"))
    unreachable = decode_ip(encode_ipv6(PEER6, US6, ICMPV6, bytes([1, 0, 0, 0, 0, 0, 0, 0]) + ours))
    error = parse_icmp_error(unreachable)
    assert (error.kind, error.code_name, error.remote_ip) == (
        "unreachable",
        "no_route",
        "fd77:1::5",
    )
    too_big = bytes([2, 0, 0, 0]) + struct.pack("!I", 1280) + ours
    error = parse_icmp_error(decode_ip(encode_ipv6(PEER6, US6, ICMPV6, too_big)))
    assert (error.kind, error.mtu, error.counter) == (
        "packet_too_big",
        1280,
        "icmpv6.packet_too_big.code_0",
    )


def test_icmp_errors_about_other_protocols_are_rejected() -> None:
    udp = encode_ipv4(US4, PEER4, 17, b"\0" * 16)
    ip = decode_ip(encode_ipv4(PEER4, US4, ICMP, _unreachable_v4(3, udp)))
    with pytest.raises(PacketError) as caught:
        parse_icmp_error(ip)
    assert caught.value.reason == "icmp.unreachable.not_tcp"


def test_unknown_icmp_types_are_counted() -> None:
    body = struct.pack("!BBHI", 13, 0, 0, 0) + bytes(12)  # timestamp request
    body = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
    layer = IpLayer({US4})
    assert layer.classify(encode_ipv4(PEER4, US4, ICMP, body)) is None
    assert layer.stats == {"icmp.type.13": 1}
