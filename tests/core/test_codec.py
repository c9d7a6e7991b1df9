"""The TCP wire format (RFC 9293 3.1) and checksum (RFC 1071, RFC 8200 8.1).

Expected bytes are built by hand with struct and checksummed by a slow word-by-word
reference, independent of the codec's modulo-0xFFFF implementation.
"""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpstack.core.codec import (
    decode_segment,
    encode_options,
    encode_segment,
    internet_checksum,
    ones_sum,
    tcp_checksum,
)
from tcpstack.core.errors import MalformedSegment
from tcpstack.core.segment import NO_OPTIONS, Flag, Options, Segment

SRC4 = "192.0.2.1"
DST4 = "198.51.100.7"
SRC6 = "2001:db8::1"
DST6 = "2001:db8:0:1::2:3"

# ------------------------------------------------------------------ slow references


def ref_ones_sum(data: bytes) -> int:
    """RFC 1071 one's complement sum, a 16-bit word at a time with end-around carry."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        while total > 0xFFFF:
            total = (total & 0xFFFF) + (total >> 16)
    return total


def ref_checksum(data: bytes) -> int:
    return ~ref_ones_sum(data) & 0xFFFF


def ref_pseudo_header(src: str, dst: str, tcp_length: int) -> bytes:
    """RFC 9293 3.1 (IPv4) or RFC 8200 8.1 (IPv6) pseudo-header, packed by the OS library."""
    if ":" in src:
        return (
            socket.inet_pton(socket.AF_INET6, src)
            + socket.inet_pton(socket.AF_INET6, dst)
            + struct.pack("!I3xB", tcp_length, 6)
        )
    return (
        socket.inet_pton(socket.AF_INET, src)
        + socket.inet_pton(socket.AF_INET, dst)
        + struct.pack("!xBH", 6, tcp_length)
    )


def ref_tcp_checksum(src: str, dst: str, tcp_bytes: bytes) -> int:
    return ref_checksum(ref_pseudo_header(src, dst, len(tcp_bytes)) + tcp_bytes)


def raw_segment(
    options_area: bytes = b"",
    payload: bytes = b"",
    *,
    src: str = SRC4,
    dst: str = DST4,
    data_offset: int | None = None,
    flags: int = Flag.ACK,
    fix_checksum: bool = True,
) -> bytes:
    """Hand-built segment bytes (ports 1234 -> 80, seq 0xFFFFFFF0, ack 7, window 1000)."""
    offset = (20 + len(options_area)) // 4 if data_offset is None else data_offset
    header = struct.pack("!HHIIBBHHH", 1234, 80, 0xFFFFFFF0, 7, offset << 4, flags, 1000, 0, 0)
    data = header + options_area + payload
    if fix_checksum:
        csum = ref_tcp_checksum(src, dst, data)
        data = data[:16] + struct.pack("!H", csum) + data[18:]
    return data


def checksum_field(data: bytes) -> int:
    value: int = struct.unpack_from("!H", data, 16)[0]
    return value


# ------------------------------------------------------------------ checksum


def test_rfc1071_example() -> None:
    """RFC 1071 section 3's worked example: words sum to 0xddf2, checksum 0x220d."""
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ref_ones_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0xFFFF),  # empty and all-zero data sum to +0, not -0
        (b"\x00", 0xFFFF),
        (b"\x00\x00\x00\x00", 0xFFFF),
        (b"\xff\xff", 0x0000),  # sum is -0 (0xFFFF)
        (b"\xff\xff\xff\xff", 0x0000),
        (b"\x12\x34\x00\x00\xed\xcb", 0x0000),  # multiple of 0xFFFF but not zero
        (b"\x01", 0xFEFF),  # odd length: padded on the right with a zero byte
        (b"\x00\x01", 0xFFFE),
        (b"\xab", ~0xAB00 & 0xFFFF),
    ],
)
def test_internet_checksum_edges(data: bytes, expected: int) -> None:
    assert ref_checksum(data) == expected
    assert internet_checksum(data) == expected


@given(st.binary(max_size=3000))
def test_internet_checksum_matches_reference(data: bytes) -> None:
    assert internet_checksum(data) == ref_checksum(data)


@given(st.lists(st.sampled_from([b"\x00\x00", b"\xff\xff", b"\x00\xff", b"\xff"]), max_size=40))
def test_internet_checksum_matches_reference_on_extreme_words(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert internet_checksum(data) == ref_checksum(data)


@given(st.binary(max_size=70_000))
def test_ones_sum_matches_reference_up_to_jumbo_sizes(data: bytes) -> None:
    assert ones_sum(data) == ref_ones_sum(data) % 0xFFFF


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_sums_of_even_length_pieces_add(a: bytes, b: bytes) -> None:
    """The identity encode/decode rely on: sum(a + b) = sum(a) + sum(b) when len(a) is even."""
    if len(a) % 2:
        a += b"\x00"
    whole = ref_ones_sum(a + b)
    parts = ref_ones_sum(a) + ref_ones_sum(b)
    assert whole % 0xFFFF == parts % 0xFFFF


@given(st.binary(max_size=1600), st.booleans())
def test_tcp_checksum_matches_reference(tcp_bytes: bytes, v6: bool) -> None:
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    assert tcp_checksum(src, dst, tcp_bytes) == ref_tcp_checksum(src, dst, tcp_bytes)


def test_tcp_checksum_known_vector_ipv4() -> None:
    # A bare ACK 1234 -> 80, seq 0xFFFFFFF0, ack 7, window 1000, checksum field zero.
    # The constants were computed by the reference and cross-checked by summing the words
    # from struct.unpack("!...H") with a separate carry fold.
    tcp_bytes = raw_segment(fix_checksum=False)
    expected = ref_tcp_checksum(SRC4, DST4, tcp_bytes)
    assert expected == 0xBA96
    assert tcp_checksum(SRC4, DST4, tcp_bytes) == expected


def test_tcp_checksum_known_vector_ipv6() -> None:
    tcp_bytes = raw_segment(fix_checksum=False)
    expected = ref_tcp_checksum(SRC6, DST6, tcp_bytes)
    assert expected == 0x4B5A
    assert tcp_checksum(SRC6, DST6, tcp_bytes) == expected


def test_tcp_checksum_of_correct_segment_is_zero() -> None:
    data = encode_segment(Segment(1, 2, 3, payload=b"hello"), SRC4, DST4)
    assert tcp_checksum(SRC4, DST4, data) == 0
    data6 = encode_segment(Segment(1, 2, 3, payload=b"hello"), SRC6, DST6)
    assert tcp_checksum(SRC6, DST6, data6) == 0


def test_tcp_checksum_rejects_mixed_families() -> None:
    with pytest.raises(ValueError):
        tcp_checksum(SRC4, DST6, b"")
    with pytest.raises(ValueError):
        tcp_checksum("not-an-address", DST4, b"")


# ------------------------------------------------------------------ exact encoding

SYN_OPTIONS = Options(mss=1460, window_scale=7, sack_permitted=True, timestamp=(1, 0))
SYN = Segment(
    src_port=49152,
    dst_port=80,
    seq=0xFFFFFF00,
    flags=Flag.SYN,
    window=64240,
    options=SYN_OPTIONS,
)


def expected_syn_bytes(src: str, dst: str) -> bytes:
    options_area = (
        struct.pack("!BBH", 2, 4, 1460)  # mss 1460
        + struct.pack("!BBBB", 1, 3, 3, 7)  # nop, wscale 7
        + struct.pack("!BB", 4, 2)  # sackOK
        + struct.pack("!BBII", 8, 10, 1, 0)  # TS val 1 ecr 0
    )
    assert len(options_area) == 20
    header = struct.pack("!HHIIBBHHH", 49152, 80, 0xFFFFFF00, 0, 10 << 4, 0x02, 64240, 0, 0)
    data = header + options_area
    csum = ref_tcp_checksum(src, dst, data)
    return data[:16] + struct.pack("!H", csum) + data[18:]


@pytest.mark.parametrize(("src", "dst"), [(SRC4, DST4), (SRC6, DST6)])
def test_syn_exact_bytes(src: str, dst: str) -> None:
    expected = expected_syn_bytes(src, dst)
    assert encode_segment(SYN, src, dst) == expected
    assert decode_segment(expected, src, dst) == SYN


def test_syn_checksums_differ_between_families() -> None:
    v4 = encode_segment(SYN, SRC4, DST4)
    v6 = encode_segment(SYN, SRC6, DST6)
    assert v4[:16] == v6[:16]
    assert v4[18:] == v6[18:]
    assert checksum_field(v4) == ref_tcp_checksum(SRC4, DST4, v4[:16] + b"\0\0" + v4[18:])
    assert checksum_field(v6) == ref_tcp_checksum(SRC6, DST6, v6[:16] + b"\0\0" + v6[18:])
    assert checksum_field(v4) != checksum_field(v6)


def test_decode_linux_style_syn_options() -> None:
    """Linux orders its SYN options <mss,sackOK,TS,nop,wscale>; any order decodes the same."""
    area = (
        struct.pack("!BBH", 2, 4, 1460)
        + struct.pack("!BB", 4, 2)
        + struct.pack("!BBII", 8, 10, 1, 0)
        + struct.pack("!BBBB", 1, 3, 3, 7)
    )
    segment = decode_segment(raw_segment(area, flags=Flag.SYN), SRC4, DST4)
    assert segment.options == SYN_OPTIONS
    assert segment.flags == Flag.SYN
    assert (segment.src_port, segment.dst_port) == (1234, 80)
    assert (segment.seq, segment.ack, segment.window) == (0xFFFFFFF0, 7, 1000)


def test_bare_segment_has_no_options() -> None:
    data = encode_segment(
        Segment(1234, 80, 0xFFFFFFF0, ack=7, flags=Flag.ACK, window=1000), SRC4, DST4
    )
    assert data == raw_segment()
    decoded = decode_segment(data, SRC4, DST4)
    assert decoded.options is NO_OPTIONS
    assert decoded.payload == b""


@pytest.mark.parametrize(
    "flag",
    [Flag.FIN, Flag.SYN, Flag.RST, Flag.PSH, Flag.ACK, Flag.URG, Flag.ECE, Flag.CWR],
)
def test_each_flag_bit(flag: int) -> None:
    segment = Segment(1, 2, 3, ack=4, flags=flag, window=5, urgent=6)
    data = encode_segment(segment, SRC4, DST4)
    assert data[13] == flag
    assert data[12] == 5 << 4
    assert checksum_field(data) == ref_tcp_checksum(SRC4, DST4, data[:16] + b"\0\0" + data[18:])
    assert decode_segment(data, SRC4, DST4) == segment


def test_all_flags_and_field_extremes() -> None:
    segment = Segment(65535, 0, 2**32 - 1, ack=2**32 - 1, flags=0xFF, window=65535, urgent=65535)
    data = encode_segment(segment, SRC6, DST6)
    assert data[:16] == struct.pack("!HHIIBBH", 65535, 0, 2**32 - 1, 2**32 - 1, 0x50, 0xFF, 65535)
    assert data[18:] == b"\xff\xff"
    assert decode_segment(data, SRC6, DST6) == segment


def test_reserved_bits_are_ignored() -> None:
    data = raw_segment()
    with_reserved = bytearray(data)
    with_reserved[12] |= 0x0F
    fixed = bytes(with_reserved[:16]) + b"\0\0" + bytes(with_reserved[18:])
    csum = ref_tcp_checksum(SRC4, DST4, fixed)
    fixed = fixed[:16] + struct.pack("!H", csum) + fixed[18:]
    assert decode_segment(fixed, SRC4, DST4) == decode_segment(data, SRC4, DST4)


@pytest.mark.parametrize("payload", [b"a", b"abc", b"\xff" * 1461, bytes(range(256)) * 3 + b"x"])
def test_odd_length_payload_checksum(payload: bytes) -> None:
    segment = Segment(1234, 80, 0xFFFFFFF0, ack=7, flags=Flag.ACK | Flag.PSH, payload=payload)
    data = encode_segment(segment, SRC4, DST4)
    assert data[20:] == payload
    assert checksum_field(data) == ref_tcp_checksum(SRC4, DST4, data[:16] + b"\0\0" + data[18:])
    assert decode_segment(data, SRC4, DST4) == segment
    data6 = encode_segment(segment, SRC6, DST6)
    assert checksum_field(data6) == ref_tcp_checksum(SRC6, DST6, data6[:16] + b"\0\0" + data6[18:])


# ------------------------------------------------------------------ options layout


@pytest.mark.parametrize(
    ("options", "area"),
    [
        (NO_OPTIONS, b""),
        (Options(), b""),
        (Options(mss=536), bytes.fromhex("02040218")),
        (Options(window_scale=14), bytes.fromhex("0103030e")),
        (Options(sack_permitted=True), bytes.fromhex("01010402")),
        (Options(timestamp=(5, 6)), bytes.fromhex("0101080a0000000500000006")),
        (
            Options(sack_blocks=((1, 2), (3, 4))),
            bytes.fromhex("01010512" + "0000000100000002" + "0000000300000004"),
        ),
        (Options(unknown=((30, b""),)), bytes.fromhex("1e020000")),
        (Options(unknown=((254, b"\xf9\x89"),)), bytes.fromhex("fe04f989")),
        (Options(unknown=((34, b"\x01"),)), bytes.fromhex("22030100")),
    ],
)
def test_option_layouts(options: Options, area: bytes) -> None:
    assert encode_options(options) == area
    data = encode_segment(Segment(1, 2, 3, options=options), SRC4, DST4)
    assert data[20:] == area
    assert data[12] >> 4 == 5 + len(area) // 4
    assert decode_segment(data, SRC4, DST4).options == options


def test_timestamps_with_three_sack_blocks_fill_the_area() -> None:
    options = Options(timestamp=(1, 2), sack_blocks=((10, 20), (30, 40), (50, 60)))
    area = encode_options(options)
    assert len(area) == 40
    assert area[:4] == bytes((1, 1, 8, 10))
    assert (
        decode_segment(
            encode_segment(Segment(1, 2, 3, options=options), SRC4, DST4), SRC4, DST4
        ).options
        == options
    )


def test_packed_layout_when_aligned_one_does_not_fit() -> None:
    # Aligned: 4 + 4 + 12 + 21 = 41 bytes; packed without NOPs: 4 + 3 + 2 + 10 + 21 = 40.
    options = Options(
        mss=1460,
        window_scale=7,
        sack_permitted=True,
        timestamp=(1, 0),
        unknown=((30, bytes(range(19))),),
    )
    area = encode_options(options)
    assert area == (
        bytes.fromhex("020405b4" + "030307" + "0402" + "080a0000000100000000" + "1e15")
        + bytes(range(19))
    )
    segment = Segment(1, 2, 3, flags=Flag.SYN, options=options)
    assert decode_segment(encode_segment(segment, SRC4, DST4), SRC4, DST4) == segment


@pytest.mark.parametrize(
    "options",
    [
        Options(sack_blocks=((1, 2),) * 5),
        Options(timestamp=(1, 2), sack_blocks=((1, 2),) * 4),
        Options(unknown=((30, bytes(39)),)),
        Options(unknown=((30, bytes(20)), (31, bytes(20)))),
        Options(unknown=((2, b"\x05\xb4"),)),  # a known kind must use its field
        Options(unknown=((0, b""),)),
        Options(unknown=((1, b""),)),
        Options(unknown=((256, b""),)),
        Options(mss=65536),
        Options(window_scale=-1),
        Options(timestamp=(2**32, 0)),
        Options(sack_blocks=((0, 2**32),)),
    ],
)
def test_unencodable_options_raise_value_error(options: Options) -> None:
    with pytest.raises(ValueError):
        encode_options(options)
    with pytest.raises(ValueError):
        encode_segment(Segment(1, 2, 3, options=options), SRC4, DST4)


@pytest.mark.parametrize(
    "segment",
    [
        Segment(65536, 2, 3),
        Segment(1, -1, 3),
        Segment(1, 2, 2**32),
        Segment(1, 2, 3, ack=-1),
        Segment(1, 2, 3, flags=0x100),
        Segment(1, 2, 3, window=65536),
        Segment(1, 2, 3, urgent=65536),
    ],
)
def test_out_of_range_fields_raise_value_error(segment: Segment) -> None:
    with pytest.raises(ValueError):
        encode_segment(segment, SRC4, DST4)


def test_encode_rejects_mixed_families() -> None:
    with pytest.raises(ValueError):
        encode_segment(SYN, SRC4, DST6)


# ------------------------------------------------------------------ option parsing


def test_unknown_options_are_kept() -> None:
    area = bytes.fromhex("1e04abcd" + "fe02" + "0101")
    segment = decode_segment(raw_segment(area), SRC4, DST4)
    assert segment.options == Options(unknown=((30, b"\xab\xcd"), (254, b"")))


def test_unknown_option_between_known_ones_is_skipped_by_length() -> None:
    # An unknown option whose data looks like an MSS option must not be parsed as one.
    area = bytes.fromhex("0103030e" + "130602040101" + "0204ffff" + "0101")
    segment = decode_segment(raw_segment(area), SRC4, DST4)
    assert segment.options == Options(
        mss=0xFFFF, window_scale=14, unknown=((19, b"\x02\x04\x01\x01"),)
    )


def test_eol_ends_option_parsing() -> None:
    # What follows EOL would be a malformed MSS option if it were parsed.
    area = bytes.fromhex("020405b4" + "00020101")
    segment = decode_segment(raw_segment(area), SRC4, DST4)
    assert segment.options == Options(mss=1460)


def test_eol_first_means_no_options() -> None:
    segment = decode_segment(raw_segment(bytes.fromhex("00ffffff")), SRC4, DST4)
    assert segment.options == NO_OPTIONS


def test_nops_are_skipped() -> None:
    area = bytes.fromhex("010101030307" + "0101")
    segment = decode_segment(raw_segment(area), SRC4, DST4)
    assert segment.options == Options(window_scale=7)


def test_only_nops() -> None:
    segment = decode_segment(raw_segment(b"\x01" * 40), SRC4, DST4)
    assert segment.options == NO_OPTIONS


def test_repeated_option_keeps_last_value() -> None:
    area = bytes.fromhex("02040218" + "020405b4")
    segment = decode_segment(raw_segment(area), SRC4, DST4)
    assert segment.options == Options(mss=1460)


def test_timestamp_fast_path_layout_and_general_layout_agree() -> None:
    fast = decode_segment(raw_segment(bytes.fromhex("0101080a0000000500000006")), SRC4, DST4)
    slow = decode_segment(raw_segment(bytes.fromhex("080a00000005000000060000")), SRC4, DST4)
    assert fast.options == slow.options == Options(timestamp=(5, 6))


def test_sack_blocks_decode() -> None:
    area = bytes.fromhex("0101051a") + struct.pack("!6I", 1, 2, 2**32 - 5, 3, 7, 8)
    segment = decode_segment(raw_segment(area), SRC4, DST4)
    assert segment.options == Options(sack_blocks=((1, 2), (2**32 - 5, 3), (7, 8)))


def test_payload_follows_options() -> None:
    area = bytes.fromhex("020405b4")
    segment = decode_segment(raw_segment(area, b"payload!"), SRC4, DST4)
    assert segment.payload == b"payload!"
    assert segment.options == Options(mss=1460)


# ------------------------------------------------------------------ malformed input


def reason_of(data: bytes, src: str = SRC4, dst: str = DST4, *, verify: bool = True) -> str:
    with pytest.raises(MalformedSegment) as info:
        decode_segment(data, src, dst, verify_checksum=verify)
    return info.value.reason


@pytest.mark.parametrize("size", [0, 1, 19])
def test_short_header(size: int) -> None:
    assert reason_of(raw_segment()[:size]) == "short_header"
    assert reason_of(raw_segment()[:size], verify=False) == "short_header"


@pytest.mark.parametrize("offset", [0, 1, 4])
def test_bad_data_offset_too_small(offset: int) -> None:
    assert reason_of(raw_segment(data_offset=offset)) == "bad_data_offset"


def test_bad_data_offset_past_the_data() -> None:
    # Offset 6 says 24 header bytes, but only 22 bytes arrived.
    assert reason_of(raw_segment(payload=b"ab", data_offset=6)) == "bad_data_offset"
    assert reason_of(raw_segment(data_offset=15)) == "bad_data_offset"


def test_data_offset_may_cover_the_whole_segment() -> None:
    segment = decode_segment(raw_segment(payload=b"\x01\x01\x01\x01", data_offset=6), SRC4, DST4)
    assert segment.payload == b""
    assert segment.options == NO_OPTIONS


@pytest.mark.parametrize(
    "area",
    [
        bytes.fromhex("0101011e"),  # kind 30 with its length byte missing
        bytes.fromhex("01010102"),  # MSS with its length byte missing
        bytes.fromhex("1e060000"),  # unknown option runs past the area
        bytes.fromhex("0101020a"),  # MSS length runs past the area (before its own check)
        bytes.fromhex("01080a00000001"),  # TS at offset 1 runs past an 8-byte area (+pad)
    ],
)
def test_truncated_option(area: bytes) -> None:
    area += bytes(-len(area) % 4)
    assert reason_of(raw_segment(area)) == "truncated_option"


def test_truncated_option_does_not_read_into_payload() -> None:
    # The option's length would fit if the payload counted as option space: it does not.
    area = bytes.fromhex("1e080000")
    assert reason_of(raw_segment(area, b"\x00" * 8)) == "truncated_option"


@pytest.mark.parametrize(
    "area",
    [
        bytes.fromhex("1e000000"),  # length 0
        bytes.fromhex("1e010000"),  # length 1
        bytes.fromhex("02000000"),  # known kind with length 0
        bytes.fromhex("02030500"),  # MSS length 3
        bytes.fromhex("020505b400000000"),  # MSS length 5
        bytes.fromhex("03020000"),  # wscale length 2
        bytes.fromhex("03040700"),  # wscale length 4
        bytes.fromhex("04030000"),  # sackOK length 3
        bytes.fromhex("01010808" + "0000000100000000"),  # TS length 8
        bytes.fromhex("080b" + "00000001000000020000"),  # TS length 11
        bytes.fromhex("01010502"),  # SACK with no blocks
        bytes.fromhex("0101050c" + "000000010000000200000000"),  # SACK length 12, not 2 + 8n
        bytes.fromhex("0101050b" + "000000010000000200"),  # SACK length 11
    ],
)
def test_bad_option_length(area: bytes) -> None:
    area += bytes(-len(area) % 4)
    assert reason_of(raw_segment(area)) == "bad_option_length"


def test_bad_checksum() -> None:
    data = bytearray(encode_segment(SYN, SRC4, DST4))
    data[16] ^= 0x01
    assert reason_of(bytes(data)) == "bad_checksum"
    # Without verification the same bytes decode.
    assert decode_segment(bytes(data), SRC4, DST4, verify_checksum=False) == SYN


def test_checksum_depends_on_addresses() -> None:
    data = encode_segment(SYN, SRC4, DST4)
    assert reason_of(data, SRC4, "198.51.100.8") == "bad_checksum"
    # The pseudo-header sum is symmetric in the two addresses: swapping them goes unnoticed.
    assert decode_segment(data, DST4, SRC4) == SYN
    data6 = encode_segment(SYN, SRC6, DST6)
    assert reason_of(data6, SRC6, "2001:db8:0:1::2:4") == "bad_checksum"


def test_checksum_of_all_ones_field_is_accepted() -> None:
    """0x0000 and 0xFFFF are the same one's complement number (+0 and -0)."""
    # Search ports for a segment whose computed checksum is 0x0000, then send 0xFFFF instead.
    for port in range(65536):
        data = encode_segment(Segment(port, 80, 0), SRC4, DST4)
        if checksum_field(data) == 0:
            break
    else:  # pragma: no cover - there is always such a port
        pytest.fail("no port gives checksum 0")
    other = data[:16] + b"\xff\xff" + data[18:]
    assert decode_segment(other, SRC4, DST4) == decode_segment(data, SRC4, DST4)


def test_checksum_checked_before_structure() -> None:
    # A corrupted data offset is reported as what it is: corruption.
    data = bytearray(raw_segment(payload=b"xyz"))
    data[12] = 1 << 4
    assert reason_of(bytes(data)) == "bad_checksum"
    assert reason_of(bytes(data), verify=False) == "bad_data_offset"


# ------------------------------------------------------------------ properties

u16 = st.integers(min_value=0, max_value=0xFFFF)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
unknown_kinds = st.integers(min_value=6, max_value=255).filter(lambda k: k != 8)


def packed_size(options: Options) -> int:
    """Bytes the options need without any alignment NOPs."""
    size = 0
    size += 4 if options.mss is not None else 0
    size += 3 if options.window_scale is not None else 0
    size += 2 if options.sack_permitted else 0
    size += 10 if options.timestamp is not None else 0
    size += 2 + 8 * len(options.sack_blocks) if options.sack_blocks else 0
    size += sum(2 + len(data) for _, data in options.unknown)
    return size


@st.composite
def valid_options(draw: st.DrawFn) -> Options:
    options = Options(
        mss=draw(st.none() | u16),
        window_scale=draw(st.none() | st.integers(min_value=0, max_value=255)),
        sack_permitted=draw(st.booleans()),
        timestamp=draw(st.none() | st.tuples(u32, u32)),
        sack_blocks=tuple(draw(st.lists(st.tuples(u32, u32), max_size=4))),
        unknown=tuple(draw(st.lists(st.tuples(unknown_kinds, st.binary(max_size=12)), max_size=3))),
    )
    # Drop unknown options, then SACK blocks, until the set fits in 40 bytes.
    while packed_size(options) > 40 and options.unknown:
        options = Options(
            mss=options.mss,
            window_scale=options.window_scale,
            sack_permitted=options.sack_permitted,
            timestamp=options.timestamp,
            sack_blocks=options.sack_blocks,
            unknown=options.unknown[:-1],
        )
    while packed_size(options) > 40:
        options = Options(
            mss=options.mss,
            window_scale=options.window_scale,
            sack_permitted=options.sack_permitted,
            timestamp=options.timestamp,
            sack_blocks=options.sack_blocks[:-1],
        )
    return options


segments = st.builds(
    Segment,
    src_port=u16,
    dst_port=u16,
    seq=u32,
    ack=u32,
    flags=st.integers(min_value=0, max_value=255),
    window=u16,
    urgent=u16,
    options=valid_options(),
    payload=st.binary(max_size=2000),
)

ipv4_pairs = st.tuples(st.ip_addresses(v=4).map(str), st.ip_addresses(v=4).map(str))
ipv6_pairs = st.tuples(st.ip_addresses(v=6).map(str), st.ip_addresses(v=6).map(str))
address_pairs = ipv4_pairs | ipv6_pairs


@given(segments, address_pairs)
def test_round_trip(segment: Segment, addresses: tuple[str, str]) -> None:
    src, dst = addresses
    data = encode_segment(segment, src, dst)
    header_len = (data[12] >> 4) * 4
    assert 20 <= header_len <= 60
    assert header_len == 20 + len(encode_options(segment.options))
    assert data[header_len:] == segment.payload
    assert tcp_checksum(src, dst, data) == 0
    assert checksum_field(data) == ref_tcp_checksum(src, dst, data[:16] + b"\0\0" + data[18:])
    assert decode_segment(data, src, dst) == segment


@given(valid_options())
def test_options_area_is_word_aligned_and_bounded(options: Options) -> None:
    area = encode_options(options)
    assert len(area) % 4 == 0
    assert packed_size(options) <= len(area) <= 40


@given(st.binary(max_size=200), st.booleans(), st.booleans())
def test_arbitrary_bytes_decode_or_raise_malformed(data: bytes, v6: bool, verify: bool) -> None:
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    try:
        segment = decode_segment(data, src, dst, verify_checksum=verify)
    except MalformedSegment as exc:
        assert exc.reason in {
            "short_header",
            "bad_data_offset",
            "truncated_option",
            "bad_option_length",
            "bad_checksum",
        }
    else:
        assert isinstance(segment, Segment)


@given(st.binary(min_size=20, max_size=80), st.booleans())
def test_arbitrary_bytes_with_fixed_checksum(data: bytes, v6: bool) -> None:
    """Give random headers a valid checksum so the structure and option checks are reached."""
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    zeroed = data[:16] + b"\0\0" + data[18:]
    data = zeroed[:16] + struct.pack("!H", ref_tcp_checksum(src, dst, zeroed)) + zeroed[18:]
    try:
        segment = decode_segment(data, src, dst)
    except MalformedSegment as exc:
        assert exc.reason != "bad_checksum"
    else:
        assert isinstance(segment, Segment)
        assert len(segment.payload) <= len(data) - 20


@given(segments, address_pairs, st.data())
def test_single_bit_flip_is_detected(
    segment: Segment, addresses: tuple[str, str], data: st.DataObject
) -> None:
    src, dst = addresses
    encoded = bytearray(encode_segment(segment, src, dst))
    bit = data.draw(st.integers(min_value=0, max_value=len(encoded) * 8 - 1), label="bit")
    encoded[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(MalformedSegment):
        decode_segment(bytes(encoded), src, dst)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decode_accepts_any_bytes_like_buffer(kind: type) -> None:
    # Drivers hand over bytes, a bytearray or a memoryview of a receive buffer; the
    # timestamp-only fast path must treat them alike.
    seg = Segment(1, 2, 3, 4, Flag.ACK, 100, 0, Options(timestamp=(5, 6)), b"xyz")
    wire = encode_segment(seg, "10.0.0.1", "10.0.0.2")
    decoded = decode_segment(kind(wire), "10.0.0.1", "10.0.0.2")
    assert decoded.options.timestamp == (5, 6)
    assert bytes(decoded.payload) == b"xyz"
    assert (decoded.seq, decoded.ack, decoded.window) == (3, 4, 100)
