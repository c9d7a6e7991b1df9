"""Captures of a run as pcap and pcapng files, for tcpdump, tshark and Wireshark.

Every datagram a node put on the simulated network is one packet, at the time it left
the sender (so lost segments are in the capture too, as a capture at the sender would
have them). The TCP bytes are the ones the network carried in wire mode (or the
codec's encoding of the segment in object mode), wrapped in a minimal IPv4 header (an
IPv6 one for IPv6 addresses) with a correct header checksum. The link type is RAW: each
packet starts with its IP header.

The pcapng file also carries comments: on the section, what the run was and the state
changes of every connection; on each packet (EPB opt_comment), what happened to it on
the link (lost, dropped by a filter, duplicated, ...) and the state changes it caused
(the changes a received segment triggered are put on that segment, the changes caused by
a user call or a timer on the next segment their side sent).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tcpstack.core.codec import encode_segment, internet_checksum
from tcpstack.core.state import Trigger
from tcpstack.core.trace import TraceKind
from tcpstack.viz.ladder import format_time

if TYPE_CHECKING:
    from tcpstack.scenarios.story import Story
    from tcpstack.sim import NetRecord

LINKTYPE_RAW = 101  # raw IPv4/IPv6 (tcpdump.org link-layer header types)
SNAPLEN = 65535
PROTO_TCP = 6

_PCAP_HEADER = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")

# pcapng block types and option codes (pcapng specification, section 4 and 3.5).
_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_EPB = 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_END = 0
_OPT_COMMENT = 1
_SHB_USERAPPL = 4
_IF_NAME = 2
_IF_DESCRIPTION = 3
_IF_TSRESOL = 9


@dataclass(frozen=True, slots=True)
class CapturedPacket:
    """One packet of a capture: when it was seen (µs), its addresses, its TCP bytes."""

    time: int
    src: str
    dst: str
    tcp: bytes
    number: int = 0  # the network's packet number (used as the IPv4 identification)
    comments: tuple[str, ...] = ()

    def ip_bytes(self) -> bytes:
        return ip_packet(self.src, self.dst, self.tcp, ident=self.number)


def ipv4_header(src: str, dst: str, payload_length: int, *, ident: int = 0) -> bytes:
    """A 20-byte IPv4 header for a TCP payload, DF set, TTL 64, checksum filled in."""
    header = _IPV4.pack(
        0x45,  # version 4, header length 5 words
        0,  # DSCP/ECN
        20 + payload_length,
        ident & 0xFFFF,
        0x4000,  # don't fragment
        64,
        PROTO_TCP,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    checksum = internet_checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:]


def ipv6_header(src: str, dst: str, payload_length: int) -> bytes:
    """A 40-byte IPv6 header for a TCP payload, hop limit 64 (IPv6 has no checksum)."""
    return _IPV6.pack(
        6 << 28,
        payload_length,
        PROTO_TCP,
        64,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )


def ip_packet(src: str, dst: str, tcp: bytes, *, ident: int = 0) -> bytes:
    """`tcp` wrapped in an IP header (IPv6 when the addresses contain ':')."""
    if ":" in src:
        return ipv6_header(src, dst, len(tcp)) + tcp
    return ipv4_header(src, dst, len(tcp), ident=ident) + tcp


Encoder = Callable[..., bytes]


def packets_from_records(
    records: Iterable[NetRecord], *, encoder: Encoder = encode_segment
) -> list[CapturedPacket]:
    """One packet per datagram sent (each "sent" record), in order, without comments."""
    from tcpstack.sim import What

    packets: list[CapturedPacket] = []
    for record in records:
        if record.what is not What.SENT:
            continue
        datagram = record.datagram
        data = record.data
        if data is None:
            data = encoder(datagram.segment, datagram.src, datagram.dst)
        packets.append(CapturedPacket(record.time, datagram.src, datagram.dst, data, record.packet))
    return packets


# What to say about a packet for each thing the network reported about it.
_FATES = {
    "lost": "lost on the link",
    "filtered": "dropped by the scenario's filter (never arrived)",
    "queue_drop": "dropped: the link's queue was full",
    "corrupted": "corrupted on the link (a bit flipped)",
    "duplicated": "duplicated by the link",
    "reordered": "delayed by the link (reordered)",
    "held": "held by a filter",
    "released": "released by the filter",
    "no_route": "no route to its destination",
}


def _trigger_text(name: str) -> str:
    try:
        return Trigger[name].value
    except KeyError:
        return name


def capture_story(story: Story, *, title: str | None = None) -> tuple[list[CapturedPacket], str]:
    """The packets of a finished Story with their comments, and a section comment."""
    from tcpstack.sim import What
    from tcpstack.viz.ladder import LEFT, RIGHT
    from tcpstack.viz.timeline import SIDE_NAMES

    records = story.net_records
    positions = story.net_positions
    server_address = story.server.address
    base = packets_from_records(records)
    index_of = {packet.number: i for i, packet in enumerate(base)}
    notes: list[list[str]] = [[] for _ in base]

    def side_sent(record: NetRecord) -> int:
        return RIGHT if record.src == server_address else LEFT

    # What the link did with each packet.
    for record in records:
        i = index_of.get(record.packet)
        if i is None:
            continue
        if record.what is What.DELIVERED:
            text = f"arrived at {format_time(record.time).strip()}"
            if text not in notes[i]:
                notes[i].append(text)
        elif record.what is not What.SENT:
            notes[i].append(_FATES.get(str(record.what), str(record.what)))

    # State changes: on the segment that caused them, or on the next one their side sent.
    trace = story.trace.records
    leftovers: list[str] = []
    for index, entry in enumerate(trace):
        if entry.kind != TraceKind.STATE:
            continue
        side = story.side_of(entry.conn)
        trigger = str(entry.data["trigger"])
        who = f"{SIDE_NAMES[side]} {entry.conn.split('>')[0]}"
        change = f"{entry.data['from']} -> {entry.data['to']} ({_trigger_text(trigger)})"
        target: int | None = None
        # A received segment's doing (a listener's child is opened by the SYN it got).
        if trigger.startswith("RCV_") or trigger == "OPEN_PASSIVE":
            for net, position in zip(reversed(records), reversed(positions), strict=True):
                if (
                    position <= index
                    and net.what is What.DELIVERED
                    and 1 - side_sent(net) == side
                    and net.time == entry.time
                ):
                    target = index_of.get(net.packet)
                    break
            if target is not None:
                notes[target].append(f"{who}: {change} on receiving this")
                continue
        # Otherwise: what its side sent at that instant, or else the next packet at all.
        first_after: int | None = None
        for net, position in zip(records, positions, strict=True):
            if position <= index or net.what is not What.SENT:
                continue
            candidate = index_of.get(net.packet)
            if candidate is None:
                continue
            if first_after is None:
                first_after = candidate
            if net.time != entry.time:
                break
            if side_sent(net) == side:
                target = candidate
                break
        if target is None:
            target = first_after
        at = format_time(entry.time).strip()
        if target is None:
            leftovers.append(f"later, at {at}, {who}: {change}")
        elif base[target].time == entry.time:
            notes[target].append(f"{who}: {change}, then sent this")
        else:
            notes[target].append(f"earlier, at {at}, {who}: {change}")
    if base and leftovers:
        notes[-1].extend(leftovers)

    packets = [
        CapturedPacket(p.time, p.src, p.dst, p.tcp, p.number, tuple(n))
        for p, n in zip(base, notes, strict=True)
    ]
    lines = [title or "tcpstack simulated run", "state changes:"]
    for entry in trace:
        if entry.kind == TraceKind.STATE:
            lines.append(
                f"  {format_time(entry.time).strip()} {entry.conn}: {entry.data['from']} -> "
                f"{entry.data['to']} ({_trigger_text(str(entry.data['trigger']))})"
            )
    return packets, "\n".join(lines)


# --------------------------------------------------------------------------- pcap


def pcap_bytes(packets: Sequence[CapturedPacket]) -> bytes:
    """A classic pcap file (microsecond timestamps, little-endian, LINKTYPE_RAW)."""
    out = [_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW)]
    for packet in packets:
        data = packet.ip_bytes()
        seconds, micros = divmod(packet.time, 1_000_000)
        out.append(_PCAP_RECORD.pack(seconds, micros, len(data), len(data)))
        out.append(data)
    return b"".join(out)


def write_pcap(path: str | Path, packets: Sequence[CapturedPacket]) -> Path:
    target = Path(path)
    target.write_bytes(pcap_bytes(packets))
    return target


# --------------------------------------------------------------------------- pcapng


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def _options(pairs: Iterable[tuple[int, bytes]]) -> bytes:
    body = b"".join(_option(code, value) for code, value in pairs)
    return body + struct.pack("<HH", _OPT_END, 0) if body else b""


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def pcapng_bytes(
    packets: Sequence[CapturedPacket],
    *,
    section_comment: str | None = None,
    interface_name: str = "sim0",
    interface_description: str = "tcpstack simulated link",
) -> bytes:
    """A pcapng file: one section, one RAW interface with microsecond timestamps, one
    Enhanced Packet Block per packet with its comments as opt_comment options."""
    shb_options: list[tuple[int, bytes]] = []
    if section_comment:
        shb_options.append((_OPT_COMMENT, section_comment.encode()))
    shb_options.append((_SHB_USERAPPL, b"tcpstack"))
    shb = _block(
        _SHB,
        struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + _options(shb_options),
    )
    idb = _block(
        _IDB,
        struct.pack("<HHI", LINKTYPE_RAW, 0, SNAPLEN)
        + _options(
            [
                (_IF_NAME, interface_name.encode()),
                (_IF_DESCRIPTION, interface_description.encode()),
                (_IF_TSRESOL, bytes([6])),
            ]
        ),
    )
    blocks = [shb, idb]
    for packet in packets:
        data = packet.ip_bytes()
        stamp = packet.time  # µs, the interface's resolution
        body = struct.pack(
            "<IIIII", 0, (stamp >> 32) & 0xFFFFFFFF, stamp & 0xFFFFFFFF, len(data), len(data)
        )
        body += _pad4(data)
        body += _options((_OPT_COMMENT, comment.encode()) for comment in packet.comments)
        blocks.append(_block(_EPB, body))
    return b"".join(blocks)


def write_pcapng(
    path: str | Path, packets: Sequence[CapturedPacket], *, section_comment: str | None = None
) -> Path:
    target = Path(path)
    target.write_bytes(pcapng_bytes(packets, section_comment=section_comment))
    return target


__all__ = [
    "LINKTYPE_RAW",
    "CapturedPacket",
    "capture_story",
    "ip_packet",
    "ipv4_header",
    "ipv6_header",
    "packets_from_records",
    "pcap_bytes",
    "pcapng_bytes",
    "write_pcap",
    "write_pcapng",
]
