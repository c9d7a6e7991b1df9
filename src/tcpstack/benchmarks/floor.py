"""Benchmark 1, the floor: the least work any Python TCP must do per received segment.

Per segment, in this interpreter, with nothing but the standard library:

1. decode the IPv4 header (20 bytes, no IP options), the TCP header (20 bytes) and the
   RFC 7323 timestamp option in its usual <NOP,NOP,TS> layout (12 bytes) with one
   `struct` unpack;
2. verify the TCP checksum the fastest way the stdlib allows: one `int.from_bytes` over
   the addresses and the whole TCP segment, reduced modulo 0xFFFF (2**16 = 1 mod 0xFFFF,
   so that is the RFC 1071 one's complement sum; see the architecture page). The bytes
   are read little-endian, which skips a byte reversal: the one's complement sum is
   byte-order independent (RFC 1071 2(B)), so a correct checksum still sums to zero,
   provided the pseudo-header's protocol and length words are byte-swapped too;
3. look the connection up in a dict by its 4-tuple;
4. append the payload (1,460 bytes) to the connection's receive bytearray (an
   "application" empties it every MiB);
5. encode a 40-byte IPv4 + TCP ACK with one `struct` pack: the TCP checksum computed
   from the header's 16-bit fields (nothing to sum but ints), the IP header checksum
   computed once per connection (its fields do not change between ACKs).

Not included, because a stack can avoid it or it is not per segment: verifying the IP
header checksum (a TUN device hands over packets the local kernel built), the sequence
check and reassembly, timers, and the system call that writes the ACK.

The packets are built with tcpstack's own codec (`encode_segment`) plus a plain IPv4
header, so the floor also cross-checks that the little-endian verification accepts what
the core sends.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tcpstack.benchmarks._report import MB, Figure, Table, fmt, ratio_figure, timed
from tcpstack.core.codec import encode_segment
from tcpstack.core.segment import Flag, Options, Segment

__all__ = [
    "FLOOR_PAYLOAD",
    "FloorConnection",
    "FloorResult",
    "build_packets",
    "floor_loop",
    "floor_table",
    "measure_checksums",
    "measure_floor_once",
    "run_floor",
]

FLOOR_PAYLOAD = 1460
"""Payload bytes per segment: MSS 1,460 (a 1,500-byte Ethernet MTU minus 40)."""

SRC_IP = "10.0.0.1"
DST_IP = "10.0.0.2"
SRC_PORT = 40000
DST_PORT = 80
_PACKETS = 64  # distinct packets cycled through (consecutive sequence numbers)
_RECEIVE_BUFFER = 1 << 20  # the "application" empties the buffer at this size

# IPv4 header (no options) + TCP header + the <NOP,NOP,TS> option: 52 bytes, one unpack.
# version/IHL, TOS, total length, id, flags/fragment, TTL, protocol, header checksum,
# src, dst | ports, seq, ack, data offset, flags, window, checksum, urgent | option kinds
# (NOP, NOP, TS, 10 as one word), TSval, TSecr.
_DECODE = struct.Struct("!BBHHHBBHIIHHIIBBHHHIII")
# The ACK: IPv4 header + TCP header, no options: 40 bytes, one pack.
_ACK = struct.Struct("!BBHHHBBHIIHHIIBBHHH")
_IPV4_HEADER = struct.Struct("!BBHHHBBHII")
_TS_KINDS = 0x0101080A  # NOP, NOP, kind 8, length 10
_DATA_OFFSET_TS = 0x80  # 8 words = 20 + 12 bytes
_IPV4_NO_OPTIONS = 0x45
_PROTO_TCP = 6
_DONT_FRAGMENT = 0x4000
_TTL = 64
_ACK_DATA_OFFSET = 0x50  # 5 words: no options


def _checksum_of_sum(total: int) -> int:
    """RFC 1071: the complement of a one's complement sum given modulo 0xFFFF."""
    return 0xFFFF - (total % 0xFFFF or 0xFFFF)


def _ip_to_int(text: str) -> int:
    return int.from_bytes(bytes(int(part) for part in text.split(".")), "big")


def ipv4_header(src: str, dst: str, total_length: int, ident: int = 0) -> bytes:
    """A 20-byte IPv4 header (DF set, TTL 64, protocol TCP) with its checksum."""
    fields = (
        _IPV4_NO_OPTIONS,
        0,
        total_length,
        ident,
        _DONT_FRAGMENT,
        _TTL,
        _PROTO_TCP,
    )
    src_int, dst_int = _ip_to_int(src), _ip_to_int(dst)
    blank = _IPV4_HEADER.pack(*fields, 0, src_int, dst_int)
    checksum = _checksum_of_sum(int.from_bytes(blank, "big"))
    return _IPV4_HEADER.pack(*fields, checksum, src_int, dst_int)


def build_packets(count: int = _PACKETS, payload_size: int = FLOOR_PAYLOAD) -> list[bytes]:
    """`count` IPv4 packets of one flow, consecutive sequence numbers, valid checksums.

    Each: 20-byte IPv4 header, 20-byte TCP header, <NOP,NOP,TS> (12 bytes), payload.
    """
    payload = (bytes(range(256)) * (payload_size // 256 + 1))[:payload_size]
    packets = []
    for index in range(count):
        segment = Segment(
            SRC_PORT,
            DST_PORT,
            seq=(1_000 + index * payload_size) & 0xFFFFFFFF,
            ack=5_000,
            flags=Flag.ACK | Flag.PSH,
            window=65535,
            options=Options(timestamp=(100 + index, 7)),
            payload=payload,
        )
        tcp = encode_segment(segment, SRC_IP, DST_IP)
        packets.append(ipv4_header(SRC_IP, DST_IP, 20 + len(tcp), index) + tcp)
    return packets


class FloorConnection:
    """The per-connection state the floor touches: a receive buffer and a few numbers."""

    __slots__ = (
        "ack_sum",
        "ip_checksum",
        "rcv_nxt",
        "receive_buffer",
        "snd_nxt",
        "ts_recent",
    )

    def __init__(self, local: tuple[str, int], remote: tuple[str, int]) -> None:
        self.receive_buffer = bytearray()
        self.rcv_nxt = 0
        self.snd_nxt = 5_000
        self.ts_recent = 0
        local_ip, remote_ip = _ip_to_int(local[0]), _ip_to_int(remote[0])
        # The ACK's IP header never changes (id 0 with DF, RFC 6864): checksum it once.
        header = _IPV4_HEADER.unpack(ipv4_header(local[0], remote[0], 40))
        self.ip_checksum: int = header[7]
        # The constant part of the ACK's TCP checksum: pseudo-header (addresses,
        # protocol, TCP length 20), ports, data offset and flags.
        self.ack_sum = (
            (local_ip >> 16)
            + (local_ip & 0xFFFF)
            + (remote_ip >> 16)
            + (remote_ip & 0xFFFF)
            + _PROTO_TCP
            + 20
            + local[1]
            + remote[1]
            + ((_ACK_DATA_OFFSET << 8) | Flag.ACK)
        )


def floor_loop(
    packets: Sequence[bytes],
    count: int,
    connections: dict[tuple[int, int, int, int], FloorConnection],
) -> tuple[int, bytes]:
    """Receive `count` segments (cycling through `packets`) and build an ACK for each.

    Returns (ACKs built, the last ACK). Raises ValueError for a packet the fast path
    does not take (a bad checksum, an unknown connection, another layout): the benchmark
    packets never are one.
    """
    unpack = _DECODE.unpack_from
    pack = _ACK.pack
    from_bytes = int.from_bytes
    lookup = connections.get
    n = len(packets)
    acks = 0
    ack_packet = b""
    for index in range(count):
        packet = packets[index % n]
        (
            version_ihl,
            _tos,
            total_length,
            _ident,
            _fragment,
            _ttl,
            protocol,
            _ip_checksum,
            src,
            dst,
            src_port,
            dst_port,
            seq,
            _ack,
            offset,
            _flags,
            _window,
            _checksum,
            _urgent,
            kinds,
            ts_val,
            _ts_ecr,
        ) = unpack(packet)
        if (
            version_ihl != _IPV4_NO_OPTIONS
            or protocol != _PROTO_TCP
            or offset & 0xF0 != _DATA_OFFSET_TS
            or kinds != _TS_KINDS
            or total_length > len(packet)
        ):
            raise ValueError("not a <NOP,NOP,TS> TCP/IPv4 segment")
        tcp_length = total_length - 20
        # Addresses + TCP segment read little-endian, so the pseudo-header's protocol
        # (0x0006) and length words are added byte-swapped.
        if (
            from_bytes(packet[12:total_length], "little")
            + 0x0600
            + ((tcp_length & 0xFF) << 8)
            + (tcp_length >> 8)
        ) % 0xFFFF:
            raise ValueError("bad TCP checksum")
        conn = lookup((src, src_port, dst, dst_port))
        if conn is None:
            raise ValueError("no connection")
        buffer = conn.receive_buffer
        buffer += packet[52:total_length]
        if len(buffer) >= _RECEIVE_BUFFER:
            buffer.clear()
        conn.ts_recent = ts_val
        ack = (seq + total_length - 52) & 0xFFFFFFFF
        conn.rcv_nxt = ack
        window = min(_RECEIVE_BUFFER - len(buffer), 0xFFFF)
        snd = conn.snd_nxt
        total = conn.ack_sum + (snd >> 16) + (snd & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF) + window
        ack_packet = pack(
            _IPV4_NO_OPTIONS,
            0,
            40,
            0,
            _DONT_FRAGMENT,
            _TTL,
            _PROTO_TCP,
            conn.ip_checksum,
            dst,
            src,
            dst_port,
            src_port,
            snd,
            ack,
            _ACK_DATA_OFFSET,
            Flag.ACK,
            window,
            0xFFFF - (total % 0xFFFF or 0xFFFF),
            0,
        )
        acks += 1
    return acks, ack_packet


def floor_table() -> dict[tuple[int, int, int, int], FloorConnection]:
    """The demux table of the floor: the benchmark's flow plus some other connections."""
    table: dict[tuple[int, int, int, int], FloorConnection] = {}
    src, dst = _ip_to_int(SRC_IP), _ip_to_int(DST_IP)
    for port in range(SRC_PORT - 50, SRC_PORT + 50):
        table[(src, port, dst, DST_PORT)] = FloorConnection((DST_IP, DST_PORT), (SRC_IP, port))
    return table


def measure_floor_once(segments: int, packets: Sequence[bytes] | None = None) -> float:
    """One repetition of the floor: segments per second."""
    if packets is None:
        packets = build_packets()
    table = floor_table()
    _, seconds = timed(lambda: floor_loop(packets, segments, table))
    return segments / seconds


def _checksum_loop(data: bytes, count: int, byteorder: str) -> int:
    from_bytes = int.from_bytes
    total = 0
    if byteorder == "big":
        for _ in range(count):
            total += from_bytes(data, "big") % 0xFFFF
    else:
        for _ in range(count):
            total += from_bytes(data, "little") % 0xFFFF
    return total


def measure_checksums(count: int) -> tuple[float, float]:
    """Microseconds per checksum sum of one floor segment (addresses + TCP segment),
    big-endian then little-endian, measured back to back."""
    packet = build_packets(1)[0]
    data = packet[12:]
    _, big = timed(lambda: _checksum_loop(data, count, "big"))
    _, little = timed(lambda: _checksum_loop(data, count, "little"))
    return big / count * 1e6, little / count * 1e6


@dataclass(frozen=True)
class FloorResult:
    segments: int
    repetitions: int
    segments_per_s: Figure
    checksum_big_us: Figure
    checksum_little_us: Figure
    little_vs_big: Figure

    @property
    def mb_per_s(self) -> Figure:
        return Figure.of([s * FLOOR_PAYLOAD / MB for s in self.segments_per_s.samples])

    @property
    def us_per_segment(self) -> Figure:
        return Figure.of([1e6 / s for s in self.segments_per_s.samples])

    def to_json(self) -> dict[str, Any]:
        return {
            "segments": self.segments,
            "repetitions": self.repetitions,
            "payload_bytes": FLOOR_PAYLOAD,
            "segments_per_s": self.segments_per_s.to_json(),
            "mb_per_s": self.mb_per_s.to_json(),
            "us_per_segment": self.us_per_segment.to_json(),
            "checksum_only_us": {
                "big_endian": self.checksum_big_us.to_json(),
                "little_endian": self.checksum_little_us.to_json(),
                "little_over_big_time": self.little_vs_big.to_json(),
            },
        }

    def table(self) -> Table:
        table = Table(
            f"1. Floor: the least per-segment work of a Python TCP ({FLOOR_PAYLOAD}-byte "
            "payload, one direction)",
            ["figure", "median", "min", "max"],
        )

        def row(name: str, figure: Figure) -> None:
            table.add(name, fmt(figure.median), fmt(figure.low), fmt(figure.high))

        row("segments/s", self.segments_per_s)
        row("MB/s (payload)", self.mb_per_s)
        row("us/segment", self.us_per_segment)
        row("checksum sum only, big-endian, us", self.checksum_big_us)
        row("checksum sum only, little-endian, us", self.checksum_little_us)
        row("little-endian time / big-endian time", self.little_vs_big)
        table.notes += [
            "per segment: one struct unpack of IPv4+TCP+<NOP,NOP,TS> (52 bytes), TCP "
            "checksum verified with one int.from_bytes(..., 'little') % 0xFFFF, a dict "
            "lookup by 4-tuple, bytearray append, one struct pack of a 40-byte ACK",
            f"median of {self.repetitions} x {self.segments:,} segments; MB = 10**6 bytes",
        ]
        return table


def run_floor(segments: int, repetitions: int, checksum_count: int) -> FloorResult:
    packets = build_packets()
    floor_loop(packets, min(segments, 1_000), floor_table())  # warm-up
    rates: list[float] = []
    bigs: list[float] = []
    littles: list[float] = []
    for _ in range(repetitions):
        rates.append(measure_floor_once(segments, packets))
        big, little = measure_checksums(checksum_count)
        bigs.append(big)
        littles.append(little)
    return FloorResult(
        segments=segments,
        repetitions=repetitions,
        segments_per_s=Figure.of(rates),
        checksum_big_us=Figure.of(bigs),
        checksum_little_us=Figure.of(littles),
        little_vs_big=ratio_figure(littles, bigs),
    )
