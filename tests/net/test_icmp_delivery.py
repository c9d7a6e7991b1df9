"""ICMP errors from the Linux kernel reach tcpstack's connections (RFC 9293 MUST-54..56).

Each real-network test makes the kernel in a fresh namespace send the ICMP message
itself, with routes that exist only inside that namespace: forwarding on, then
`unreachable` (ICMP host unreachable), `prohibit` (ICMP communication administratively
prohibited, code 13) or a route with MTU 1280 back through the TUN (ICMP fragmentation
needed). Nothing leaves the namespace.
"""

from __future__ import annotations

import asyncio
import errno
import secrets
import struct
from collections.abc import Iterator

import pytest

from tcpstack import aio
from tcpstack import socket as tsock
from tcpstack.core.codec import encode_segment, internet_checksum
from tcpstack.core.config import Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.events import CloseReason
from tcpstack.core.icmp import IcmpKind, IcmpReport
from tcpstack.core.isn import KeyedIsnGenerator
from tcpstack.core.segment import Flag, Segment
from tcpstack.core.state import State
from tcpstack.net.host import NetHost
from tcpstack.net.loop import NetLoop
from tcpstack.net.netns import Netns, entered, netns_exists
from tcpstack.net.packet import ICMP, TCP, IcmpError, IpLayer, encode_ipv4

from .conftest import fresh_netns_config, require_tun

K4, S4 = "10.77.0.1", "10.77.0.2"
SECOND = 1_000_000


def forwarding_on(netns: str) -> None:
    """Let the namespace's kernel route (it then answers unroutable packets with ICMP)."""
    with entered(netns), open("/proc/sys/net/ipv4/ip_forward", "w") as knob:
        knob.write("1")


# --------------------------------------------------------------------------- mapping


def _error(version: int, kind: str, code: int, mtu: int | None = None) -> IcmpError:
    local, remote = ("fd77::2", "fd77::9") if version == 6 else (S4, "10.77.1.5")
    return IcmpError(version, K4, kind, code, f"code_{code}", local, 40000, remote, 80, 7, mtu)


@pytest.mark.parametrize(
    ("version", "kind", "code", "expected"),
    [
        (4, "unreachable", 0, IcmpKind.NET_UNREACHABLE),
        (4, "unreachable", 1, IcmpKind.HOST_UNREACHABLE),
        (4, "unreachable", 2, IcmpKind.PROTOCOL_UNREACHABLE),
        (4, "unreachable", 3, IcmpKind.PORT_UNREACHABLE),
        (4, "unreachable", 4, IcmpKind.FRAGMENTATION_NEEDED),
        (4, "unreachable", 5, IcmpKind.SOURCE_ROUTE_FAILED),
        (4, "unreachable", 13, IcmpKind.ADMIN_PROHIBITED),
        (4, "time_exceeded", 0, IcmpKind.TIME_EXCEEDED),
        (6, "unreachable", 0, IcmpKind.NET_UNREACHABLE),
        (6, "unreachable", 1, IcmpKind.ADMIN_PROHIBITED),
        (6, "unreachable", 3, IcmpKind.HOST_UNREACHABLE),
        (6, "unreachable", 4, IcmpKind.PORT_UNREACHABLE),
        (6, "packet_too_big", 0, IcmpKind.FRAGMENTATION_NEEDED),
    ],
)
def test_parsed_icmp_errors_become_core_reports(
    version: int, kind: str, code: int, expected: IcmpKind
) -> None:
    error = _error(version, kind, code, 1280 if "big" in kind or code == 4 else None)
    report = error.report()
    assert report == IcmpReport(
        error.local_ip,
        40000,
        error.remote_ip,
        80,
        7,
        expected,
        error.mtu,
        K4,
    )


def test_unknown_unreachable_codes_are_not_delivered() -> None:
    assert _error(4, "unreachable", 99).report() is None


def test_source_quench_is_silently_discarded() -> None:
    """RFC 9293 MUST-55: an ICMP Source Quench (type 4) quoting our segment never
    reaches TCP; it is only counted."""
    syn = Segment(40000, 80, 7, 0, Flag.SYN, 65535)
    ours = encode_ipv4(S4, K4, TCP, encode_segment(syn, S4, K4))
    body = struct.pack("!BBHI", 4, 0, 0, 0) + ours[:28]
    body = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
    layer = IpLayer({S4})
    assert layer.classify(encode_ipv4(K4, S4, ICMP, body)) is None
    assert layer.stats == {"icmp.type.4": 1}


# --------------------------------------------------------------------------- the kernel


def test_kernel_host_unreachable_is_a_soft_error_reported_when_connect_times_out(
    host: NetHost,
) -> None:
    """An `unreachable` route: the kernel answers each SYN with ICMP host unreachable.
    The connection keeps trying (MUST-56); when its one SYN retry is spent (1 s + 2 s)
    open_connection raises EHOSTUNREACH instead of ETIMEDOUT, as Linux's connect()."""
    forwarding_on(host.netns.name)
    host.netns.run(["ip", "route", "add", "unreachable", "10.77.1.0/24"])
    one_retry = Config(syn_retries=1, mss=1460)

    async def main() -> tuple[int | None, float]:
        started = asyncio.get_running_loop().time()
        with pytest.raises(OSError) as caught:
            await aio.open_connection("10.77.1.5", 80, stack=host.loop, config=one_retry)
        return caught.value.errno, asyncio.get_running_loop().time() - started

    code, took = asyncio.run(main())
    assert code == errno.EHOSTUNREACH
    assert 2.9 < took < 10  # the SYN timeout at 3 s, not an early abort
    stats = host.loop.all_stats()
    assert stats["icmp.unreachable.host_unreachable"] >= 1
    assert stats["tcp.icmp.soft_error"] == stats["icmp.delivered.soft_error"] >= 1
    assert stats["tcp.icmp.hard_error"] == 0


def test_socket_connect_through_an_unreachable_route_raises_ehostunreach(host: NetHost) -> None:
    """The BSD-style socket API over the NetLoop reports the soft error the same way."""
    forwarding_on(host.netns.name)
    host.netns.run(["ip", "route", "add", "unreachable", "10.77.1.0/24"])
    # net.ipv4.tcp_syn_retries = 1 for this stack: the attempt ends at 3 s.
    host.endpoint.config = host.endpoint.config.with_changes(syn_retries=1)
    sock = tsock.socket(driver=host.loop, address=S4)
    with pytest.raises(OSError) as caught:
        sock.connect(("10.77.1.5", 80))
    assert caught.value.errno == errno.EHOSTUNREACH
    sock.close()


def test_kernel_admin_prohibited_ends_syn_sent_at_once(host: NetHost) -> None:
    """A `prohibit` route: ICMP code 13 for our SYN is a hard error, so the attempt
    ends in SYN_SENT right away (Linux's tcp_v4_err) with EHOSTUNREACH."""
    forwarding_on(host.netns.name)
    host.netns.run(["ip", "route", "add", "prohibit", "10.77.2.0/24"])

    def go(now: int) -> Connection:
        return host.endpoint.connect("10.77.2.5", 80, now=now)

    conn = host.loop.call(go)
    assert host.loop.wait_until(lambda: conn.state is State.CLOSED, 5 * SECOND)
    assert conn.state_history == [State.CLOSED, State.SYN_SENT, State.CLOSED]
    assert conn.close_reason is CloseReason.UNREACHABLE
    assert conn.icmp_error is not None
    assert conn.icmp_error.kind is IcmpKind.ADMIN_PROHIBITED
    assert conn.icmp_error.reporter == K4 and conn.icmp_error.seq == conn.iss
    assert conn.total_retransmissions == 0  # ended before the first SYN timeout
    assert host.endpoint.stats["icmp.hard_error"] == 1
    error = aio.close_error(conn)
    assert error is not None and error.errno == errno.EHOSTUNREACH


@pytest.fixture
def hairpin() -> Iterator[tuple[NetLoop, Endpoint, Endpoint]]:
    """Two tcpstack Endpoints, 10.77.0.2 and 10.77.9.5, with the namespace's kernel as
    the router between them: 10.77.9.0/24 is routed back out of the TUN via 10.77.0.2
    with MTU 1280, so the kernel forwards what .2 sends to .9.5 and answers segments
    larger than 1280 bytes (DF set) with ICMP fragmentation needed."""
    require_tun()
    config = fresh_netns_config()
    netns = Netns.create(config)
    loop: NetLoop | None = None
    try:
        forwarding_on(netns.name)
        netns.run(
            [
                *("ip", "route", "add", "10.77.9.0/24", "via", S4, "dev", config.tun),
                *("mtu", "lock", "1280"),
            ]
        )
        isn = KeyedIsnGenerator(secrets.token_bytes(16))
        sender = Endpoint(S4, isn_generator=isn, config=Config(mss=1460))
        receiver = Endpoint("10.77.9.5", isn_generator=isn, config=Config(mss=1460))
        loop = NetLoop(netns.tun, [sender, receiver])
        loop.start()
        yield loop, sender, receiver
    finally:
        if loop is not None:
            loop.close()
        netns.close()
        assert not netns_exists(config.name)


def test_kernel_fragmentation_needed_lowers_the_mss_and_the_data_gets_through(
    hairpin: tuple[NetLoop, Endpoint, Endpoint],
) -> None:
    """Path MTU discovery against a real router: segments of 1460 bytes meet the 1280
    MTU, the kernel says "fragmentation needed, MTU 1280", the MSS drops to 1240 (1228
    with timestamps) and all 100,000 bytes arrive."""
    loop, sender, receiver = hairpin
    data = bytes(i % 251 for i in range(100_000))
    loop.call(lambda now: receiver.listen(80))
    conn = loop.call(lambda now: sender.connect("10.77.9.5", 80, now=now))
    assert loop.wait_until(lambda: conn.state is State.ESTABLISHED, 5 * SECOND)
    assert conn.effective_mss == 1448  # 1460 less the timestamp option, before any ICMP
    loop.call(lambda now: conn.send(data, now=now))
    assert loop.wait_until(lambda: conn.send_buffered == 0, 10 * SECOND)
    child = loop.call(lambda now: receiver.accept(80))
    assert child is not None
    got = loop.call(lambda now: child.receive(len(data), now=now))
    assert got == data
    assert conn.pmtu_mss == 1240 and conn.effective_mss == 1228
    assert conn.state is State.ESTABLISHED and conn.icmp_error is None
    stats = loop.all_stats()
    assert stats["icmp.unreachable.fragmentation_needed"] >= 1
    assert stats["tcp.icmp.pmtu_lowered"] == 1
    first = loop.icmp_errors[0]
    assert (first.mtu, first.reporter, first.four_tuple) == (1280, K4, conn.four_tuple)
