"""IPv4 / IPv6 packets around the TCP codec, and the little ICMP a TCP host needs.

What a TUN device hands us are bare IP packets (IFF_NO_PI). This module turns them into
what `Endpoint.receive_bytes` takes (source, destination, TCP bytes), turns the
Endpoint's `Datagram`s into packets, answers ICMP / ICMPv6 echo requests (so `ping`
works) and parses ICMP errors about our segments (`IcmpError`; its `report()` is the
core's `IcmpReport` for `Endpoint.receive_icmp_error`). No I/O happens here: `IpLayer`
classifies bytes and counts, the event loop (tcpstack.net.loop) reads and writes.

What is rejected, each with a named counter in `IpLayer.stats`:

- IPv4: a header shorter than 20 bytes or not version 4 ("ipv4.short", "ip.bad_version"),
  IP options (IHL > 5, "ipv4.options": a TCP host need not act on any, and the
  Linux peer never sends them unasked), a bad header checksum ("ipv4.bad_checksum"), a total length
  that disagrees with the bytes read ("ipv4.bad_length"), and any fragment, first or
  later ("ipv4.fragment"): we never reassemble and always send with DF.
- IPv6: a short header ("ipv6.short"), a bad payload length ("ipv6.bad_length"), a
  Fragment header ("ipv6.fragment") or any other extension header
  ("ipv6.extension_header").
- Either: a destination that is not one of our addresses ("ip.not_for_us"), a protocol
  other than TCP and ICMP ("ip.protocol.<number>"), ICMP with a bad checksum
  ("icmp.bad_checksum"), ICMP types we do not handle ("icmp.type.<n>").
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from tcpstack.core.codec import encode_segment, internet_checksum, ones_sum
from tcpstack.core.icmp import IcmpKind, IcmpReport
from tcpstack.core.segment import Datagram

__all__ = [
    "ICMP",
    "ICMPV6",
    "TCP",
    "IcmpError",
    "IcmpReply",
    "IpLayer",
    "IpPacket",
    "PacketError",
    "TcpPayload",
    "decode_ip",
    "encode_ipv4",
    "encode_ipv6",
    "parse_icmp_error",
]

TCP = 6
ICMP = 1
ICMPV6 = 58
IPV6_FRAGMENT = 44
# IPv6 extension headers (RFC 8200 4, plus those IANA lists as extension headers).
IPV6_EXTENSION_HEADERS = frozenset({0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254})

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACHABLE = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
ICMPV6_DEST_UNREACHABLE = 1
ICMPV6_PACKET_TOO_BIG = 2
ICMPV6_TIME_EXCEEDED = 3
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129

IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
DEFAULT_TTL = 64
_FLAG_DF = 0x4000
_FLAG_MF = 0x2000
_OFFSET_MASK = 0x1FFF

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_ICMP_HEADER = struct.Struct("!BBH")

# Names of the ICMP destination-unreachable codes (RFC 792, RFC 1812 5.2.7.1).
ICMP_UNREACHABLE_CODES = {
    0: "net_unreachable",
    1: "host_unreachable",
    2: "protocol_unreachable",
    3: "port_unreachable",
    4: "fragmentation_needed",
    5: "source_route_failed",
    6: "net_unknown",
    7: "host_unknown",
    9: "net_prohibited",
    10: "host_prohibited",
    11: "net_tos_unreachable",
    12: "host_tos_unreachable",
    13: "admin_prohibited",
}
# What each ICMP destination-unreachable code tells TCP (core/icmp.py), grouped mostly
# as the errno Linux reports (icmp_err_convert): 0/6/11 net, 1/12 host unreachable;
# 9, 10 and 13-15 (RFC 1812 5.2.7.1: administratively prohibited, precedence) are hard
# errors there, as here. The errno follows the code itself (the report carries it:
# 7 EHOSTDOWN, 8 ENONET, 9 ENETUNREACH as in Linux, core/icmp.py). Differences: Linux
# also counts 6-8 as fatal, and its tcp_v4_err ends SYN_SENT on any of these errors,
# soft ones included; here soft errors (RFC 9293 MUST-56) only end an attempt at its
# SYN timeout.
_ICMP_UNREACHABLE_KINDS = {
    0: IcmpKind.NET_UNREACHABLE,
    1: IcmpKind.HOST_UNREACHABLE,
    2: IcmpKind.PROTOCOL_UNREACHABLE,
    3: IcmpKind.PORT_UNREACHABLE,
    4: IcmpKind.FRAGMENTATION_NEEDED,
    5: IcmpKind.SOURCE_ROUTE_FAILED,
    6: IcmpKind.NET_UNREACHABLE,
    7: IcmpKind.HOST_UNREACHABLE,
    8: IcmpKind.HOST_UNREACHABLE,
    9: IcmpKind.ADMIN_PROHIBITED,
    10: IcmpKind.ADMIN_PROHIBITED,
    11: IcmpKind.NET_UNREACHABLE,
    12: IcmpKind.HOST_UNREACHABLE,
    13: IcmpKind.ADMIN_PROHIBITED,
    14: IcmpKind.ADMIN_PROHIBITED,
    15: IcmpKind.ADMIN_PROHIBITED,
}
# ICMPv6 destination unreachable (RFC 4443 3.1), as Linux's icmpv6_err_convert groups it.
_ICMPV6_UNREACHABLE_KINDS = {
    0: IcmpKind.NET_UNREACHABLE,
    1: IcmpKind.ADMIN_PROHIBITED,
    2: IcmpKind.HOST_UNREACHABLE,
    3: IcmpKind.HOST_UNREACHABLE,
    4: IcmpKind.PORT_UNREACHABLE,
    5: IcmpKind.ADMIN_PROHIBITED,
    6: IcmpKind.ADMIN_PROHIBITED,
}

# ICMPv6 destination-unreachable codes (RFC 4443 3.1).
ICMPV6_UNREACHABLE_CODES = {
    0: "no_route",
    1: "admin_prohibited",
    2: "beyond_scope",
    3: "address_unreachable",
    4: "port_unreachable",
    5: "source_policy_failed",
    6: "reject_route",
}


class PacketError(Exception):
    """A packet we do not take; `reason` is its drop counter's name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class IpPacket:
    """A decoded IP packet: the addresses as text, the upper protocol and its bytes."""

    version: int
    src: str
    dst: str
    protocol: int
    payload: bytes
    ttl: int


@dataclass(frozen=True, slots=True)
class TcpPayload:
    """A TCP segment for an Endpoint (still encoded: the Endpoint decodes it)."""

    src: str
    dst: str
    data: bytes


@dataclass(frozen=True, slots=True)
class IcmpReply:
    """A packet to send back at once (an echo reply)."""

    packet: bytes


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP(v6) error about a TCP segment we sent.

    `local` / `remote` are the addresses and ports of the segment that caused it (the
    quoted packet's source is us), so `(local_ip, local_port, remote_ip, remote_port)`
    is an Endpoint's 4-tuple. `seq` is the quoted segment's sequence number; `mtu` the
    next-hop MTU of "fragmentation needed" / "packet too big", else None.
    """

    version: int
    reporter: str
    kind: str  # "unreachable", "packet_too_big", "time_exceeded"
    code: int
    code_name: str
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    seq: int
    mtu: int | None

    @property
    def four_tuple(self) -> tuple[str, int, str, int]:
        return (self.local_ip, self.local_port, self.remote_ip, self.remote_port)

    def report(self) -> IcmpReport | None:
        """What the core takes (`Endpoint.receive_icmp_error`), or None for a code TCP
        has no use for."""
        if self.kind == "unreachable":
            table = _ICMP_UNREACHABLE_KINDS if self.version == 4 else _ICMPV6_UNREACHABLE_KINDS
            kind = table.get(self.code)
        elif self.kind == "packet_too_big":
            kind = IcmpKind.FRAGMENTATION_NEEDED
        elif self.kind == "time_exceeded":
            kind = IcmpKind.TIME_EXCEEDED
        else:
            kind = None
        if kind is None:
            return None
        return IcmpReport(
            self.local_ip,
            self.local_port,
            self.remote_ip,
            self.remote_port,
            self.seq,
            kind,
            self.mtu,
            self.reporter,
            self.code if self.version == 4 and self.kind == "unreachable" else None,
        )

    @property
    def counter(self) -> str:
        """The stats key this error is counted under, e.g. icmp.unreachable.port_unreachable."""
        family = "icmp" if self.version == 4 else "icmpv6"
        return f"{family}.{self.kind}.{self.code_name}"


Inbound = TcpPayload | IcmpReply | IcmpError | None


# --------------------------------------------------------------------------- helpers


@lru_cache(maxsize=4096)
def _text(packed: bytes) -> str:
    """Packed address -> text, cached (few peers, every packet)."""
    if len(packed) == 4:
        return socket.inet_ntop(socket.AF_INET, packed)
    return socket.inet_ntop(socket.AF_INET6, packed)


@lru_cache(maxsize=4096)
def _packed(text: str) -> bytes:
    if ":" in text:
        return socket.inet_pton(socket.AF_INET6, text)
    return socket.inet_pton(socket.AF_INET, text)


@lru_cache(maxsize=1024)
def _ipv4_template_sum(src: bytes, dst: bytes, protocol: int, ttl: int) -> int:
    """Sum of the IPv4 header words that do not change between packets of a flow."""
    return (
        0x4500
        + ((ttl << 8) | protocol)
        + int.from_bytes(src[:2], "big")
        + int.from_bytes(src[2:], "big")
        + int.from_bytes(dst[:2], "big")
        + int.from_bytes(dst[2:], "big")
        + _FLAG_DF
    )


# --------------------------------------------------------------------------- encoding


class _Ident:
    """IPv4 Identification counter (RFC 6864: with DF set any value is fine)."""

    value = 0


def encode_ipv4(
    src: str, dst: str, protocol: int, payload: bytes, *, ttl: int = DEFAULT_TTL
) -> bytes:
    """An IPv4 packet (no options, DF set) carrying `payload`."""
    src_b = _packed(src)
    dst_b = _packed(dst)
    if len(src_b) != 4 or len(dst_b) != 4:
        raise ValueError(f"not IPv4 addresses: {src!r}, {dst!r}")
    total_length = IPV4_HEADER_LEN + len(payload)
    if total_length > 0xFFFF:
        raise ValueError(f"IPv4 packet of {total_length} bytes is too long")
    ident = _Ident.value
    _Ident.value = (ident + 1) & 0xFFFF
    total = _ipv4_template_sum(src_b, dst_b, protocol, ttl) + total_length + ident
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    checksum = ~total & 0xFFFF
    header = _IPV4.pack(
        0x45, 0, total_length, ident, _FLAG_DF, ttl, protocol, checksum, src_b, dst_b
    )
    return header + payload


def encode_ipv6(
    src: str, dst: str, next_header: int, payload: bytes, *, hop_limit: int = DEFAULT_TTL
) -> bytes:
    """An IPv6 packet (no extension headers) carrying `payload`."""
    src_b = _packed(src)
    dst_b = _packed(dst)
    if len(src_b) != 16 or len(dst_b) != 16:
        raise ValueError(f"not IPv6 addresses: {src!r}, {dst!r}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"IPv6 payload of {len(payload)} bytes needs a jumbogram")
    header = _IPV6.pack(0x60000000, len(payload), next_header, hop_limit, src_b, dst_b)
    return header + payload


def encode_datagram(datagram: Datagram) -> bytes:
    """The IP packet carrying an Endpoint's datagram (family chosen by the addresses)."""
    tcp = encode_segment(datagram.segment, datagram.src, datagram.dst)
    if ":" in datagram.src:
        return encode_ipv6(datagram.src, datagram.dst, TCP, tcp)
    return encode_ipv4(datagram.src, datagram.dst, TCP, tcp)


# --------------------------------------------------------------------------- decoding


def decode_ip(packet: bytes) -> IpPacket:
    """Parse one IPv4 or IPv6 packet; raises PacketError(reason) for what we reject."""
    if not packet:
        raise PacketError("ip.empty")
    version = packet[0] >> 4
    if version == 4:
        return _decode_ipv4(packet)
    if version == 6:
        return _decode_ipv6(packet)
    raise PacketError("ip.bad_version", f"version {version}")


def _decode_ipv4(packet: bytes) -> IpPacket:
    size = len(packet)
    if size < IPV4_HEADER_LEN:
        raise PacketError("ipv4.short", f"{size} bytes")
    vihl, _tos, total_length, _ident, frag, ttl, protocol, _csum, src, dst = _IPV4.unpack_from(
        packet
    )
    ihl = (vihl & 0x0F) * 4
    if ihl < IPV4_HEADER_LEN:
        raise PacketError("ipv4.bad_ihl", f"IHL {ihl} bytes")
    if ihl > IPV4_HEADER_LEN:
        raise PacketError("ipv4.options", f"{ihl - IPV4_HEADER_LEN} bytes of IP options")
    if ones_sum(packet[:IPV4_HEADER_LEN]) != 0:
        raise PacketError("ipv4.bad_checksum")
    if total_length < ihl or total_length > size:
        raise PacketError("ipv4.bad_length", f"total length {total_length}, {size} read")
    if frag & (_FLAG_MF | _OFFSET_MASK):
        raise PacketError("ipv4.fragment", f"flags/offset {frag:#06x}")
    payload = packet[ihl:total_length] if total_length != size else packet[ihl:]
    return IpPacket(4, _text(src), _text(dst), protocol, payload, ttl)


def _decode_ipv6(packet: bytes) -> IpPacket:
    size = len(packet)
    if size < IPV6_HEADER_LEN:
        raise PacketError("ipv6.short", f"{size} bytes")
    _vtf, payload_length, next_header, hop_limit, src, dst = _IPV6.unpack_from(packet)
    end = IPV6_HEADER_LEN + payload_length
    if end > size:
        raise PacketError("ipv6.bad_length", f"payload length {payload_length}, {size} read")
    if next_header == IPV6_FRAGMENT:
        raise PacketError("ipv6.fragment")
    if next_header in IPV6_EXTENSION_HEADERS:
        raise PacketError("ipv6.extension_header", f"next header {next_header}")
    payload = packet[IPV6_HEADER_LEN:end] if end != size else packet[IPV6_HEADER_LEN:]
    return IpPacket(6, _text(src), _text(dst), next_header, payload, hop_limit)


# --------------------------------------------------------------------------- ICMP


def _icmpv6_checksum(src: str, dst: str, message: bytes) -> int:
    """RFC 4443 2.3: the checksum over the IPv6 pseudo-header and the message."""
    pseudo = (
        ones_sum(_packed(src)) + ones_sum(_packed(dst)) + len(message) + ICMPV6 + ones_sum(message)
    )
    total = pseudo % 0xFFFF
    return ~total & 0xFFFF if total else 0


def _icmpv6_valid(src: str, dst: str, message: bytes) -> bool:
    pseudo = (
        ones_sum(_packed(src)) + ones_sum(_packed(dst)) + len(message) + ICMPV6 + ones_sum(message)
    )
    return pseudo % 0xFFFF == 0


def echo_reply(ip: IpPacket) -> bytes | None:
    """The echo reply answering an ICMP / ICMPv6 echo request, or None if it is not one."""
    message = ip.payload
    if len(message) < 8:
        return None
    if ip.version == 4 and message[0] == ICMP_ECHO_REQUEST:
        body = bytes((ICMP_ECHO_REPLY, 0, 0, 0)) + message[4:]
        checksum = internet_checksum(body)
        reply = body[:2] + struct.pack("!H", checksum) + body[4:]
        return encode_ipv4(ip.dst, ip.src, ICMP, reply)
    if ip.version == 6 and message[0] == ICMPV6_ECHO_REQUEST:
        body = bytes((ICMPV6_ECHO_REPLY, 0, 0, 0)) + message[4:]
        checksum = _icmpv6_checksum(ip.dst, ip.src, body)
        reply = body[:2] + struct.pack("!H", checksum) + body[4:]
        return encode_ipv6(ip.dst, ip.src, ICMPV6, reply)
    return None


def parse_icmp_error(ip: IpPacket) -> IcmpError:
    """Parse an ICMP destination unreachable / time exceeded / packet too big about TCP.

    The message quotes the offending IP header and at least 8 bytes of its payload
    (RFC 792; RFC 4443 asks for as much as fits): enough for the ports and the sequence
    number. Raises PacketError for anything else.
    """
    message = ip.payload
    if len(message) < 8:
        raise PacketError(f"{'icmp' if ip.version == 4 else 'icmpv6'}.short")
    kind_code = message[0]
    code = message[1]
    mtu: int | None = None
    if ip.version == 4:
        family = "icmp"
        if kind_code == ICMP_DEST_UNREACHABLE:
            kind = "unreachable"
            code_name = ICMP_UNREACHABLE_CODES.get(code, f"code_{code}")
            if code == 4:
                mtu = struct.unpack_from("!H", message, 6)[0]
        elif kind_code == ICMP_TIME_EXCEEDED:
            kind, code_name = "time_exceeded", f"code_{code}"
        else:
            raise PacketError(f"icmp.type.{kind_code}")
        quoted = message[8:]
        if len(quoted) < IPV4_HEADER_LEN or quoted[0] >> 4 != 4:
            raise PacketError("icmp.bad_quote", "quoted packet is not IPv4")
        ihl = (quoted[0] & 0x0F) * 4
        if ihl < IPV4_HEADER_LEN:
            # RFC 791: IHL >= 5. A shorter one would put the "TCP header" inside the
            # quoted IP header (Linux's icmp_unreach drops such a quote too).
            raise PacketError("icmp.bad_quote", f"quoted IPv4 header length {ihl}")
        protocol = quoted[9]
        inner_src, inner_dst = quoted[12:16], quoted[16:20]
        transport = quoted[ihl:]
    else:
        family = "icmpv6"
        if kind_code == ICMPV6_DEST_UNREACHABLE:
            kind = "unreachable"
            code_name = ICMPV6_UNREACHABLE_CODES.get(code, f"code_{code}")
        elif kind_code == ICMPV6_PACKET_TOO_BIG:
            kind, code_name = "packet_too_big", f"code_{code}"
            mtu = struct.unpack_from("!I", message, 4)[0]
        elif kind_code == ICMPV6_TIME_EXCEEDED:
            kind, code_name = "time_exceeded", f"code_{code}"
        else:
            raise PacketError(f"icmpv6.type.{kind_code}")
        quoted = message[8:]
        if len(quoted) < IPV6_HEADER_LEN or quoted[0] >> 4 != 6:
            raise PacketError("icmpv6.bad_quote", "quoted packet is not IPv6")
        ihl = IPV6_HEADER_LEN
        protocol = quoted[6]
        inner_src, inner_dst = quoted[8:24], quoted[24:40]
        transport = quoted[ihl:]
    if protocol != TCP:
        raise PacketError(f"{family}.{kind}.not_tcp", f"quoted protocol {protocol}")
    if len(transport) < 8:
        raise PacketError(f"{family}.bad_quote", "fewer than 8 quoted TCP bytes")
    src_port, dst_port, seq = struct.unpack_from("!HHI", transport)
    return IcmpError(
        version=ip.version,
        reporter=ip.src,
        kind=kind,
        code=code,
        code_name=code_name,
        local_ip=_text(inner_src),
        local_port=src_port,
        remote_ip=_text(inner_dst),
        remote_port=dst_port,
        seq=seq,
        mtu=mtu,
    )


# --------------------------------------------------------------------------- the layer


class IpLayer:
    """Classifies arriving packets for a set of local addresses and counts every outcome.

    `classify(packet)` returns a `TcpPayload` for an Endpoint, an `IcmpReply` to send
    back at once, an `IcmpError` to report, or None (dropped; the reason is counted in
    `stats` and kept in `last_drop`).
    """

    def __init__(self, addresses: set[str] | frozenset[str], *, answer_ping: bool = True) -> None:
        self.addresses = frozenset(addresses)
        self.answer_ping = answer_ping
        self.stats: Counter[str] = Counter()
        self.last_drop: PacketError | None = None

    def classify(self, packet: bytes) -> Inbound:
        try:
            ip = decode_ip(packet)
            if ip.dst not in self.addresses:
                raise PacketError("ip.not_for_us", ip.dst)
            if ip.protocol == TCP:
                self.stats["rx.tcp"] += 1
                return TcpPayload(ip.src, ip.dst, ip.payload)
            if ip.protocol == ICMP and ip.version == 4:
                return self._icmp(ip, "icmp")
            if ip.protocol == ICMPV6 and ip.version == 6:
                return self._icmp(ip, "icmpv6")
            raise PacketError(f"ip.protocol.{ip.protocol}")
        except PacketError as error:
            self.stats[error.reason] += 1
            self.last_drop = error
            return None

    def _icmp(self, ip: IpPacket, family: str) -> Inbound:
        message = ip.payload
        if len(message) < 8:
            raise PacketError(f"{family}.short")
        valid = (
            ones_sum(message) == 0 if ip.version == 4 else _icmpv6_valid(ip.src, ip.dst, message)
        )
        if not valid:
            raise PacketError(f"{family}.bad_checksum")
        kind = message[0]
        if kind in (ICMP_ECHO_REQUEST, ICMPV6_ECHO_REQUEST) and (
            (ip.version == 4) == (kind == ICMP_ECHO_REQUEST)
        ):
            self.stats[f"{family}.echo_request"] += 1
            if not self.answer_ping:
                return None
            reply = echo_reply(ip)
            return IcmpReply(reply) if reply is not None else None
        error = parse_icmp_error(ip)
        self.stats[error.counter] += 1
        return error

    def encode(self, datagram: Datagram) -> bytes:
        """The IP packet for one of our Endpoint's datagrams."""
        return encode_datagram(datagram)
