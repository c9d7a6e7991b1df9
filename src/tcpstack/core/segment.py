"""The TCP segment as data (RFC 9293 section 3.1), independent of its wire encoding."""

from __future__ import annotations

from dataclasses import dataclass, field

from tcpstack.core.seq import seq_add, seq_sub


class Flag:
    """TCP header control bits (RFC 9293 3.1, RFC 3168 for ECE/CWR).

    Plain ints, not an enum: flags are tested on every segment and int operations are cheap.
    """

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80

    ALL = 0xFF


# Letters in the order packetdrill and tcpdump print them; ACK is written as "." last.
_FLAG_LETTERS: tuple[tuple[int, str], ...] = (
    (Flag.SYN, "S"),
    (Flag.FIN, "F"),
    (Flag.RST, "R"),
    (Flag.PSH, "P"),
    (Flag.URG, "U"),
    (Flag.ECE, "E"),
    (Flag.CWR, "W"),
)


def flags_text(flags: int) -> str:
    """Render flags like tcpdump/packetdrill: 'S', 'S.', 'F.', 'P.', 'R', '.'."""
    text = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    if flags & Flag.ACK:
        text += "."
    return text or "none"


@dataclass(frozen=True, slots=True)
class Options:
    """TCP options carried by one segment.

    Known options get fields; unknown kinds are kept as (kind, data) so that a segment
    round-trips and a reader can see what a peer sent (RFC 9293 3.1: unknown options
    MUST be skipped using their length, MUST-6).
    """

    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamp: tuple[int, int] | None = None  # (TSval, TSecr), RFC 7323
    unknown: tuple[tuple[int, bytes], ...] = ()

    def is_empty(self) -> bool:
        return self == NO_OPTIONS

    def describe(self) -> str:
        """Option list in packetdrill's syntax, e.g. '<mss 1460,sackOK,wscale 7>'."""
        parts: list[str] = []
        if self.mss is not None:
            parts.append(f"mss {self.mss}")
        if self.sack_permitted:
            parts.append("sackOK")
        if self.timestamp is not None:
            parts.append(f"TS val {self.timestamp[0]} ecr {self.timestamp[1]}")
        if self.window_scale is not None:
            parts.append(f"wscale {self.window_scale}")
        if self.sack_blocks:
            parts.append("sack " + " ".join(f"{a}:{b}" for a, b in self.sack_blocks))
        for kind, data in self.unknown:
            parts.append(f"opt{kind} {data.hex()}" if data else f"opt{kind}")
        return "<" + ",".join(parts) + ">"


NO_OPTIONS = Options()


@dataclass(slots=True)
class Segment:
    """One TCP segment. `window` is the raw 16-bit header field (before any scaling)."""

    src_port: int
    dst_port: int
    seq: int
    ack: int = 0
    flags: int = 0
    window: int = 0
    urgent: int = 0
    options: Options = field(default=NO_OPTIONS)
    payload: bytes = b""

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload length plus one for each of SYN and FIN (RFC 9293 3.4)."""
        n = len(self.payload)
        if self.flags & Flag.SYN:
            n += 1
        if self.flags & Flag.FIN:
            n += 1
        return n

    @property
    def end_seq(self) -> int:
        """The sequence number just past this segment (SEG.SEQ + SEG.LEN)."""
        return seq_add(self.seq, self.seg_len)

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    def describe(self, seq_base: int = 0, ack_base: int = 0) -> str:
        """tcpdump/packetdrill-like one-liner, sequence numbers relative to the bases.

        Example: 'S. 0:0(0) ack 1 win 65535 <mss 1460>'.
        """
        start = seq_sub(self.seq, seq_base)
        text = f"{flags_text(self.flags)} {start}:{seq_add(start, len(self.payload))}"
        text += f"({len(self.payload)})"
        if self.flags & Flag.ACK:
            text += f" ack {seq_sub(self.ack, ack_base)}"
        text += f" win {self.window}"
        if self.flags & Flag.URG:
            text += f" urg {self.urgent}"
        if self.options != NO_OPTIONS:
            text += " " + self.options.describe()
        return text

    def __str__(self) -> str:
        return self.describe()


@dataclass(slots=True)
class Datagram:
    """A segment with the IP addresses it travels between (what an endpoint emits).

    Addresses are text ('10.0.0.1' or 'fd00::1'); the codec packs them for the
    checksum pseudo-header.
    """

    src: str
    dst: str
    segment: Segment
