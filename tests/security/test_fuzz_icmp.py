"""Fuzzing the ICMP entry point with a connection in each of the eleven states (Hypothesis).

Every example builds a fresh Endpoint whose tracked connection is in one state (the rig of
tests/security/endpoint_rig.py, over IPv4 or IPv6), then applies up to ten steps that mix:

- IcmpReports handed to `Endpoint.receive_icmp_error`: every IcmpKind; the quoted
  sequence number at, next to, or far from SND.UNA / SND.NXT / SND.MAX / ISS, or
  anything; the tracked 4-tuple, a TIME_WAIT entry's, other ports, another peer, the
  swapped tuple, the other address family; next-hop MTUs at the edges (0, 1, 67, 575,
  576, 1279, 1280, 65535, ...), none, or anything;
- bytes through the TUN driver's IpLayer (net/packet.py) as IPv4 / IPv6 packets: raw,
  as an arbitrary ICMP(v6) message in a valid IP header, or as an ICMP error quoting one
  of our segments with drawn type, code, MTU, quote length and tail; an `IcmpError` that
  comes out goes through `IcmpError.report()` into the Endpoint;
- the segments, clock moves and user calls of the segment fuzzer (strategies.py).

Properties, after every step (besides the rig's own: no exception escapes, state changes
are TRANSITIONS edges, acknowledged data reaches the application intact):

- an ICMP error never changes a connection's state, except that a hard error (RFC 1122
  4.2.3.9, SHLD-26) ends the connection it quotes in SYN_SENT; ESTABLISHED and the later
  states are never ended by ICMP (RFC 5927 5.2, RFC 9293 MUST-56);
- every ICMP input the Endpoint takes increments exactly one counter, an `icmp.*` one,
  named after the verdict it returns, and nothing else;
- ICMP never raises a connection's effective MSS, and never lowers it below the floor of
  core/icmp.py (552-byte IPv4 / 1280-byte IPv6 path MTU);
- ICMP never touches the TIME_WAIT table.

Budget: 22,000 examples in the default run (2,000 per state), TCPSTACK_FUZZ_ICMP_EXAMPLES=N
sets the total; the opt-in `-m slow` test runs 500,000 (TCPSTACK_FUZZ_ICMP_SLOW_EXAMPLES).
Deterministic like test_fuzz_endpoint.py (TCPSTACK_FUZZ_SEED=S for another stream).
"""

from __future__ import annotations

import os
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpstack.core.codec import encode_segment, internet_checksum
from tcpstack.core.connection import TIMESTAMP_OPTION_SPACE, Connection
from tcpstack.core.icmp import IcmpKind, IcmpReport, mss_for_path_mtu
from tcpstack.core.segment import Flag, Segment
from tcpstack.core.seq import seq_add, seq_sub
from tcpstack.core.state import State
from tcpstack.net.packet import (
    ICMP,
    ICMPV6,
    TCP,
    IcmpError,
    IpLayer,
    TcpPayload,
    encode_ipv4,
    encode_ipv6,
)
from tests.security import endpoint_rig, strategies
from tests.security.endpoint_rig import ALL_STATES, ISS, Rig
from tests.security.strategies import (
    ADVANCES,
    APP_ACTIONS,
    APP_SIZES,
    Advance,
    AppCall,
    Number,
    Reader,
    Step,
    _weird_segment,
    feed_step,
    fuzz_profile,
)

DEFAULT_TOTAL = int(os.environ.get("TCPSTACK_FUZZ_ICMP_EXAMPLES", "22000"))
SLOW_TOTAL = int(os.environ.get("TCPSTACK_FUZZ_ICMP_SLOW_EXAMPLES", "500000"))

# The rig's addresses for an IPv6 case (the rig's own are IPv4), and the routers that
# report the errors.
IPV6_HOST = "fd00::2"
IPV6_PEER = "fd00::1"
ROUTER = {False: "10.0.0.254", True: "fd00::fe"}
OTHER_PEER = {False: "10.0.0.9", True: "fd00::9"}
# The other family's addresses, for a report that cannot match (no_connection).
FOREIGN = {False: (IPV6_HOST, IPV6_PEER), True: (endpoint_rig.HOST, endpoint_rig.PEER)}

KINDS = tuple(IcmpKind)
# Next-hop MTUs at the edges: RFC 791's 68 and one below, the IPv4 floor 576 (Linux's
# min_pmtu is 552) and next to it, IPv6's 1280 and next to it, the largest, none.
EDGE_MTUS: tuple[int | None, ...] = (
    None,
    0,
    1,
    67,
    68,
    551,
    552,
    575,
    576,
    1279,
    1280,
    1281,
    1499,
    1500,
    65535,
)
# One choice picks the kind and, for fragmentation needed / packet too big, the MTU (so
# that short inputs still reach every MTU).
KIND_CHOICES: tuple[tuple[IcmpKind, int | None], ...] = (
    *((kind, None) for kind in KINDS if kind is not IcmpKind.FRAGMENTATION_NEEDED),
    *((IcmpKind.FRAGMENTATION_NEEDED, mtu) for mtu in EDGE_MTUS),
)
# Anchors for the quoted SEG.SEQ (RFC 5927 4.1 checks SND.UNA =< SEG.SEQ < SND.NXT);
# "in_flight" is SND.UNA + (offset modulo the bytes in flight), inside whenever any are.
ICMP_SEQ_ANCHORS: tuple[str | None, ...] = (
    "snd_una",
    "in_flight",
    "in_flight",
    "snd_nxt",
    "snd_max",
    "iss",
    None,
)
ICMP_ADDRESSINGS = (
    "tuple",
    "tuple",
    "tuple",
    "tuple",
    "time_wait",
    "other_local_port",
    "other_remote_port",
    "other_peer",
    "swapped",
    "other_family",
)
# ICMP types for a message quoting our segment: the errors TCP takes, Source Quench,
# Parameter Problem, Redirect, echo request (ping) and anything.
ICMP_TYPES = {False: (3, 3, 3, 11, 4, 12, 5, 8), True: (1, 1, 2, 2, 3, 4, 128, 137)}
RAW_MODES = ("raw", "wrapped", "quoting", "quoting", "quoting")
MAX_STEPS = 10


@dataclass(frozen=True)
class IcmpStep:
    """An IcmpReport for the Endpoint; `seq` is resolved against the tracked connection."""

    kind: IcmpKind
    seq: Number
    mtu: int | None
    addressing: str


@dataclass(frozen=True)
class RawIcmp:
    """Bytes through the TUN driver's IpLayer. `mode`: "raw" (the bytes are the packet),
    "wrapped" (the bytes are an ICMP message in a valid IP header), "quoting" (an ICMP
    error of `icmp_type` / `code` quoting one of our segments with SEG.SEQ `seq`, the
    first `quote_length` bytes of it followed by `data`)."""

    mode: str
    data: bytes
    icmp_type: int
    code: int
    mtu: int
    seq: Number
    quote_length: int
    fix_checksum: bool


IcmpCaseStep = Step | IcmpStep | RawIcmp


@dataclass(frozen=True)
class IcmpCase:
    config_name: str
    ipv6: bool
    preload: bool
    steps: tuple[IcmpCaseStep, ...]


def _icmp_step(reader: Reader) -> IcmpStep:
    kind, mtu = reader.pick(KIND_CHOICES)
    if kind is IcmpKind.FRAGMENTATION_NEEDED and reader.u8() % 4 == 3:
        mtu = reader.u16()
    return IcmpStep(kind, reader.number(ICMP_SEQ_ANCHORS), mtu, reader.pick(ICMP_ADDRESSINGS))


def _raw_icmp(reader: Reader, ipv6: bool) -> RawIcmp:
    mode = reader.pick(RAW_MODES)
    icmp_type = reader.pick(ICMP_TYPES[ipv6]) if reader.u8() % 8 != 7 else reader.u8()
    code = reader.u8() % 16 if reader.u8() % 4 != 3 else reader.u8()
    mtu = (reader.pick(EDGE_MTUS) or 0) if reader.u8() % 4 != 3 else reader.u32()
    seq = reader.number(ICMP_SEQ_ANCHORS)
    # Mostly the whole quote (so that it parses); else cut anywhere in the headers.
    # (A choice byte of 0, which is what Hypothesis shrinks towards, is the usual case.)
    quote_length = 100 if reader.u8() % 4 != 3 else reader.u8() % 72
    fix_checksum = reader.u8() % 8 != 7
    data = reader.take(reader.u8() % 65)
    return RawIcmp(mode, data, icmp_type, code, mtu, seq, quote_length, fix_checksum)


def decode_icmp_case(data: bytes) -> IcmpCase:
    """The IcmpCase that `data` describes: a configuration, then up to MAX_STEPS steps."""
    reader = Reader(data)
    head = reader.u8()
    ipv6 = bool(head & 2)
    steps: list[IcmpCaseStep] = []
    while not reader.exhausted and len(steps) < MAX_STEPS:
        kind = reader.u8() % 8
        step: IcmpCaseStep
        if kind <= 2:
            step = _icmp_step(reader)
        elif kind == 3:
            step = _raw_icmp(reader, ipv6)
        elif kind <= 5:
            step = _weird_segment(reader)
        elif kind == 6:
            step = Advance(reader.pick(ADVANCES), reader.flag())
        else:
            step = AppCall(reader.pick(APP_ACTIONS), reader.pick(APP_SIZES))
        steps.append(step)
    # Data in flight three times in four, so that quoted sequence numbers can be valid.
    preload = head & 12 != 12
    return IcmpCase("plain" if head & 1 else "full", ipv6, preload, tuple(steps))


CASE: st.SearchStrategy[IcmpCase] = st.binary(min_size=1, max_size=400).map(decode_icmp_case)


# ---------------------------------------------------------------------- running


@contextmanager
def _addresses(ipv6: bool) -> Iterator[None]:
    """The rig and the segment strategies on IPv6 addresses for an IPv6 case."""
    if not ipv6:
        yield
        return
    with (
        mock.patch.object(endpoint_rig, "HOST", IPV6_HOST),
        mock.patch.object(endpoint_rig, "PEER", IPV6_PEER),
        mock.patch.object(strategies, "HOST", IPV6_HOST),
        mock.patch.object(strategies, "PEER", IPV6_PEER),
    ):
        yield


class IcmpRun:
    """A rig plus the ICMP inputs and the properties checked after each."""

    def __init__(self, state: State, case: IcmpCase) -> None:
        self.ipv6 = case.ipv6
        self.rig = Rig(state, case.config_name, preload=case.preload)
        self.host = self.rig.endpoint.address
        self.ip_layer = IpLayer({self.host})

    # ------------------------------------------------------------------ resolving

    def _seq(self, spec: Number) -> int:
        anchor, offset = spec
        if anchor is None:
            return offset & 0xFFFFFFFF
        conn = self.rig.tracked()
        if conn is None:
            base = seq_add(ISS, 1)
        elif anchor == "snd_una":
            base = conn.snd_una
        elif anchor == "in_flight":
            in_flight = seq_sub(conn.snd_max, conn.snd_una)
            return seq_add(conn.snd_una, offset % in_flight if in_flight > 0 else offset)
        elif anchor == "snd_nxt":
            base = conn.snd_nxt
        elif anchor == "snd_max":
            base = conn.snd_max
        else:
            base = conn.iss
        return seq_add(base, offset)

    def _four_tuple(self, addressing: str) -> tuple[str, int, str, int]:
        local_ip, local_port, remote_ip, remote_port = self.rig.key
        if addressing == "time_wait":
            entries = list(self.rig.endpoint.time_wait)
            if entries:
                return entries[0]
        elif addressing == "other_local_port":
            local_port = (local_port + 1) & 0xFFFF
        elif addressing == "other_remote_port":
            remote_port = (remote_port + 1) & 0xFFFF
        elif addressing == "other_peer":
            remote_ip = OTHER_PEER[self.ipv6]
        elif addressing == "swapped":
            return (remote_ip, remote_port, local_ip, local_port)
        elif addressing == "other_family":
            local_ip, remote_ip = FOREIGN[self.ipv6]
        return (local_ip, local_port, remote_ip, remote_port)

    # ------------------------------------------------------------------ inputs

    def feed(self, step: IcmpCaseStep) -> None:
        if isinstance(step, IcmpStep):
            report = IcmpReport(
                *self._four_tuple(step.addressing),
                self._seq(step.seq),
                step.kind,
                step.mtu,
                ROUTER[self.ipv6],
            )
            self.deliver(report)
        elif isinstance(step, RawIcmp):
            self._feed_raw(step)
        else:
            feed_step(self.rig, step)

    def _feed_raw(self, step: RawIcmp) -> None:
        inbound = self.ip_layer.classify(self._packet(step))
        if isinstance(inbound, IcmpError):
            report = inbound.report()
            if report is not None:
                self.deliver(report)
        elif isinstance(inbound, TcpPayload):
            self.rig.content_known = False  # random bytes may be taken into the stream
            self.rig.feed_bytes(inbound.src, inbound.dst, inbound.data)

    def _packet(self, step: RawIcmp) -> bytes:
        if step.mode == "raw":
            return step.data
        if step.mode == "wrapped":
            message = step.data if len(step.data) >= 4 else step.data + bytes(4)
        else:
            message = self._quoting_message(step)
        if step.fix_checksum:
            message = message[:2] + b"\0\0" + message[4:]
            message = message[:2] + struct.pack("!H", self._checksum(message)) + message[4:]
        router = ROUTER[self.ipv6]
        if self.ipv6:
            return encode_ipv6(router, self.host, ICMPV6, message)
        return encode_ipv4(router, self.host, ICMP, message)

    def _quoting_message(self, step: RawIcmp) -> bytes:
        """An ICMP(v6) error quoting one of our segments on the tracked 4-tuple."""
        local_ip, local_port, remote_ip, remote_port = self.rig.key
        ours = Segment(local_port, remote_port, self._seq(step.seq), 0, Flag.ACK, 65535)
        tcp = encode_segment(ours, local_ip, remote_ip)
        if self.ipv6:
            quoted = encode_ipv6(local_ip, remote_ip, TCP, tcp)
            rest = struct.pack("!I", step.mtu & 0xFFFFFFFF)
        else:
            quoted = encode_ipv4(local_ip, remote_ip, TCP, tcp)
            rest = struct.pack("!HH", 0, step.mtu & 0xFFFF)
        header = bytes((step.icmp_type, step.code, 0, 0)) + rest
        return header + quoted[: step.quote_length] + step.data

    def _checksum(self, message: bytes) -> int:
        if not self.ipv6:
            return internet_checksum(message)
        router = ROUTER[True]
        pseudo = (
            _packed6(router) + _packed6(self.host) + struct.pack("!IxxxB", len(message), ICMPV6)
        )
        return internet_checksum(pseudo + message)

    # ------------------------------------------------------------------ properties

    def deliver(self, report: IcmpReport) -> None:
        """Hand `report` to the Endpoint and check the ICMP properties."""
        rig = self.rig
        endpoint = rig.endpoint
        seen = {id(c): c for c in [*rig.connections, *endpoint.connections.values()]}
        before = {key: _snapshot(conn) for key, conn in seen.items()}
        stats_before = Counter(endpoint.stats)
        time_wait_before = dict(_time_wait_view(rig))

        verdict = endpoint.receive_icmp_error(report, now=rig.now)

        moved = {
            name: count - stats_before[name]
            for name, count in endpoint.stats.items()
            if count != stats_before[name]
        }
        assert moved == {f"icmp.{verdict}": 1}, f"{report}: {verdict}, counters moved {moved}"
        assert dict(_time_wait_view(rig)) == time_wait_before, "ICMP touched TIME_WAIT"
        for key, conn in seen.items():
            state, effective_mss, pmtu_mss = before[key]
            if conn.state is not state:
                assert (state, conn.state, verdict) == (
                    State.SYN_SENT,
                    State.CLOSED,
                    "hard_error",
                ), f"{report} moved a connection {state} -> {conn.state} ({verdict})"
                assert report.kind.hard and conn.four_tuple == report.four_tuple
            assert conn.effective_mss <= effective_mss, (
                f"{report} raised the effective MSS {effective_mss} -> {conn.effective_mss}"
            )
            floor = _floor_mss(conn)
            assert conn.effective_mss >= min(effective_mss, floor), (
                f"{report} lowered the effective MSS below {floor}: {conn.effective_mss}"
            )
            if pmtu_mss is not None:
                assert conn.pmtu_mss is not None and conn.pmtu_mss <= pmtu_mss
        if verdict == "hard_error":
            quoted = next(c for c in seen.values() if c.four_tuple == report.four_tuple)
            assert before[id(quoted)][0] is State.SYN_SENT, f"{report}: hard_error"
        rig._collect()
        rig._check_common()


def _snapshot(conn: Connection) -> tuple[State, int, int | None]:
    return (conn.state, conn.effective_mss, conn.pmtu_mss)


def _floor_mss(conn: Connection) -> int:
    """The effective MSS at the floor path MTU of core/icmp.py."""
    floor = mss_for_path_mtu(0, ipv6=":" in conn.four_tuple[0])
    return floor - (TIMESTAMP_OPTION_SPACE if conn.ts_enabled else 0)


def _time_wait_view(rig: Rig) -> Iterator[tuple[tuple[str, int, str, int], tuple[int, ...]]]:
    for key, entry in rig.endpoint.time_wait.items():
        yield key, (entry.snd_nxt, entry.rcv_nxt, entry.window, entry.deadline)


def _packed6(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, address)


def run_case(state: State, case: IcmpCase) -> None:
    with _addresses(case.ipv6):
        run = IcmpRun(state, case)
        for step in case.steps:
            run.feed(step)


@pytest.mark.parametrize("state", ALL_STATES, ids=str)
@fuzz_profile(DEFAULT_TOTAL)
@given(case=CASE)
def test_fuzz_icmp(state: State, case: IcmpCase) -> None:
    run_case(state, case)


@pytest.mark.slow
@pytest.mark.parametrize("state", ALL_STATES, ids=str)
@fuzz_profile(SLOW_TOTAL)
@given(case=CASE)
def test_fuzz_icmp_slow(state: State, case: IcmpCase) -> None:
    run_case(state, case)
