"""pcap and pcapng captures of a run: the byte format, and tshark's dissection of them."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tcpstack.core.codec import internet_checksum
from tcpstack.core.segment import Flag, Segment
from tcpstack.core.trace import TraceKind
from tcpstack.scenarios.catalog import SCENARIOS
from tcpstack.sim import What
from tcpstack.viz.pcap import (
    LINKTYPE_RAW,
    CapturedPacket,
    capture_story,
    ip_packet,
    ipv4_header,
    packets_from_records,
    pcap_bytes,
    pcapng_bytes,
    write_pcap,
    write_pcapng,
)
from tests.viz.support import run_of, sack_run, tshark

# Wireshark's expert severities (epan/proto.h): a warning or an error means a broken packet.
PI_WARN = 0x00600000
# Wireshark's checksum status values: 0 bad, 1 good, 2 unverified.
CHECKSUM_GOOD = "1"

# tshark's tcp.flags.str letters for each flag.
_LETTERS = {
    Flag.FIN: "F",
    Flag.SYN: "S",
    Flag.RST: "R",
    Flag.PSH: "P",
    Flag.ACK: "A",
    Flag.URG: "U",
    Flag.ECE: "E",
    Flag.CWR: "C",
}


def sent(name: str) -> list[Segment]:
    """Every segment the run's endpoints sent, in order."""
    return [
        r.segment
        for r in run_of(name).story.trace.of_kind(TraceKind.SEGMENT_OUT)
        if r.segment is not None
    ]


def capture(name: str, directory: Path) -> tuple[Path, Path]:
    packets, section = capture_story(run_of(name).story, title=name)
    return (
        write_pcap(directory / f"{name}.pcap", packets),
        write_pcapng(directory / f"{name}.pcapng", packets, section_comment=section),
    )


# --------------------------------------------------------------------------- format


def test_ipv4_header_checksum_verifies() -> None:
    header = ipv4_header("10.0.0.1", "10.0.0.2", 32, ident=7)
    assert len(header) == 20
    assert header[0] == 0x45 and header[9] == 6
    assert struct.unpack("!H", header[2:4])[0] == 52
    assert internet_checksum(header) == 0  # a correct checksum sums to zero


def test_ipv6_packets_get_an_ipv6_header() -> None:
    packet = ip_packet("fd00::1", "fd00::2", b"x" * 20)
    assert len(packet) == 60 and packet[0] >> 4 == 6 and packet[6] == 6


def test_pcap_header_and_records() -> None:
    packets = [CapturedPacket(1_500_000, "10.0.0.1", "10.0.0.2", b"t" * 20, 3)]
    data = pcap_bytes(packets)
    magic, major, minor, _, _, snaplen, link = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, link) == (0xA1B2C3D4, 2, 4, LINKTYPE_RAW)
    assert snaplen >= 40
    seconds, micros, captured, original = struct.unpack("<IIII", data[24:40])
    assert (seconds, micros, captured, original) == (1, 500_000, 40, 40)
    assert data[40] == 0x45 and len(data) == 80


def _blocks(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    offset = 0
    while offset < len(data):
        block_type, length = struct.unpack("<II", data[offset : offset + 8])
        assert length % 4 == 0
        assert struct.unpack("<I", data[offset + length - 4 : offset + length])[0] == length
        out.append((block_type, data[offset + 8 : offset + length - 4]))
        offset += length
    assert offset == len(data)
    return out


def test_pcapng_blocks_carry_comments() -> None:
    packets = [
        CapturedPacket(2_000_001, "10.0.0.1", "10.0.0.2", b"t" * 21, 0, ("one", "two")),
        CapturedPacket(2_000_002, "10.0.0.2", "10.0.0.1", b"u" * 20, 1),
    ]
    data = pcapng_bytes(packets, section_comment="hello")
    blocks = _blocks(data)
    assert [t for t, _ in blocks] == [0x0A0D0D0A, 1, 6, 6]
    assert b"hello" in blocks[0][1] and b"tcpstack" in blocks[0][1]
    link = struct.unpack("<H", blocks[1][1][:2])[0]
    assert link == LINKTYPE_RAW
    epb = blocks[2][1]
    _, high, low, captured, original = struct.unpack("<IIIII", epb[:20])
    assert (high << 32 | low, captured, original) == (2_000_001, 41, 41)
    assert b"one" in epb and b"two" in epb


def test_one_packet_per_transmission_lost_ones_included() -> None:
    story = run_of("time-wait-lost-final-ack").story
    packets = packets_from_records(story.net_records)
    transmissions = [r for r in story.net_records if r.what is What.SENT]
    assert len(packets) == len(transmissions) == len(sent("time-wait-lost-final-ack"))
    assert any(r.what is What.FILTERED for r in story.net_records)


def test_comments_name_the_state_changes_and_the_loss() -> None:
    packets, section = capture_story(run_of("time-wait-lost-final-ack").story, title="t")
    text = "\n".join(c for p in packets for c in p.comments)
    for change in (
        "CLOSED -> SYN_SENT",
        "ESTABLISHED -> FIN_WAIT_1",
        "FIN_WAIT_1 -> FIN_WAIT_2",
        "FIN_WAIT_2 -> TIME_WAIT",
        "ESTABLISHED -> CLOSE_WAIT",
        "CLOSE_WAIT -> LAST_ACK",
        "LAST_ACK -> CLOSED",
        "TIME_WAIT -> CLOSED",
    ):
        assert change in text
        assert change in section
    lost = [p for p in packets if any("dropped by the scenario's filter" in c for c in p.comments)]
    assert len(lost) == 1


# --------------------------------------------------------------------------- tshark


def _letters(flags: int) -> set[str]:
    return {letter for bit, letter in _LETTERS.items() if flags & bit}


@pytest.mark.parametrize("suffix", ["pcap", "pcapng"])
def test_tshark_dissects_simultaneous_close(tmp_path: Path, suffix: str) -> None:
    pcap_path, pcapng_path = capture("simultaneous-close", tmp_path)
    path = pcap_path if suffix == "pcap" else pcapng_path
    rows = tshark(
        path,
        "-T",
        "fields",
        "-e",
        "tcp.flags.str",
        "-e",
        "tcp.flags",
        "-e",
        "tcp.seq",
        "-e",
        "tcp.ack",
        "-e",
        "tcp.len",
        "-e",
        "tcp.window_size_value",
        "-e",
        "tcp.checksum.status",
        "-e",
        "ip.checksum.status",
        "-e",
        "ip.src",
        "-e",
        "frame.time_relative",
    )
    expected = sent("simultaneous-close")
    assert len(rows) == len(expected) == 7
    for row, seg in zip(rows, expected, strict=True):
        flags_str, flags, seq, ack, length, window, tcp_ok, ip_ok, _src, _t = row
        assert {c for c in flags_str if c.isalpha()} == _letters(seg.flags)
        assert int(flags, 16) == seg.flags
        assert int(seq) == seg.seq
        if seg.flags & Flag.ACK:
            assert int(ack) == seg.ack
        assert int(length) == len(seg.payload)
        assert int(window) == seg.window
        assert tcp_ok == CHECKSUM_GOOD
        assert ip_ok == CHECKSUM_GOOD
    assert [r[8] for r in rows] == [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.1",
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.2",
        "10.0.0.1",
    ]
    assert [float(r[9]) for r in rows] == [0.0, 0.01, 0.02, 0.08, 0.08, 0.09, 0.09]


def test_tshark_reads_the_handshake_options(tmp_path: Path) -> None:
    path, _ = capture("simultaneous-close", tmp_path)
    rows = tshark(
        path,
        "-Y",
        "tcp.flags.syn == 1",
        "-T",
        "fields",
        "-e",
        "tcp.options.mss_val",
        "-e",
        "tcp.options.sack_perm",
        "-e",
        "tcp.options.timestamp.tsval",
        "-e",
        "tcp.options.timestamp.tsecr",
        "-e",
        "tcp.options.wscale.shift",
        "-e",
        "tcp.option_kind",
    )
    syns = [s for s in sent("simultaneous-close") if s.flags & Flag.SYN]
    assert len(rows) == len(syns) == 2
    for row, seg in zip(rows, syns, strict=True):
        mss, sack_perm, tsval, tsecr, wscale, kinds = row
        assert seg.options.timestamp is not None
        assert int(mss) == seg.options.mss == 1460
        assert sack_perm != ""  # the SACK-permitted option is there
        assert (int(tsval), int(tsecr)) == seg.options.timestamp
        assert int(wscale) == seg.options.window_scale
        assert {2, 3, 4, 8} <= {int(k) for k in kinds.split(",")}


def test_tshark_sees_sack_blocks_and_the_retransmission(tmp_path: Path) -> None:
    """A run with a lost data segment: the capture's SACK blocks are the stack's, and
    tshark flags the resent segment as a retransmission."""
    run = sack_run()
    packets, section = capture_story(run.story, title="sack")
    path = write_pcapng(tmp_path / "sack.pcapng", packets, section_comment=section)
    rows = tshark(
        path,
        "-Y",
        "tcp.options.sack_le",
        "-T",
        "fields",
        "-e",
        "tcp.options.sack_le",
        "-e",
        "tcp.options.sack_re",
    )
    blocks = [
        block
        for r in run.story.trace.of_kind(TraceKind.SEGMENT_OUT)
        if r.segment is not None
        for block in r.segment.options.sack_blocks
    ]
    assert blocks and len(rows) == len(blocks)
    assert [(int(le), int(re)) for le, re in rows] == blocks
    again = tshark(path, "-Y", "tcp.analysis.retransmission", "-T", "fields", "-e", "tcp.seq")
    lost = [p for p in packets if any("filter" in c for c in p.comments)]
    assert len(lost) == 1 and len(again) == 1
    assert int(again[0][0]) == int.from_bytes(lost[0].tcp[4:8], "big")


def test_tshark_reads_the_pcapng_comments(tmp_path: Path) -> None:
    _, path = capture("simultaneous-close", tmp_path)
    rows = tshark(path, "-T", "fields", "-e", "frame.number", "-e", "frame.comment")
    comments = "\n".join(row[1] for row in rows)
    assert "client 10.0.0.1:32768: ESTABLISHED -> FIN_WAIT_1" in comments
    assert "FIN_WAIT_1 -> CLOSING (rcv FIN / snd ACK) on receiving this" in comments
    assert "CLOSING -> TIME_WAIT" in comments
    assert "TIME_WAIT -> CLOSED (timeout 2*MSL)" in comments


@pytest.mark.parametrize(
    "name",
    ["three-way-handshake", "normal-close", "simultaneous-close", "time-wait-lost-final-ack"],
)
def test_tshark_finds_nothing_wrong(tmp_path: Path, name: str) -> None:
    """No expert warnings or errors (malformed packets, bad checksums) in clean runs."""
    path, _ = capture(name, tmp_path)
    rows = tshark(path, "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.severity")
    assert len(rows) == len(sent(name))
    for number, severities in rows:
        worst = max((int(s) for s in severities.split(",") if s), default=0)
        assert worst < PI_WARN, f"frame {number} of {name}: severity {worst:#x}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_capture_dissects_cleanly(tmp_path: Path, name: str) -> None:
    """Every scenario: tshark reads the pcapng without complaint, every checksum good
    (the classic pcap carries the same packets; it is dissected in the tests above)."""
    _, path = capture(name, tmp_path)
    rows = tshark(
        path,
        "-T",
        "fields",
        "-e",
        "tcp.checksum.status",
        "-e",
        "ip.checksum.status",
        "-e",
        "_ws.malformed",
    )
    story = run_of(name).story
    assert len(rows) == sum(r.what is What.SENT for r in story.net_records)
    assert all(row[:2] == [CHECKSUM_GOOD, CHECKSUM_GOOD] for row in rows), rows
    assert all(row[2] == "" for row in rows)
