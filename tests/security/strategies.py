"""Hypothesis strategies for fuzzing an Endpoint (tests/security/test_fuzz_endpoint.py).

Two kinds of peer input:

- arbitrary bytes, as a TCP segment (raw, or with its checksum fixed and its ports aimed
  at the tracked connection so that it gets past the checksum and the demultiplexer) or
  as an IP packet (through the TUN driver's IpLayer, raw or inside a valid IPv4 header);
- well-formed but weird segments: every flag combination, sequence and acknowledgment
  numbers at and around the window edges and the send variables or anywhere, odd option
  lists, zero and huge windows, payloads just below, at and above the window, urgent
  pointers past the data, port 0, other ports and addresses; sent as a decoded segment
  or encoded to wire bytes.

Interleaved with them: the clock moving (timers firing) and user calls.

A Case is decoded from a byte string (`decode_case`): Hypothesis draws and shrinks the
bytes, atheris mutates them (fuzz/fuzz_endpoint.py). Numbers that depend on the
connection's variables (RCV.NXT, SND.UNA, ...) are decoded as (anchor, offset) and
resolved when the step is fed (`feed_step`), so "at the right edge of the window" means
that whatever the connection's state.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st

from tcpstack.core.codec import encode_segment, tcp_checksum
from tcpstack.core.segment import Flag, Options, Segment
from tcpstack.core.seq import MASK, seq_add, seq_sub
from tcpstack.net.packet import IpLayer, TcpPayload, encode_ipv4
from tests.security.endpoint_rig import ALL_STATES, HOST, ISS, PEER, Rig, pattern

# TCPSTACK_FUZZ_SEED=S explores another (still reproducible) stream of examples.
FUZZ_SEED = os.environ.get("TCPSTACK_FUZZ_SEED")


def fuzz_profile(total: int) -> Callable[[Any], Any]:
    """Deterministic settings with `total` examples split across the eleven states."""
    configured = settings(
        max_examples=math.ceil(total / len(ALL_STATES)),
        derandomize=FUZZ_SEED is None,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    if FUZZ_SEED is None:
        return configured
    chosen = int(FUZZ_SEED)
    return lambda test: seed(chosen)(configured(test))


# Anchors for a sequence number (peer side): RCV.NXT, the right edge RCV.NXT + RCV.WND,
# IRS, the peer script's next sequence number, 0; None = an absolute number.
SEQ_ANCHORS: tuple[str | None, ...] = (None, "rcv_nxt", "right_edge", "irs", "peer_nxt", "zero")
# Anchors for an acknowledgment number: SND.NXT, SND.UNA, SND.MAX, ISS and the oldest
# acceptable ACK SND.UNA - MAX.SND.WND (RFC 5961 5.2).
ACK_ANCHORS: tuple[str | None, ...] = (None, "snd_nxt", "snd_una", "snd_max", "iss", "oldest")
# Offsets that sit on the sequence-space edges (2**31 is "half the space away").
FAR_OFFSETS = (2**31 - 1, 2**31, -(2**31), 2**32 - 1, 65535, 65536, -65535, -65536)
# Option kinds the codec decodes itself; anything else is an "unknown" option.
KNOWN_OPTION_KINDS = frozenset({0, 1, 2, 3, 4, 5, 8})
ADDRESSINGS = (
    "tuple",
    "tuple",
    "tuple",
    "tuple",
    "src_port_zero",
    "dst_port_zero",
    "other_src_port",
    "other_dst_port",
    "other_peer",
    "wrong_dst",
    "multicast_src",
)
# How a segment travels: decoded (receive_datagram), encoded (receive_bytes), or encoded
# with one byte flipped (a bad checksum, or damage the checksum misses).
TRANSPORTS = ("datagram", "datagram", "bytes", "flipped")
ADVANCES = (0, 1, 1_000, 40_000, 200_000, 499_999, 500_000, 1_500_000, 70_000_000)
APP_ACTIONS = ("send", "send", "read", "close", "shutdown", "abort")
APP_SIZES = (0, 1, 100, 1460, 5000, 20_000)
MAX_STEPS = 8
_F = Flag
USUAL_FLAGS = (
    _F.ACK,
    _F.ACK,
    _F.ACK | _F.PSH,
    _F.ACK | _F.PSH,
    _F.FIN | _F.ACK,
    _F.RST,
    _F.RST | _F.ACK,
    _F.SYN,
    _F.SYN | _F.ACK,
    _F.FIN | _F.ACK | _F.PSH,
    _F.ACK | _F.URG,
    _F.ACK | _F.ECE | _F.CWR,
)

Number = tuple[str | None, int]  # (anchor or None, offset or absolute value)


@dataclass(frozen=True)
class OptionSpec:
    """Options for a weird segment. `timestamp`: None = no option, ("peer", d) = the
    peer's clock + d with TSecr = our last TSval (PAWS when d < 0), ("any", (v, e))."""

    mss: int | None
    window_scale: int | None
    sack_permitted: bool
    sack_blocks: tuple[tuple[Number, Number], ...]
    timestamp: tuple[str, int] | tuple[str, tuple[int, int]] | None
    unknown: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True)
class WeirdSegment:
    """A well-formed segment with fields drawn to be odd. `options` None = the rig's
    usual options (timestamps when on); `payload` = ("abs", n) or ("window", d) for
    RCV.WND + d bytes; the text is the peer's pattern at its sequence number."""

    flags: int
    seq: Number
    ack: Number
    window: int
    payload: tuple[str, int]
    urgent: int
    options: OptionSpec | None
    addressing: str
    transport: str
    flip_at: int


@dataclass(frozen=True)
class RawTcp:
    """Arbitrary bytes as a TCP segment; `aim` puts the tracked 4-tuple's ports in,
    `fix_checksum` makes the checksum right so decoding goes on past it."""

    data: bytes
    aim: bool
    fix_checksum: bool


@dataclass(frozen=True)
class RawIp:
    """Arbitrary bytes as an IP packet (IpLayer.classify), raw or as the payload of a
    valid IPv4 header from the peer to us with protocol `protocol`."""

    data: bytes
    wrap: bool
    protocol: int


@dataclass(frozen=True)
class Advance:
    micros: int
    run_timers: bool


@dataclass(frozen=True)
class AppCall:
    action: str
    size: int


Step = WeirdSegment | RawTcp | RawIp | Advance | AppCall


@dataclass(frozen=True)
class Case:
    config_name: str
    cookies: bool
    preload: bool
    steps: tuple[Step, ...]


class Reader:
    """Turns bytes into choices (like atheris' FuzzedDataProvider): each choice takes
    the next byte(s); past the end every byte reads as 0, the simplest choice."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk + bytes(size - len(chunk))

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def flag(self) -> bool:
        return bool(self.u8() & 1)

    def pick(self, choices: tuple[Any, ...]) -> Any:
        return choices[self.u8() % len(choices)]

    def number(self, anchors: tuple[str | None, ...]) -> Number:
        anchor = self.pick(anchors)
        if anchor is None:
            return (None, self.u32())
        mode = self.u8() % 5
        if mode <= 1:
            return (anchor, 0)  # the edge itself
        if mode == 2:
            return (anchor, self.u8() % 5 - 2)  # next to it
        if mode == 3:
            return (anchor, self.pick(FAR_OFFSETS))
        return (anchor, self.u16() * 2 - 65536)  # within about one window either side

    def u16_edgy(self) -> int:
        mode = self.u8() % 4
        return (0, 1, 65535)[mode] if mode < 3 else self.u16()


def _options(reader: Reader) -> OptionSpec | None:
    if reader.u8() % 3 == 0:
        return None
    mss = reader.u16_edgy() if reader.flag() else None
    window_scale = reader.u8() if reader.flag() else None
    sack_permitted = reader.flag()
    blocks = tuple(
        (reader.number(ACK_ANCHORS), reader.number(ACK_ANCHORS)) for _ in range(reader.u8() % 5)
    )
    timestamp: tuple[str, int] | tuple[str, tuple[int, int]] | None
    mode = reader.u8() % 3
    if mode == 0:
        timestamp = None
    elif mode == 1:
        timestamp = ("peer", reader.u8() % 7 - 3)
    else:
        timestamp = ("any", (reader.u32(), reader.u32()))
    unknown = []
    for _ in range(reader.u8() % 3):
        kind = reader.u8()
        if kind in KNOWN_OPTION_KINDS:
            kind = 254  # RFC 6994 experimental
        unknown.append((kind, reader.take(reader.u8() % 11)))
    return OptionSpec(mss, window_scale, sack_permitted, blocks, timestamp, tuple(unknown))


def _weird_segment(reader: Reader) -> WeirdSegment:
    # Half the time a combination a real peer sends (so that segments get past the
    # first checks and move the connection), otherwise any of the 256.
    usual = reader.flag()
    flags = reader.pick(USUAL_FLAGS) if usual else reader.u8()
    seq = reader.number(SEQ_ANCHORS)
    ack = reader.number(ACK_ANCHORS)
    window = reader.u16_edgy()
    mode = reader.u8() % 4
    payload: tuple[str, int]
    if mode == 0:
        payload = ("abs", 0)
    elif mode == 1:
        payload = ("abs", 1 + reader.u8() % 16)
    elif mode == 2:
        payload = ("window", reader.u8() % 5 - 2)  # just below, at, just above RCV.WND
    else:
        payload = ("abs", reader.u16() % 9001)
    urgent = reader.u16_edgy()
    options = _options(reader)
    return WeirdSegment(
        flags,
        seq,
        ack,
        window,
        payload,
        urgent,
        options,
        reader.pick(ADDRESSINGS),
        reader.pick(TRANSPORTS),
        reader.u16(),
    )


def decode_case(data: bytes) -> Case:
    """The Case that `data` describes: a configuration, then up to MAX_STEPS steps."""
    reader = Reader(data)
    head = reader.u8()
    config_name = "plain" if head & 1 else "full"
    cookies = bool(head & 2)
    preload = bool(head & 4)
    steps: list[Step] = []
    while not reader.exhausted and len(steps) < MAX_STEPS:
        kind = reader.u8() % 7
        step: Step
        if kind <= 2:
            step = _weird_segment(reader)
        elif kind == 3:
            step = RawTcp(reader.take(reader.u8() % 81), reader.flag(), reader.flag())
        elif kind == 4:
            step = RawIp(reader.take(reader.u8() % 101), reader.flag(), reader.pick((6, 6, 1, 17)))
        elif kind == 5:
            step = Advance(reader.pick(ADVANCES), reader.flag())
        else:
            step = AppCall(reader.pick(APP_ACTIONS), reader.pick(APP_SIZES))
        steps.append(step)
    return Case(config_name, cookies, preload, tuple(steps))


# Hypothesis draws the bytes (cheap: one draw per example, where structured strategies
# cost ~90 draws and made generation five times slower than running the example) and
# shrinks them; the printed example is the decoded Case. The same decoder turns
# atheris' inputs into Cases (fuzz/fuzz_endpoint.py).
CASE: st.SearchStrategy[Case] = st.binary(min_size=1, max_size=600).map(decode_case)


# ---------------------------------------------------------------------- resolving


def _seq_anchor(rig: Rig, name: str | None) -> int:
    conn = rig.tracked()
    if name is None or name == "zero":
        return 0
    if name == "peer_nxt" or conn is None:
        return rig.peer_nxt
    if name == "rcv_nxt":
        return conn.rcv_nxt
    if name == "right_edge":
        return seq_add(conn.rcv_nxt, conn.rcv_wnd)
    return conn.irs


def _ack_anchor(rig: Rig, name: str | None) -> int:
    conn = rig.tracked()
    if name is None:
        return 0
    if conn is None:
        return seq_add(ISS, 1)
    if name == "snd_nxt":
        return conn.snd_nxt
    if name == "snd_una":
        return conn.snd_una
    if name == "snd_max":
        return conn.snd_max
    if name == "iss":
        return conn.iss
    return seq_sub(conn.snd_una, conn.max_snd_wnd) & MASK


def _number(spec: tuple[str | None, int], anchor: int) -> int:
    return seq_add(anchor, spec[1]) if spec[0] is not None else spec[1] & MASK


def _resolve_options(rig: Rig, spec: OptionSpec | None) -> Options:
    if spec is None:
        return Options(timestamp=(rig.peer_ts, rig.ts_echo)) if rig.full else Options()
    timestamp: tuple[int, int] | None
    if spec.timestamp is None:
        timestamp = None
    elif spec.timestamp[0] == "peer":
        delta = spec.timestamp[1]
        assert isinstance(delta, int)
        timestamp = (seq_add(rig.peer_ts, delta), rig.ts_echo)
    else:
        value = spec.timestamp[1]
        assert isinstance(value, tuple)
        timestamp = (value[0], value[1])
    blocks = tuple(
        (
            _number(left, _ack_anchor(rig, left[0])),
            _number(right, _ack_anchor(rig, right[0])),
        )
        for left, right in spec.sack_blocks
    )
    return Options(
        mss=spec.mss,
        window_scale=spec.window_scale,
        sack_permitted=spec.sack_permitted,
        sack_blocks=blocks,
        timestamp=timestamp,
        unknown=spec.unknown,
    )


def _addresses(rig: Rig, addressing: str) -> tuple[str, str, int, int]:
    """(src ip, dst ip, src port, dst port) of a peer segment."""
    src, dst, sport, dport = PEER, HOST, rig.remote_port, rig.local_port
    if addressing == "src_port_zero":
        sport = 0
    elif addressing == "dst_port_zero":
        dport = 0
    elif addressing == "other_src_port":
        sport = rig.remote_port + 1
    elif addressing == "other_dst_port":
        dport = rig.local_port + 1
    elif addressing == "other_peer":
        src = "10.0.0.9"
    elif addressing == "wrong_dst":
        dst = "10.0.0.99"
    elif addressing == "multicast_src":
        src = "224.0.0.1"
    return src, dst, sport, dport


def feed_step(rig: Rig, step: Step) -> None:
    """Apply one step to the rig (which checks the properties after it)."""
    if isinstance(step, Advance):
        rig.advance(step.micros, run_timers=step.run_timers)
    elif isinstance(step, AppCall):
        rig.app(step.action, step.size)
    elif isinstance(step, RawTcp):
        _feed_raw_tcp(rig, step)
    elif isinstance(step, RawIp):
        _feed_raw_ip(rig, step)
    else:
        _feed_weird(rig, step)


def _feed_weird(rig: Rig, step: WeirdSegment) -> None:
    src, dst, sport, dport = _addresses(rig, step.addressing)
    seq = _number(step.seq, _seq_anchor(rig, step.seq[0]))
    ack = _number(step.ack, _ack_anchor(rig, step.ack[0]))
    kind, size = step.payload
    if kind == "window":
        conn = rig.tracked()
        size = max((conn.rcv_wnd if conn is not None else 8192) + size, 0)
    first_data = seq_add(seq, 1) if step.flags & Flag.SYN else seq
    seg = Segment(
        sport,
        dport,
        seq,
        ack,
        step.flags,
        step.window,
        step.urgent,
        _resolve_options(rig, step.options),
        pattern(first_data, size),
    )
    rig.peer_ts += 1
    if step.transport == "datagram":
        rig.feed_datagram(src, dst, seg)
        return
    try:
        wire = encode_segment(seg, src, dst)
    except ValueError:  # options that do not fit the header: send the object instead
        rig.feed_datagram(src, dst, seg)
        return
    if step.transport == "flipped":
        index = step.flip_at % len(wire)
        wire = wire[:index] + bytes([wire[index] ^ 0x5A]) + wire[index + 1 :]
        # A flipped byte can leave valid but different content; the pattern check on
        # delivered bytes no longer applies to this rig.
        rig.content_known = False
    rig.feed_bytes(src, dst, wire)


def _feed_raw_tcp(rig: Rig, step: RawTcp) -> None:
    data = bytearray(step.data)
    if step.aim and len(data) >= 4:
        struct.pack_into("!HH", data, 0, rig.remote_port, rig.local_port)
    if step.fix_checksum and len(data) >= 20:
        struct.pack_into("!H", data, 16, 0)
        struct.pack_into("!H", data, 16, tcp_checksum(PEER, HOST, bytes(data)))
    rig.content_known = False  # random text may be taken into the stream
    rig.feed_bytes(PEER, HOST, bytes(data))


_IP_LAYER = IpLayer({HOST})


def _feed_raw_ip(rig: Rig, step: RawIp) -> None:
    packet = step.data
    if step.wrap:
        packet = encode_ipv4(PEER, HOST, step.protocol, step.data)
    inbound = _IP_LAYER.classify(packet)
    if isinstance(inbound, TcpPayload):
        rig.content_known = False
        rig.feed_bytes(inbound.src, inbound.dst, inbound.data)


__all__ = ["CASE", "Case", "Reader", "Step", "decode_case", "feed_step"]
