"""Bytes <-> Segment: the TCP header wire format and its checksum.

Sans-I/O: this module only turns bytes into `Segment` values and back. It uses the
standard library's `struct`, `ipaddress` and `functools` and nothing that touches the
world.

Header layout: RFC 9293 section 3.1. Options: RFC 9293 3.1 (EOL, NOP, MSS), RFC 7323
(window scale, timestamps), RFC 2018 (SACK-permitted, SACK). Checksum: RFC 1071 one's
complement sum over the pseudo-header (RFC 9293 3.1 for IPv4, RFC 8200 8.1 for IPv6)
followed by the TCP header and payload.

Two rules shape the error handling:

- `decode_segment` reads peer input, so it raises only `MalformedSegment`, with a stable
  `reason` a caller uses as its drop counter's key. Anything else escaping is our bug.
- `encode_segment` reads our own values, so a segment that cannot be put on the wire
  (a field out of range, options longer than 40 bytes) raises `ValueError`.
"""

from __future__ import annotations

import ipaddress
import struct
from functools import lru_cache

from tcpstack.core.errors import MalformedSegment
from tcpstack.core.segment import NO_OPTIONS, Options, Segment

__all__ = [
    "HEADER_LEN",
    "MAX_OPTIONS_LEN",
    "MAX_SACK_BLOCKS",
    "decode_segment",
    "encode_options",
    "encode_segment",
    "internet_checksum",
    "ones_sum",
    "tcp_checksum",
]

HEADER_LEN = 20
"""Length of the fixed TCP header (data offset 5), RFC 9293 3.1."""

MAX_OPTIONS_LEN = 40
"""Data offset is 4 bits of 32-bit words: 15 * 4 = 60 header bytes, 40 of them options."""

MAX_SACK_BLOCKS = 4
"""2 + 8 * 4 = 34 bytes: the most SACK blocks one 40-byte options area can hold (RFC 2018)."""

PROTO_TCP = 6

# Option kinds (IANA "TCP Option Kind Numbers").
KIND_EOL = 0
KIND_NOP = 1
KIND_MSS = 2
KIND_WSCALE = 3
KIND_SACK_PERMITTED = 4
KIND_SACK = 5
KIND_TIMESTAMP = 8

# Kinds with an Options field of their own: never carried in Options.unknown.
_KNOWN_KINDS = frozenset(
    (KIND_EOL, KIND_NOP, KIND_MSS, KIND_WSCALE, KIND_SACK_PERMITTED, KIND_SACK, KIND_TIMESTAMP)
)

_HEADER = struct.Struct("!HHIIBBHHH")  # ports, seq, ack, offset, flags, window, csum, urgent
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U32X2 = struct.Struct("!II")
_MSS = struct.Struct("!BBH")
_WSCALE = struct.Struct("!BBB")
_TIMESTAMP = struct.Struct("!BBII")
_CHECKSUM_OFFSET = 16

_SACK_PERMITTED_BYTES = bytes((KIND_SACK_PERMITTED, 2))
_NOP2 = bytes((KIND_NOP, KIND_NOP))
# The RFC 7323 Appendix A layout of a timestamp-only segment: <NOP,NOP,TS>. It is what
# almost every established-state segment carries, so decoding gets a fast path for it.
_TS_ONLY_PREFIX = bytes((KIND_NOP, KIND_NOP, KIND_TIMESTAMP, 10))
# Decoded <NOP,NOP,TS> areas by their bytes; emptied when full (bounded memory).
_TS_ONLY_CACHE: dict[bytes, Options] = {}
_TS_ONLY_CACHE_SIZE = 1024


# --------------------------------------------------------------------------- checksum


def ones_sum(data: bytes) -> int:
    """One's complement 16-bit sum of `data`, reduced modulo 0xFFFF (0 .. 0xFFFE).

    Why this works (RFC 1071 section 2): 2**16 = 1 (mod 0xFFFF), so the big-endian integer
    value of a byte string is congruent to the plain sum of its 16-bit words, and the end-
    around carry of RFC 1071 is exactly reduction modulo 0xFFFF. One C-level `int` operation
    instead of a Python loop over words. An odd-length string is summed as if padded with a
    zero byte (RFC 9293 3.1 "padded on the right"), which is a shift by 8 bits, not a copy.

    The result is congruent to, not equal to, the RFC 1071 sum: the RFC sum of a non-zero
    string is in 1 .. 0xFFFF and a result of 0 here stands for 0xFFFF (see
    `_fold_to_checksum`). Sums of pieces may be added together modulo 0xFFFF provided every
    piece except the last has even length (so each piece starts on a word boundary).
    """
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    # A plain `%`: folding the number in halves first (shifts and adds at 16-bit
    # boundaries) is faster on data already in cache, but 10-13% slower on freshly
    # made segments, which is what a stack sees (measured, issue 9).
    return value % 0xFFFF


def _fold_to_checksum(total: int, nonzero: bool) -> int:
    """Turn a modulo-0xFFFF sum into the RFC 1071 checksum (the complement of the sum).

    The RFC 1071 sum is 0x0000 only when every word is zero; otherwise a multiple of
    0xFFFF is the one's complement "negative zero" 0xFFFF, whose complement is 0x0000.
    """
    total %= 0xFFFF
    if total == 0 and nonzero:
        total = 0xFFFF
    return ~total & 0xFFFF


def internet_checksum(data: bytes) -> int:
    """The RFC 1071 Internet checksum of `data`: the complement of its one's complement sum.

    Computed over data whose checksum field is zero, this is the value to store in the
    field; computed over data carrying a correct checksum, it is 0 (RFC 1071 section 1).
    """
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    # `value` is zero exactly when every byte is: no second pass over the data needed.
    return _fold_to_checksum(value % 0xFFFF, value != 0)


@lru_cache(maxsize=1024)
def _pack_address(text: str) -> bytes:
    """Address text to its 4 or 16 network-order bytes; IPv6 when the text contains ':'.

    Cached: an endpoint talks to few peers and the same two addresses appear in every
    segment of a connection, while `ipaddress` parsing costs microseconds.
    """
    if ":" in text:
        return ipaddress.IPv6Address(text).packed
    return ipaddress.IPv4Address(text).packed


@lru_cache(maxsize=1024)
def _address_sum(src_ip: str, dst_ip: str) -> int:
    """Sum (mod 0xFFFF) of the pseudo-header's address part plus its protocol word.

    IPv4 (RFC 9293 3.1): src(4) dst(4) zero(1) PTCL(1) TCP length(2).
    IPv6 (RFC 8200 8.1): src(16) dst(16) upper-layer length(4) zero(3) next header(1).
    In both, every field sits on a 16-bit boundary, the protocol contributes the word
    0x0006 and the length contributes its value (a 32-bit length is congruent to the sum
    of its two words). So the pseudo-header sum is this cached value plus the TCP length.
    """
    src = _pack_address(src_ip)
    dst = _pack_address(dst_ip)
    if len(src) != len(dst):
        raise ValueError(f"address families differ: {src_ip!r} and {dst_ip!r}")
    return (int.from_bytes(src, "big") + int.from_bytes(dst, "big") + PROTO_TCP) % 0xFFFF


def tcp_checksum(src_ip: str, dst_ip: str, tcp_bytes: bytes) -> int:
    """The TCP checksum of `tcp_bytes` (header and payload) between two addresses.

    RFC 9293 3.1: the complement of the one's complement sum of the pseudo-header, the
    header and the payload. With the header's checksum field zero the result is the value
    to send; over a received segment with a correct checksum the result is 0.
    Raises ValueError for address text that does not parse or families that differ.
    """
    total = _address_sum(src_ip, dst_ip) + len(tcp_bytes) + ones_sum(tcp_bytes)
    # The pseudo-header holds the protocol number 6, so the summed words are never all zero.
    return _fold_to_checksum(total, True)


# --------------------------------------------------------------------------- encoding


def _options_pieces(options: Options) -> list[tuple[int, bytes]]:
    """Each option in canonical order as (alignment NOPs wanted before it, its bytes).

    Canonical order: MSS, window scale, SACK-permitted, timestamps, SACK, unknown kinds.
    Raises ValueError for a value that does not fit its field or a bad unknown option.
    """
    pieces: list[tuple[int, bytes]] = []
    try:
        if options.mss is not None:
            pieces.append((0, _MSS.pack(KIND_MSS, 4, options.mss)))
        if options.window_scale is not None:
            pieces.append((1, _WSCALE.pack(KIND_WSCALE, 3, options.window_scale)))
        if options.sack_permitted:
            # Paired with timestamps, <sackOK,TS> is already 12 bytes (RFC 7323 App. A).
            pieces.append((0 if options.timestamp is not None else 2, _SACK_PERMITTED_BYTES))
        if options.timestamp is not None:
            ts_val, ts_ecr = options.timestamp
            ts = _TIMESTAMP.pack(KIND_TIMESTAMP, 10, ts_val, ts_ecr)
            pieces.append((0 if options.sack_permitted else 2, ts))
        if options.sack_blocks:
            if len(options.sack_blocks) > MAX_SACK_BLOCKS:
                raise ValueError(
                    f"{len(options.sack_blocks)} SACK blocks, at most {MAX_SACK_BLOCKS} fit"
                )
            blocks = b"".join(_U32X2.pack(left, right) for left, right in options.sack_blocks)
            pieces.append((2, bytes((KIND_SACK, 2 + len(blocks))) + blocks))
    except struct.error as exc:
        raise ValueError(f"option value out of range in {options.describe()}: {exc}") from exc
    for kind, data in options.unknown:
        if kind in _KNOWN_KINDS or not 0 <= kind <= 255:
            raise ValueError(f"option kind {kind} cannot be sent as an unknown option")
        if len(data) > MAX_OPTIONS_LEN - 2:
            raise ValueError(f"option kind {kind} with {len(data)} data bytes cannot fit")
        pieces.append((0, bytes((kind, 2 + len(data))) + data))
    return pieces


def encode_options(options: Options) -> bytes:
    """The options area for `options`: a multiple of 4 bytes, at most 40 (RFC 9293 3.1).

    Layout: options in canonical order, 32-bit fields aligned with NOPs the way RFC 7323
    Appendix A recommends and Linux sends (<mss>, <nop,wscale>, <sackOK,TS> or
    <nop,nop,TS>, <nop,nop,sack ...>), unknown options after them, then EOL and zero
    padding to the 32-bit boundary (RFC 9293 3.1: "the padding is composed of zeros").
    When the aligned layout would exceed 40 bytes the options are packed without NOPs
    instead; if even that does not fit, ValueError (a bug in whoever built the segment:
    the connection must budget option space, RFC 9293 3.7.1).

    Also useful on its own: len(encode_options(o)) is the option overhead that reduces
    the effective send MSS (RFC 9293 3.7.1).
    """
    if options is NO_OPTIONS:
        return b""
    timestamp = options.timestamp
    if (
        timestamp is not None
        and options.mss is None
        and options.window_scale is None
        and not options.sack_permitted
        and not options.sack_blocks
        and not options.unknown
    ):
        # What almost every established-state segment carries: <NOP,NOP,TS>, the layout
        # _options_pieces gives it, built directly (issue 9: per-segment cost).
        try:
            return _TS_ONLY_PREFIX + _U32X2.pack(*timestamp)
        except struct.error as exc:
            raise ValueError(f"option value out of range in {options.describe()}: {exc}") from exc
    pieces = _options_pieces(options)
    area = b"".join(b"\x01" * nops + piece for nops, piece in pieces)
    if len(area) > MAX_OPTIONS_LEN:
        area = b"".join(piece for _, piece in pieces)
        if len(area) > MAX_OPTIONS_LEN:
            raise ValueError(
                f"options need {len(area)} bytes, at most {MAX_OPTIONS_LEN} fit: "
                f"{options.describe()}"
            )
    # A zero byte is EOL and zero bytes after it are padding: one rule covers both.
    return area + bytes(-len(area) % 4)


def encode_segment(segment: Segment, src_ip: str, dst_ip: str) -> bytes:
    """The wire bytes of `segment` sent from src_ip to dst_ip, checksum filled in.

    RFC 9293 3.1 header, `encode_options` options, then the payload. The reserved bits
    (including RFC 3540's NS / the AccECN AE bit) are sent as zero. Raises ValueError when
    a field is out of range, the options do not fit, or the addresses are not of one
    family: all bugs of the caller, never peer input.
    """
    opts = encode_options(segment.options)
    header_len = HEADER_LEN + len(opts)
    payload = segment.payload
    try:
        header = _HEADER.pack(
            segment.src_port,
            segment.dst_port,
            segment.seq,
            segment.ack,
            (header_len >> 2) << 4,
            segment.flags,
            segment.window,
            0,
            segment.urgent,
        )
    except struct.error as exc:
        raise ValueError(f"header field out of range in {segment!r}: {exc}") from exc
    # Sum header and payload separately: the header (20 + 4k bytes) has even length, so
    # the two sums add modulo 0xFFFF and the payload is never copied for the checksum.
    total = (
        _address_sum(src_ip, dst_ip)
        + header_len
        + len(payload)
        + int.from_bytes(header, "big")
        + int.from_bytes(opts, "big")
        + ones_sum(payload)
    )
    checksum = _fold_to_checksum(total, True)
    return b"".join((header[:_CHECKSUM_OFFSET], _U16.pack(checksum), header[18:], opts, payload))


# --------------------------------------------------------------------------- decoding


def _decode_options(area: bytes) -> Options:
    """Parse an options area (RFC 9293 3.1 "Options"; MUST-6, MUST-68).

    NOP is skipped, EOL ends parsing (what follows is padding), an unknown kind is
    skipped by its length and kept in Options.unknown. A known kind repeated keeps its
    last value. Raises MalformedSegment("truncated_option") when a length byte is missing
    or an option runs past the area, MalformedSegment("bad_option_length") for a length
    below 2 or a known kind with the wrong length.
    """
    if len(area) == 12 and area[:4] == _TS_ONLY_PREFIX:
        # Options are immutable, so equal areas may share one object: a flight of
        # segments within one TSval tick decodes its options once (issue 9).
        key = bytes(area)  # the same object when `area` is bytes; hashable either way
        cached = _TS_ONLY_CACHE.get(key)
        if cached is None:
            if len(_TS_ONLY_CACHE) >= _TS_ONLY_CACHE_SIZE:
                _TS_ONLY_CACHE.clear()
            ts_val, ts_ecr = _U32X2.unpack_from(key, 4)
            cached = _TS_ONLY_CACHE[key] = Options(timestamp=(ts_val, ts_ecr))
        return cached
    mss: int | None = None
    window_scale: int | None = None
    sack_permitted = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamp: tuple[int, int] | None = None
    unknown: list[tuple[int, bytes]] = []
    end = len(area)
    i = 0
    while i < end:
        kind = area[i]
        if kind == KIND_EOL:
            break
        if kind == KIND_NOP:
            i += 1
            continue
        if i + 1 >= end:
            raise MalformedSegment("truncated_option", f"kind {kind} at {i} has no length byte")
        length = area[i + 1]
        if length < 2:
            raise MalformedSegment("bad_option_length", f"kind {kind} length {length}")
        if i + length > end:
            raise MalformedSegment(
                "truncated_option", f"kind {kind} length {length} at {i} runs past {end}"
            )
        if kind == KIND_MSS:
            if length != 4:
                raise MalformedSegment("bad_option_length", f"MSS length {length}, want 4")
            mss = _U16.unpack_from(area, i + 2)[0]
        elif kind == KIND_WSCALE:
            if length != 3:
                raise MalformedSegment("bad_option_length", f"wscale length {length}, want 3")
            window_scale = area[i + 2]
        elif kind == KIND_SACK_PERMITTED:
            if length != 2:
                raise MalformedSegment("bad_option_length", f"sackOK length {length}, want 2")
            sack_permitted = True
        elif kind == KIND_TIMESTAMP:
            if length != 10:
                raise MalformedSegment("bad_option_length", f"TS length {length}, want 10")
            ts_val, ts_ecr = _U32X2.unpack_from(area, i + 2)
            timestamp = (ts_val, ts_ecr)
        elif kind == KIND_SACK:
            if length < 10 or (length - 2) % 8:
                raise MalformedSegment("bad_option_length", f"SACK length {length}, want 2+8n")
            sack_blocks = tuple(
                (left, right) for left, right in _U32X2.iter_unpack(area[i + 2 : i + length])
            )
        else:
            unknown.append((kind, area[i + 2 : i + length]))
        i += length
    return Options(
        mss=mss,
        window_scale=window_scale,
        sack_permitted=sack_permitted,
        sack_blocks=sack_blocks,
        timestamp=timestamp,
        unknown=tuple(unknown),
    )


def decode_segment(
    data: bytes, src_ip: str, dst_ip: str, *, verify_checksum: bool = True
) -> Segment:
    """Parse the TCP segment `data` that travelled from src_ip to dst_ip.

    Checks, in this order, each raising MalformedSegment with the named reason:
    "short_header" (fewer than 20 bytes), "bad_checksum" (RFC 9293 3.1, MUST-2: a
    segment with a bad checksum is discarded; checked before the header is trusted, so a
    corrupted segment counts as corrupted rather than as whatever its damage looks
    like), "bad_data_offset" (below 5 words or past the end of `data`), then the option
    reasons of `_decode_options`. The reserved bits are ignored (RFC 9293 3.1).
    Raises ValueError only for address text that is not an address of one family.
    """
    size = len(data)
    if size < HEADER_LEN:
        raise MalformedSegment("short_header", f"{size} bytes, a header needs {HEADER_LEN}")
    if verify_checksum:
        # A correct checksum makes the total a multiple of 0xFFFF (one's complement -0).
        total = _address_sum(src_ip, dst_ip) + size + ones_sum(data)
        if total % 0xFFFF:
            raise MalformedSegment(
                "bad_checksum", f"field {_U16.unpack_from(data, _CHECKSUM_OFFSET)[0]:#06x}"
            )
    src_port, dst_port, seq, ack, offset, flags, window, _, urgent = _HEADER.unpack_from(data)
    header_len = (offset >> 4) << 2
    if header_len < HEADER_LEN or header_len > size:
        raise MalformedSegment(
            "bad_data_offset", f"header of {header_len} bytes in {size} bytes of segment"
        )
    options = (
        NO_OPTIONS if header_len == HEADER_LEN else _decode_options(data[HEADER_LEN:header_len])
    )
    # Positional arguments, in Segment's field order: cheaper than keywords per segment.
    return Segment(src_port, dst_port, seq, ack, flags, window, urgent, options, data[header_len:])
