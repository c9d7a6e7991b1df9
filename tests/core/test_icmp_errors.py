"""ICMP errors delivered to connections (RFC 9293 3.9.2.2: MUST-54, MUST-56, SHLD-25,
SHLD-26; RFC 1122 4.2.3.9; RFC 5927 4.1 and 5.2; RFC 1191 path MTU discovery).

Each test drives one connection through the public API, hands it an `IcmpReport` the
way a driver would after parsing a real ICMP message, and checks the verdict, the exact
segments sent (or that none were), the state path and the recorded soft error.
"""

from __future__ import annotations

import pytest

from tcpstack.core.config import PLAIN
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.events import Closed, CloseReason
from tcpstack.core.icmp import IcmpKind, IcmpReport, mss_for_path_mtu
from tcpstack.core.segment import Datagram, Flag, Options, Segment
from tcpstack.core.state import State
from tcpstack.core.trace import TraceKind
from tcpstack.net.packet import IcmpError

from .harness import (
    ACK,
    LOCAL_IP,
    LOCAL_ISS,
    LOCAL_PORT,
    MSS_OPTION,
    PSH,
    REMOTE_IP,
    REMOTE_ISS,
    REMOTE_PORT,
    SYN,
    Harness,
)

C, SS, SR, E = State.CLOSED, State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED


def report(
    seq: int, kind: IcmpKind, mtu: int | None = None, *, local_ip: str = LOCAL_IP
) -> IcmpReport:
    return IcmpReport(local_ip, LOCAL_PORT, REMOTE_IP, REMOTE_PORT, seq, kind, mtu, "10.0.0.254")


def icmp_notes(h: Harness) -> list[tuple[str, str]]:
    return [
        (r.data["icmp"], r.data["verdict"])
        for r in h.trace.of_kind(TraceKind.EVENT)
        if "icmp" in r.data
    ]


# --------------------------------------------------------------------------- SYN_SENT


@pytest.mark.parametrize(
    "kind", [IcmpKind.PORT_UNREACHABLE, IcmpKind.PROTOCOL_UNREACHABLE, IcmpKind.ADMIN_PROHIBITED]
)
def test_hard_error_ends_syn_sent(kind: IcmpKind) -> None:
    """SHLD-26 / RFC 1122 4.2.3.9 (and Linux): a hard error quoting our SYN ends the
    attempt at once: CLOSED, Closed(UNREACHABLE), no RST, no timer left."""
    h = Harness()
    h.to_syn_sent()
    error = report(LOCAL_ISS, kind)
    assert h.conn.receive_icmp_error(error, now=h.at(30)) == "hard_error"
    h.expect_nothing()
    assert h.path == [C, SS, C]
    assert h.events() == [Closed(CloseReason.UNREACHABLE)]
    assert h.conn.icmp_error == error
    assert h.conn.next_timer() is None
    assert icmp_notes(h) == [(kind.value, "hard_error")]


@pytest.mark.parametrize(
    "kind",
    [
        IcmpKind.NET_UNREACHABLE,
        IcmpKind.HOST_UNREACHABLE,
        IcmpKind.SOURCE_ROUTE_FAILED,
        IcmpKind.TIME_EXCEEDED,
    ],
)
def test_soft_error_in_syn_sent_is_kept_until_the_syn_retries_give_up(kind: IcmpKind) -> None:
    """MUST-56: a soft error never aborts. The SYN is resent on its own schedule (1 s,
    then the 2 s backoff) and when the retries run out the connection closes with
    TIMEOUT, the soft error still recorded (the driver reports it instead of ETIMEDOUT,
    as Linux's tcp_write_err reports sk_err_soft)."""
    h = Harness(PLAIN.with_changes(syn_retries=1))
    h.to_syn_sent()
    error = report(LOCAL_ISS, kind)
    assert h.conn.receive_icmp_error(error, now=h.at(200)) == "soft_error"
    h.expect_nothing()
    assert h.state is SS and h.conn.icmp_error == error
    assert h.next_timer_ms() == 1000
    h.fire(1000)
    h.expect(h.ours(SYN, LOCAL_ISS, options=MSS_OPTION))
    assert h.next_timer_ms() == 3000
    h.fire(3000)
    h.expect_nothing()
    assert h.path == [C, SS, C]
    assert h.events() == [Closed(CloseReason.TIMEOUT)]
    assert h.conn.icmp_error == error


def test_soft_error_is_forgotten_when_the_syn_is_acknowledged() -> None:
    """Something worked: an ACK of new data clears the soft error (Linux's tcp_ack)."""
    h = Harness()
    h.to_syn_sent()
    h.conn.receive_icmp_error(report(LOCAL_ISS, IcmpKind.HOST_UNREACHABLE), now=h.at(10))
    assert h.conn.icmp_error is not None
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), options=MSS_OPTION), at=20)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.state is E and h.conn.icmp_error is None


@pytest.mark.parametrize("offset", [-1, 1, 2, -(2**31)])
def test_quoted_sequence_outside_the_flight_is_dropped(offset: int) -> None:
    """RFC 5927 4.1: only SND.UNA =< SEG.SEQ < SND.NXT counts. In SYN_SENT that is the
    ISS alone; anything else (a blind guess) changes nothing, not even a hard error."""
    h = Harness()
    h.to_syn_sent()
    guess = (LOCAL_ISS + offset) % 2**32
    verdict = h.conn.receive_icmp_error(report(guess, IcmpKind.PORT_UNREACHABLE), now=h.at(5))
    assert verdict == "seq_out_of_window"
    h.expect_nothing()
    assert h.state is SS and h.conn.icmp_error is None and h.events() == []
    assert icmp_notes(h) == [("port_unreachable", "seq_out_of_window")]


# --------------------------------------------------------------------------- synchronized


@pytest.mark.parametrize(
    "kind",
    [IcmpKind.PORT_UNREACHABLE, IcmpKind.PROTOCOL_UNREACHABLE, IcmpKind.HOST_UNREACHABLE],
)
def test_established_never_aborts_and_keeps_retransmitting(kind: IcmpKind) -> None:
    """MUST-56 for soft errors; RFC 5927 5.2 (and Linux) for hard ones: in a synchronized
    state both are recorded only. The data in flight is resent at the RTO as before."""
    h = Harness()
    h.to_established()
    h.conn.send(b"data", now=h.at(10))
    data = h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"data")
    h.expect(data)
    error = report(h.local_seq(1), kind)
    assert h.conn.receive_icmp_error(error, now=h.at(40)) == "soft_error"
    h.expect_nothing()
    assert h.state is E and h.events() == [] and h.conn.icmp_error == error
    assert h.next_timer_ms() == 1010
    h.fire(1010)
    h.expect(data)
    assert h.path == [C, SS, E]


def test_established_with_nothing_in_flight_drops_every_icmp_error() -> None:
    """Idle: SND.UNA = SND.NXT, so no quoted sequence number can be in the flight."""
    h = Harness()
    h.to_established()
    for seq in (h.local_seq(0), h.local_seq(1), h.local_seq(2)):
        verdict = h.conn.receive_icmp_error(report(seq, IcmpKind.PORT_UNREACHABLE), now=h.now)
        assert verdict == "seq_out_of_window"
    assert h.conn.icmp_error is None and h.state is E


def test_soft_error_in_syn_received_is_only_recorded() -> None:
    """A passive open's SYN,ACK draws a port unreachable: SYN_RECEIVED goes on (it only
    ends by the SYN,ACK retries, RST or the handshake)."""
    h = Harness()
    h.to_syn_received()
    error = report(LOCAL_ISS, IcmpKind.PORT_UNREACHABLE)
    assert h.conn.receive_icmp_error(error, now=h.at(10)) == "soft_error"
    h.expect_nothing()
    assert h.state is SR and h.conn.icmp_error == error and h.events() == []


# --------------------------------------------------------------------------- path MTU


def test_fragmentation_needed_lowers_the_mss_and_resends_at_once() -> None:
    """RFC 1191: MTU 1280 makes the MSS 1280 - 40 = 1240. The router dropped the quoted
    segment and the later ones as too big; they go again at once, from SND.UNA, in
    1240-byte segments (RFC 1191 6.5), without waiting for the RTO."""
    h = Harness()
    h.to_established()
    h.conn.send(b"x" * 3000, now=h.at(10))
    h.expect(
        h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"x" * 1460),
        h.ours(ACK, h.local_seq(1461), h.remote_seq(1), payload=b"x" * 1460),
        h.ours(ACK | PSH, h.local_seq(2921), h.remote_seq(1), payload=b"x" * 80),
    )
    error = report(h.local_seq(1), IcmpKind.FRAGMENTATION_NEEDED, 1280)
    assert h.conn.receive_icmp_error(error, now=h.at(15)) == "pmtu_lowered"
    assert h.conn.effective_mss == 1240 and h.conn.pmtu_mss == 1240
    h.expect(
        h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"x" * 1240),
        h.ours(ACK, h.local_seq(1241), h.remote_seq(1), payload=b"x" * 1240),
        h.ours(ACK | PSH, h.local_seq(2481), h.remote_seq(1), payload=b"x" * 520),
    )
    assert h.state is E and h.conn.icmp_error is None  # not an error: no errno later
    # A larger MTU never raises it again (ICMP cannot grow the MSS, RFC 1191 6.3).
    bigger = report(h.local_seq(1), IcmpKind.FRAGMENTATION_NEEDED, 1400)
    assert h.conn.receive_icmp_error(bigger, now=h.at(16)) == "pmtu_not_lower"
    h.expect_nothing()
    assert h.conn.effective_mss == 1240
    assert icmp_notes(h) == [
        ("fragmentation_needed", "pmtu_lowered"),
        ("fragmentation_needed", "pmtu_not_lower"),
    ]


def test_fragmentation_needed_never_goes_below_the_floor() -> None:
    """A claimed MTU of 68 (or none, 0) is raised to Linux's min_pmtu 552: MSS 512."""
    h = Harness()
    h.to_established()
    h.conn.send(b"y" * 600, now=h.at(10))
    h.expect(h.ours(ACK | PSH, h.local_seq(1), h.remote_seq(1), payload=b"y" * 600))
    error = report(h.local_seq(1), IcmpKind.FRAGMENTATION_NEEDED, 68)
    assert h.conn.receive_icmp_error(error, now=h.at(12)) == "pmtu_lowered"
    assert h.conn.effective_mss == 512
    h.expect(
        h.ours(ACK, h.local_seq(1), h.remote_seq(1), payload=b"y" * 512),
        h.ours(ACK | PSH, h.local_seq(513), h.remote_seq(1), payload=b"y" * 88),
    )
    again = report(h.local_seq(1), IcmpKind.FRAGMENTATION_NEEDED, 0)
    assert h.conn.receive_icmp_error(again, now=h.at(13)) == "pmtu_not_lower"
    h.expect_nothing()


def test_fragmentation_needed_in_syn_sent_lowers_the_mss_for_later_data() -> None:
    h = Harness()
    h.to_syn_sent()
    error = report(LOCAL_ISS, IcmpKind.FRAGMENTATION_NEEDED, 1000)
    assert h.conn.receive_icmp_error(error, now=h.at(5)) == "pmtu_lowered"
    h.expect_nothing()
    h.feed(h.peer(SYN | ACK, REMOTE_ISS, h.local_seq(1), options=MSS_OPTION), at=20)
    h.expect(h.ours(ACK, h.local_seq(1), h.remote_seq(1)))
    assert h.conn.effective_mss == 960


def test_mss_for_path_mtu_floors() -> None:
    assert mss_for_path_mtu(1500, ipv6=False) == 1460
    assert mss_for_path_mtu(None, ipv6=False) == 512
    assert mss_for_path_mtu(1500, ipv6=True) == 1440
    assert mss_for_path_mtu(1000, ipv6=True) == 1220  # RFC 8200: 1280 at least


# Linux's icmp_err_convert (net/ipv4/icmp.c), the errno for each IPv4 destination
# unreachable code 0-15, checked against the kernel source; not taken from our table.
LINUX_IPV4_UNREACHABLE_ERRNO = {
    0: "ENETUNREACH",
    1: "EHOSTUNREACH",
    2: "ENOPROTOOPT",
    3: "ECONNREFUSED",
    4: "EMSGSIZE",
    5: "EOPNOTSUPP",
    6: "ENETUNREACH",
    7: "EHOSTDOWN",
    8: "ENONET",
    9: "ENETUNREACH",
    10: "EHOSTUNREACH",
    11: "ENETUNREACH",
    12: "EHOSTUNREACH",
    13: "EHOSTUNREACH",
    14: "EHOSTUNREACH",
    15: "EHOSTUNREACH",
}
# The kinds (soft or hard here) each code is delivered as by the TUN driver; 6-8 stay
# soft like net / host unreachable (RFC 9293 MUST-56) although Linux counts them fatal.
SOFT_CODES = {0, 1, 5, 6, 7, 8, 11, 12}
HARD_CODES = {2, 3, 9, 10, 13, 14, 15}


@pytest.mark.parametrize("code", sorted(LINUX_IPV4_UNREACHABLE_ERRNO))
def test_errno_names_follow_linux(code: int) -> None:
    """The errno an application sees for each ICMP destination-unreachable code is the
    one Linux reports; the code's kind keeps its soft / hard classification."""
    error = IcmpError(
        4, "10.0.0.254", "unreachable", code, f"code_{code}", LOCAL_IP, LOCAL_PORT,
        REMOTE_IP, REMOTE_PORT, LOCAL_ISS, 1000 if code == 4 else None,
    )  # fmt: skip
    delivered = error.report()
    assert delivered is not None
    assert delivered.errno_name == LINUX_IPV4_UNREACHABLE_ERRNO[code]
    if code == 4:
        assert delivered.kind is IcmpKind.FRAGMENTATION_NEEDED
    else:
        assert delivered.kind.hard is (code in HARD_CODES)
        assert (code in SOFT_CODES) is not (code in HARD_CODES)


def test_errno_names_without_an_ipv4_code_follow_linux() -> None:
    """ICMPv6 (icmpv6_err_convert), time exceeded (tcp_v4_err) and reports built
    without a code: the errno of the kind."""
    assert report(0, IcmpKind.HOST_UNREACHABLE).errno_name == "EHOSTUNREACH"
    assert report(0, IcmpKind.NET_UNREACHABLE).errno_name == "ENETUNREACH"
    assert report(0, IcmpKind.PORT_UNREACHABLE).errno_name == "ECONNREFUSED"
    assert report(0, IcmpKind.PROTOCOL_UNREACHABLE).errno_name == "ENOPROTOOPT"
    assert report(0, IcmpKind.ADMIN_PROHIBITED).errno_name == "EHOSTUNREACH"
    assert report(0, IcmpKind.TIME_EXCEEDED).errno_name == "EHOSTUNREACH"
    assert report(0, IcmpKind.FRAGMENTATION_NEEDED, 1280).errno_name == "EMSGSIZE"
    assert report(0, IcmpKind.ADMIN_PROHIBITED, local_ip="fd00::1").errno_name == "EACCES"
    assert report(0, IcmpKind.PORT_UNREACHABLE, local_ip="fd00::1").errno_name == "ECONNREFUSED"
    assert [k for k in IcmpKind if k.hard] == [
        IcmpKind.PROTOCOL_UNREACHABLE,
        IcmpKind.PORT_UNREACHABLE,
        IcmpKind.ADMIN_PROHIBITED,
    ]


# --------------------------------------------------------------------------- Endpoint


def fixed_isn(_tuple: tuple[str, int, str, int], _now: int) -> int:
    return LOCAL_ISS


def test_endpoint_finds_the_connection_counts_and_files_the_close() -> None:
    """MUST-54: the Endpoint directs the error to the quoted 4-tuple's connection; each
    verdict has its counter; a hard error's CLOSED connection leaves the table."""
    endpoint = Endpoint(LOCAL_IP, isn_generator=fixed_isn, config=PLAIN)
    conn = endpoint.connect(REMOTE_IP, REMOTE_PORT, now=0, local_port=LOCAL_PORT)
    syn = Segment(LOCAL_PORT, REMOTE_PORT, LOCAL_ISS, 0, Flag.SYN, 65535, 0, Options(mss=1460))
    assert endpoint.datagrams_to_send(now=0) == [Datagram(LOCAL_IP, REMOTE_IP, syn)]

    stray = IcmpReport(LOCAL_IP, 9999, REMOTE_IP, REMOTE_PORT, 1, IcmpKind.PORT_UNREACHABLE)
    assert endpoint.receive_icmp_error(stray, now=1_000) == "no_connection"
    guess = report(LOCAL_ISS + 7, IcmpKind.PORT_UNREACHABLE)
    assert endpoint.receive_icmp_error(guess, now=2_000) == "seq_out_of_window"
    soft = report(LOCAL_ISS, IcmpKind.NET_UNREACHABLE)
    assert endpoint.receive_icmp_error(soft, now=3_000) == "soft_error"
    assert endpoint.connections[conn.four_tuple] is conn and conn.state is SS
    hard = report(LOCAL_ISS, IcmpKind.PORT_UNREACHABLE)
    assert endpoint.receive_icmp_error(hard, now=4_000) == "hard_error"

    assert conn.state is C and conn.close_reason is CloseReason.UNREACHABLE
    assert conn.icmp_error == hard
    assert conn.four_tuple not in endpoint.connections
    assert endpoint.next_timer() is None
    assert endpoint.datagrams_to_send(now=4_000) == []  # no RST for an ICMP error
    assert {k: v for k, v in endpoint.stats.items() if k.startswith("icmp.")} == {
        "icmp.no_connection": 1,
        "icmp.seq_out_of_window": 1,
        "icmp.soft_error": 1,
        "icmp.hard_error": 1,
    }
