"""Review of the TUN driver's ICMP parsing (tcpstack.net.packet): a quoted IPv4 header
must be a real one before its TCP ports and sequence number are read."""

from __future__ import annotations

import struct

import pytest

from tcpstack.core.codec import encode_segment, internet_checksum
from tcpstack.core.segment import Flag, Segment
from tcpstack.net.packet import ICMP, TCP, PacketError, decode_ip, encode_ipv4, parse_icmp_error

US4, PEER4 = "10.77.0.2", "10.77.0.1"


def host_unreachable(quoted: bytes) -> bytes:
    body = struct.pack("!BBHHH", 3, 1, 0, 0, 0) + quoted
    return body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]


def test_quoted_ipv4_header_shorter_than_20_bytes_is_rejected() -> None:
    """RFC 791: IHL is at least 5 (20 bytes). With IHL 2 the "TCP header" would be read
    from the quoted IP header itself (TTL, protocol, addresses) and yield a made-up
    4-tuple and sequence number; Linux's icmp_unreach drops such a mangled quote."""
    ours = encode_ipv4(
        US4, PEER4, TCP, encode_segment(Segment(40001, 80, 5, 0, Flag.SYN, 1000), US4, PEER4)
    )
    mangled = bytes([0x42]) + ours[1:]  # version 4, IHL 2
    with pytest.raises(PacketError) as raised:
        parse_icmp_error(decode_ip(encode_ipv4(PEER4, US4, ICMP, host_unreachable(mangled))))
    assert raised.value.reason == "icmp.bad_quote"
    # The intact quote parses: the check only refuses the mangled header.
    error = parse_icmp_error(decode_ip(encode_ipv4(PEER4, US4, ICMP, host_unreachable(ours))))
    assert (error.four_tuple, error.seq) == ((US4, 40001, PEER4, 80), 5)
