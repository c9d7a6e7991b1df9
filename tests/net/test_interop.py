"""tcpstack against the Linux kernel's TCP over a TUN device in a network namespace.

tcpstack answers for 10.77.0.2 / fd77::2; the kernel's side are ordinary Python sockets
created inside the namespace (10.77.0.1 / fd77::1). Each test checks both ends' outcome
and tcpstack's exact state path. Faults (a lost ACK, crossing SYNs or FINs, a dead
peer) are made at the loop with a Tap, never by touching the core.
"""

from __future__ import annotations

import hashlib
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from tcpstack.core.config import SECOND
from tcpstack.core.connection import Connection
from tcpstack.core.events import CloseReason
from tcpstack.core.segment import Datagram, Flag, Segment
from tcpstack.core.state import State
from tcpstack.net.apps import ConnectionApp, StreamApp, Transfer
from tcpstack.net.host import NetHost
from tcpstack.net.loop import monotonic_us
from tcpstack.net.netns import entered

from .support import (
    Background,
    LoopNetem,
    Tap,
    is_fin,
    kernel_info,
    netem_available,
    recv_all,
    ss_states,
)

K4, S4 = "10.77.0.1", "10.77.0.2"
K6, S6 = "fd77::1", "fd77::2"
TIMEOUT = 20.0  # seconds, for the kernel's blocking calls
WAIT = 20 * SECOND

C, L, SS, SR, E = State.CLOSED, State.LISTEN, State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED
FW1, FW2, CW, CL = State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT, State.CLOSING
LA, TW = State.LAST_ACK, State.TIME_WAIT

MB = 1_000_000
# Row 1 of the interop matrix: 50 MB each way (about 10 s a test on this machine).
SIZES = [50 * MB]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


AppT = TypeVar("AppT", bound=StreamApp)


def serve(host: NetHost, port: int, make: Callable[[], AppT], *, v6: bool = False) -> list[AppT]:
    """Listen on tcpstack's port; every accepted connection gets make(); returns the apps."""
    apps: list[AppT] = []
    endpoint = host.endpoint6 if v6 else host.endpoint
    assert endpoint is not None

    def factory(conn: Connection) -> ConnectionApp:
        app = make()
        apps.append(app)
        return app

    def listen(now: int) -> None:
        endpoint.listen(port)
        host.dispatcher.serve(endpoint, port, factory)

    host.loop.call(listen)
    return apps


def connect(
    host: NetHost, ip: str, port: int, app: Transfer, *, local_port: int | None = None
) -> Connection:
    """tcpstack opens a connection to the kernel, driven by app."""
    endpoint = host.endpoint6 if ":" in ip else host.endpoint
    assert endpoint is not None

    def go(now: int) -> Connection:
        conn = endpoint.connect(ip, port, now=now, local_port=local_port)
        host.dispatcher.attach(conn, app)
        return conn

    return host.loop.call(go)


def accepted(host: NetHost, index: int = 0) -> Connection:
    assert host.loop.wait_until(lambda: len(host.dispatcher.accepted) > index, WAIT)
    return host.dispatcher.accepted[index]


def kernel_socket(host: NetHost, family: int = socket.AF_INET) -> socket.socket:
    sock = host.netns.socket(family)
    sock.settimeout(TIMEOUT)
    return sock


def kernel_listener(host: NetHost, port: int, ip: str = K4) -> socket.socket:
    sock = kernel_socket(host, socket.AF_INET6 if ":" in ip else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, port))
    sock.listen(8)
    return sock


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll something outside the loop (the kernel's socket state)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def exchange(kernel: socket.socket, payload: bytes) -> tuple[int, str]:
    """The kernel sends payload then SHUT_WR while reading to EOF: (count, SHA-256)."""

    def send() -> None:
        kernel.sendall(payload)
        kernel.shutdown(socket.SHUT_WR)

    sender = Background(send)
    count, digest, _ = recv_all(kernel)
    sender.result()
    return count, digest


# --------------------------------------------------------------------------- (1) bulk


@pytest.mark.parametrize("size", SIZES, ids=lambda n: f"{n // MB}MB")
def test_bulk_kernel_connects_to_tcpstack(host: NetHost, size: int) -> None:
    ours, theirs = random.Random(1).randbytes(size), random.Random(2).randbytes(size)
    apps = serve(host, 5001, lambda: Transfer(ours, close_when="eof"))
    kernel = kernel_socket(host)
    kernel.connect((S4, 5001))
    count, digest = exchange(kernel, theirs)
    kernel.close()
    assert host.loop.wait_until(lambda: bool(apps) and apps[0].done, WAIT)
    app = apps[0]
    assert (count, digest) == (size, sha(ours))  # tcpstack -> kernel
    assert (app.received, app.digest_in) == (size, sha(theirs))  # kernel -> tcpstack
    assert app.closed is CloseReason.NORMAL
    assert accepted(host).state_history == [C, L, SR, E, CW, LA, C]


@pytest.mark.parametrize("size", SIZES, ids=lambda n: f"{n // MB}MB")
def test_bulk_tcpstack_connects_to_the_kernel(host: NetHost, size: int) -> None:
    ours, theirs = random.Random(3).randbytes(size), random.Random(4).randbytes(size)
    listener = kernel_listener(host, 5002)
    app = Transfer(ours, close_when="eof")
    conn = connect(host, K4, 5002, app)
    kernel, _ = listener.accept()
    kernel.settimeout(TIMEOUT)
    count, digest = exchange(kernel, theirs)
    kernel.close()
    listener.close()
    assert host.loop.wait_until(lambda: app.done, WAIT)
    assert (count, digest) == (size, sha(ours))
    assert (app.received, app.digest_in) == (size, sha(theirs))
    assert app.closed is CloseReason.NORMAL
    assert conn.state_history == [C, SS, E, CW, LA, C]


def test_bulk_both_ways_with_tso_offload(offload_host: NetHost) -> None:
    host = offload_host
    ours, theirs = random.Random(9).randbytes(5 * MB), random.Random(10).randbytes(5 * MB)
    tap = Tap(host.loop).install()
    apps = serve(host, 5005, lambda: Transfer(ours, close_when="eof"))
    kernel = kernel_socket(host)
    kernel.connect((S4, 5005))
    assert exchange(kernel, theirs) == (5 * MB, sha(ours))
    kernel.close()
    assert host.loop.wait_until(lambda: bool(apps) and apps[0].done, WAIT)
    assert apps[0].digest_in == sha(theirs) and apps[0].closed is CloseReason.NORMAL
    assert accepted(host).state_history == [C, L, SR, E, CW, LA, C]
    # The kernel handed over segments beyond the MSS; tcpstack's went out as TSO packets.
    assert max(len(s.payload) for s in tap.segments(outgoing=False)) > 1448
    assert max(len(s.payload) for s in tap.segments(outgoing=True)) <= 1448
    assert host.loop.stats["tx.gso_packets"] > 0
    # IPv6 too (TSO6 / VIRTIO_NET_HDR_GSO_TCPV6).
    gso_before = host.loop.stats["tx.gso_packets"]
    apps6 = serve(host, 5006, lambda: Transfer(ours[:MB], close_when="eof"), v6=True)
    kernel = kernel_socket(host, socket.AF_INET6)
    kernel.connect((S6, 5006))
    assert exchange(kernel, theirs[:MB]) == (MB, sha(ours[:MB]))
    kernel.close()
    assert host.loop.wait_until(lambda: bool(apps6) and apps6[0].done, WAIT)
    assert apps6[0].digest_in == sha(theirs[:MB])
    assert host.loop.stats["tx.gso_packets"] > gso_before


def test_ipv6_both_ways(host: NetHost) -> None:
    ours, theirs = random.Random(5).randbytes(MB), random.Random(6).randbytes(MB)
    tap = Tap(host.loop).install()
    apps = serve(host, 5003, lambda: Transfer(ours, close_when="eof"), v6=True)
    kernel = kernel_socket(host, socket.AF_INET6)
    kernel.connect((S6, 5003))
    assert exchange(kernel, theirs) == (MB, sha(ours))
    kernel.close()
    assert host.loop.wait_until(lambda: bool(apps) and apps[0].done, WAIT)
    assert apps[0].digest_in == sha(theirs) and apps[0].closed is CloseReason.NORMAL
    # Our SYN,ACK offers the IPv6 MSS: MTU 1500 - 40 (IPv6) - 20 (TCP).
    synack = tap.segments(outgoing=True, flags=Flag.SYN | Flag.ACK)[0]
    assert synack.options.mss == 1440

    listener = kernel_listener(host, 5004, K6)
    app = Transfer(ours, close_when="eof")
    conn = connect(host, K6, 5004, app)
    kernel, _ = listener.accept()
    kernel.settimeout(TIMEOUT)
    assert exchange(kernel, theirs) == (MB, sha(ours))
    kernel.close()
    listener.close()
    assert host.loop.wait_until(lambda: app.done, WAIT)
    assert app.digest_in == sha(theirs)
    assert conn.state_history == [C, SS, E, CW, LA, C]


# --------------------------------------------------------------------------- (2) closers


def test_tcpstack_closes_first_and_re_acks_a_retransmitted_fin_in_time_wait(
    host: NetHost,
) -> None:
    message = b"tcpstack closes first. " * 100
    apps = serve(host, 5010, lambda: Transfer(message, close_when="sent"))

    def first_final_ack(datagram: Datagram) -> bool:
        conn = host.dispatcher.accepted[0] if host.dispatcher.accepted else None
        return (
            conn is not None
            and conn.state is State.TIME_WAIT
            and datagram.segment.flags == Flag.ACK
            and not tap.dropped_out
        )

    tap = Tap(host.loop, drop_out=first_final_ack).install()
    kernel = kernel_socket(host)
    kernel.connect((S4, 5010))
    count, digest, _ = recv_all(kernel)  # to tcpstack's FIN
    assert (count, digest) == (len(message), sha(message))
    # Give the kernel's (possibly delayed) ACK of our FIN time to go out on its own,
    # so that tcpstack passes through FIN_WAIT_2 rather than straight to TIME_WAIT.
    time.sleep(0.25)
    kernel.shutdown(socket.SHUT_WR)  # CLOSE_WAIT -> LAST_ACK; the fd stays for TCP_INFO
    # tcpstack's ACK of that FIN is dropped; the kernel retransmits its FIN after its
    # RTO, and tcpstack's TIME_WAIT entry acknowledges it again.
    assert wait_for(lambda: kernel_info(kernel).state == "CLOSE")
    conn = accepted(host)
    assert conn.state_history == [C, L, SR, E, FW1, FW2, TW]
    assert apps[0].closed is None  # 2*MSL (60 s) has not passed
    assert len(tap.dropped_out) == 1
    kernel_fins = [s for s in tap.segments(outgoing=False) if s.flags & Flag.FIN]
    assert len(kernel_fins) == 2 and kernel_fins[0].seq == kernel_fins[1].seq
    assert kernel_info(kernel).total_retrans >= 1
    re_acks = [s for s in tap.segments(outgoing=True) if s.ack == kernel_fins[0].seq + 1]
    assert len(re_acks) == 2  # the dropped one and the TIME_WAIT entry's answer
    assert host.endpoint.stats["time_wait.ack_restart"] == 1
    kernel.close()


def test_the_kernel_closes_first_and_keeps_time_wait(host: NetHost) -> None:
    apps = serve(host, 5011, lambda: Transfer(close_when="eof", keep=True))
    kernel = kernel_socket(host)
    kernel.connect((S4, 5011))
    kernel_port = kernel.getsockname()[1]
    kernel.sendall(b"the kernel closes first")
    kernel.close()
    assert host.loop.wait_until(lambda: bool(apps) and apps[0].done, WAIT)
    assert bytes(apps[0].data) == b"the kernel closes first"
    assert apps[0].closed is CloseReason.NORMAL
    assert accepted(host).state_history == [C, L, SR, E, CW, LA, C]
    assert wait_for(lambda: ss_states(host.netns.name, kernel_port) == ["TIME-WAIT"])


# --------------------------------------------------------------------------- (3) closes


def test_simultaneous_close(host: NetHost) -> None:
    apps = serve(host, 5020, lambda: Transfer(close_when=None))
    kernel = kernel_socket(host)
    kernel.connect((S4, 5020))
    kernel_port = kernel.getsockname()[1]
    conn = accepted(host)
    assert host.loop.wait_until(lambda: conn.state is State.ESTABLISHED, WAIT)
    # Our FIN waits at the TUN until the kernel's FIN arrives; then it goes out first,
    # so the two FINs cross and each side is in FIN_WAIT_1 when the other's arrives.
    tap = Tap(host.loop, hold_out=lambda d: is_fin(d.segment), release_on_in=is_fin).install()
    host.loop.call(lambda now: conn.close(now=now))
    assert host.loop.wait_until(lambda: bool(tap.held), WAIT)
    kernel.shutdown(socket.SHUT_WR)
    assert kernel.recv(10) == b""
    assert host.loop.wait_until(lambda: conn.state is State.TIME_WAIT, WAIT)
    assert conn.state_history == [C, L, SR, E, FW1, CL, TW]
    our_fin = tap.segments(outgoing=True, flags=Flag.FIN | Flag.ACK)[0]
    kernel_fin = next(s for s in tap.segments(outgoing=False) if s.flags & Flag.FIN)
    assert kernel_fin.ack == our_fin.seq  # the kernel had not seen our FIN: they crossed
    assert wait_for(lambda: ss_states(host.netns.name, kernel_port) == ["TIME-WAIT"])
    assert apps[0].eof and apps[0].closed is None
    kernel.close()


class ReplyAfterEof(Transfer):
    """Sends `reply` only once the peer has half-closed."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(close_when="eof", keep=True)
        self.reply = reply

    def pump(self, conn: Connection, now: int) -> None:
        if self.eof and not self.payload:
            self.payload = self.reply
        super().pump(conn, now)


def test_half_close_tcpstack_keeps_sending(host: NetHost) -> None:
    reply = random.Random(8).randbytes(MB)
    apps = serve(host, 5021, lambda: ReplyAfterEof(reply))
    tap = Tap(host.loop).install()
    kernel = kernel_socket(host)
    kernel.connect((S4, 5021))
    kernel.sendall(b"request")
    kernel.shutdown(socket.SHUT_WR)
    count, digest, _ = recv_all(kernel)
    assert (count, digest) == (MB, sha(reply))
    assert host.loop.wait_until(lambda: bool(apps) and apps[0].done, WAIT)
    assert bytes(apps[0].data) == b"request" and apps[0].closed is CloseReason.NORMAL
    assert accepted(host).state_history == [C, L, SR, E, CW, LA, C]
    # Every byte of the reply travelled after the kernel's FIN.
    with host.loop.lock:
        seen = list(tap.seen)
    fin_index = next(i for i, s in enumerate(seen) if not s.outgoing and s.flags & Flag.FIN)
    assert sum(len(s.segment.payload) for s in seen[fin_index:] if s.outgoing) == MB
    kernel.close()


# --------------------------------------------------------------------------- (4) refused


def test_connecting_to_a_closed_port_is_refused_both_ways(host: NetHost) -> None:
    kernel = kernel_socket(host)
    with pytest.raises(ConnectionRefusedError):
        kernel.connect((S4, 5999))
    kernel.close()
    assert host.endpoint.stats["no_connection"] == 1

    app = Transfer()
    conn = connect(host, K4, 5998, app)
    assert host.loop.wait_until(lambda: app.done, WAIT)
    assert app.closed is CloseReason.REFUSED
    assert conn.state_history == [C, SS, C]


# --------------------------------------------------------------------------- (5) linger 0


def test_tcpstack_linger_zero_close_resets_the_kernel(host: NetHost) -> None:
    apps = serve(host, 5030, lambda: Transfer(close_when=None))
    kernel = kernel_socket(host)
    kernel.connect((S4, 5030))
    conn = accepted(host)
    assert host.loop.wait_until(lambda: conn.state is State.ESTABLISHED, WAIT)
    tap = Tap(host.loop).install()

    def close_linger_zero(now: int) -> None:
        conn.configure(now=now, linger=0)
        conn.close(now=now)

    host.loop.call(close_linger_zero)
    with pytest.raises(ConnectionResetError):
        kernel.recv(10)
    kernel.close()
    assert apps[0].closed is CloseReason.ABORTED
    assert conn.state_history == [C, L, SR, E, C]
    assert [s.flags for s in tap.segments(outgoing=True)] == [Flag.RST]


def test_kernel_linger_zero_close_resets_tcpstack(host: NetHost) -> None:
    apps = serve(host, 5031, lambda: Transfer(close_when=None))
    kernel = kernel_socket(host)
    kernel.connect((S4, 5031))
    conn = accepted(host)
    assert host.loop.wait_until(lambda: conn.state is State.ESTABLISHED, WAIT)
    kernel.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    kernel.close()
    assert host.loop.wait_until(lambda: bool(apps) and apps[0].done, WAIT)
    assert apps[0].closed is CloseReason.RESET
    assert conn.state_history == [C, L, SR, E, C]


# --------------------------------------------------------------------------- (6) keepalive

KEEPALIVE = {
    "keepalive": True,
    "keepalive_idle": 1 * SECOND,
    "keepalive_interval": 1 * SECOND,
    "keepalive_count": 3,
}


def is_probe_from(conn: Connection, segment: Segment) -> bool:
    """A keepalive probe: SEG.SEQ = SND.NXT - 1 and at most one garbage octet."""
    return (
        segment.flags == Flag.ACK
        and len(segment.payload) <= 1
        and (segment.seq == (conn.snd_nxt - 1) % 2**32)
    )


def test_tcpstack_keepalive_probes_the_kernel_which_answers(host: NetHost) -> None:
    listener = kernel_listener(host, 5040)
    app = Transfer(close_when=None)
    conn = connect(host, K4, 5040, app)
    kernel, _ = listener.accept()
    assert host.loop.wait_until(lambda: conn.state is State.ESTABLISHED, WAIT)
    tap = Tap(host.loop).install()

    def keepalive_on(now: int) -> int:
        conn.configure(now=now, **KEEPALIVE)
        return now

    started = host.loop.call(keepalive_on)
    host.loop.wait_until(lambda: False, 2_500_000)
    with host.loop.lock:
        probes = [s for s in tap.seen if s.outgoing and is_probe_from(conn, s.segment)]
        answers = [s for s in tap.seen if not s.outgoing and s.segment.ack == conn.snd_nxt]
        state, out = conn.state, conn.keepalive_probes_out
    assert len(probes) == 2  # at idle, and idle again after the answer
    assert 1 * SECOND <= probes[0].time - started < 1 * SECOND + 200_000
    assert len(answers) == 2  # the kernel acknowledged each probe
    assert state is State.ESTABLISHED and out == 0
    kernel.close()
    listener.close()


def test_kernel_keepalive_probes_tcpstack_which_answers(host: NetHost) -> None:
    serve(host, 5041, lambda: Transfer(close_when=None))
    kernel = kernel_socket(host)
    kernel.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    kernel.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    kernel.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    kernel.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    tap = Tap(host.loop).install()
    kernel.connect((S4, 5041))
    conn = accepted(host)
    time.sleep(2.5)
    with host.loop.lock:
        probes = [
            s
            for s in tap.seen
            if not s.outgoing
            and s.segment.flags == Flag.ACK
            and not s.segment.payload
            and s.segment.seq == (conn.rcv_nxt - 1) % 2**32
        ]
        answers = [s for s in tap.seen if s.outgoing and s.segment.flags == Flag.ACK]
    assert len(probes) == 2
    assert len(answers) >= 2
    info = kernel_info(kernel)
    assert info.state == "ESTABLISHED" and info.probes == 0
    assert conn.state is State.ESTABLISHED
    kernel.close()


def test_keepalive_times_out_when_the_kernel_goes_silent(host: NetHost) -> None:
    listener = kernel_listener(host, 5042)
    app = Transfer(close_when=None)
    conn = connect(host, K4, 5042, app)
    kernel, _ = listener.accept()
    kernel.settimeout(TIMEOUT)
    assert host.loop.wait_until(lambda: conn.state is State.ESTABLISHED, WAIT)
    tap = Tap(host.loop).install()

    def go_silent(now: int) -> int:
        tap.drop_in = lambda segment: True  # the kernel's answers never arrive
        conn.configure(now=now, **KEEPALIVE)
        return now

    started = host.loop.call(go_silent)
    assert host.loop.wait_until(lambda: app.done, 10 * SECOND)
    assert app.closed is CloseReason.KEEPALIVE_TIMEOUT
    assert app.closed_at is not None
    elapsed = app.closed_at - started
    expected = 1 * SECOND + 3 * 1 * SECOND  # idle + count x interval
    print(f"keepalive timeout after {elapsed} us (expected {expected} us)")
    assert expected <= elapsed < expected + 250_000, elapsed
    with host.loop.lock:
        probes = [s for s in tap.seen if s.outgoing and s.segment.flags == Flag.ACK]
    assert len(probes) == 3 and len(tap.dropped_in) == 3
    assert conn.state_history == [C, SS, E, C]
    with pytest.raises(ConnectionResetError):  # tcpstack's RST reached the kernel
        kernel.recv(10)
    kernel.close()
    listener.close()


# --------------------------------------------------------------------------- (9) open


def test_simultaneous_open(host: NetHost) -> None:
    kernel = kernel_socket(host)
    kernel.bind((K4, 5050))
    # Our SYN waits at the TUN until the kernel's SYN arrives; then it goes out first,
    # so each side receives the other's SYN while in SYN_SENT.
    tap = Tap(host.loop, hold_out=lambda d: d.segment.flags == Flag.SYN)
    tap.release_on_in = lambda s: s.flags == Flag.SYN
    tap.install()
    app = Transfer(b"from tcpstack", close_when="eof", keep=True)
    conn = connect(host, K4, 5050, app, local_port=5051)
    assert host.loop.wait_until(lambda: bool(tap.held), WAIT)
    kernel.connect((S4, 5051))
    kernel.sendall(b"from the kernel")
    kernel.shutdown(socket.SHUT_WR)
    _, _, head = recv_all(kernel)
    assert head == b"from tcpstack"
    kernel.close()
    assert host.loop.wait_until(lambda: app.done, WAIT)
    assert bytes(app.data) == b"from the kernel" and app.closed is CloseReason.NORMAL
    assert conn.state_history == [C, SS, SR, E, CW, LA, C]
    syns = [s.flags for s in tap.seen if s.flags & Flag.SYN]
    # Two bare SYNs crossed, then each side answered with SYN,ACK.
    assert sorted(syns) == sorted([Flag.SYN, Flag.SYN, Flag.SYN | Flag.ACK, Flag.SYN | Flag.ACK])


# --------------------------------------------------------------------------- IP and ICMP


def _ping(host: NetHost, family: int, target: str) -> bytes:
    """Send one echo request from the kernel's side with a raw socket; the reply body."""
    v6 = family == socket.AF_INET6
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    sock = host.netns.socket(family, socket.SOCK_RAW, proto)
    sock.settimeout(5)
    body = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, 0x77, 1) + b"tcpstack ping"
    if not v6:
        from tcpstack.core.codec import internet_checksum

        body = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
    sock.sendto(body, (target, 0))
    try:
        while True:
            data = sock.recv(2048)
            message = data if v6 else data[(data[0] & 0x0F) * 4 :]
            if message[0] == (129 if v6 else 0):
                return message
    finally:
        sock.close()


def test_ping_is_answered_on_both_families(host: NetHost) -> None:
    assert _ping(host, socket.AF_INET, S4).endswith(b"tcpstack ping")
    assert _ping(host, socket.AF_INET6, S6).endswith(b"tcpstack ping")
    assert host.loop.ip.stats["icmp.echo_request"] == 1
    assert host.loop.ip.stats["icmpv6.echo_request"] == 1


def test_ip_options_and_fragments_are_dropped_and_counted(host: NetHost) -> None:
    udp = host.netns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Four bytes of options (NOP NOP NOP EOL): IHL 6.
    udp.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"\x01\x01\x01\x00")
    udp.sendto(b"with options", (S4, 9999))
    plain = host.netns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT
    plain.sendto(bytes(3000), (S4, 9999))  # 3,008 bytes of UDP: three fragments
    stats = host.loop.ip.stats
    assert host.loop.wait_until(lambda: stats["ipv4.fragment"] == 3, 5 * SECOND)
    assert stats["ipv4.options"] == 1
    udp.close()
    plain.close()


def test_icmp_unreachable_is_parsed_counted_and_traced(host: NetHost) -> None:
    # Inside the namespace only: forward, and answer 10.77.1.0/24 with "unreachable".
    with entered(host.netns.name), open("/proc/sys/net/ipv4/ip_forward", "w") as knob:
        knob.write("1")
    host.netns.run(["ip", "route", "add", "unreachable", "10.77.1.0/24"])
    app = Transfer()
    conn = connect(host, "10.77.1.5", 80, app)
    assert host.loop.wait_until(lambda: bool(host.loop.icmp_errors), 5 * SECOND)
    error = host.loop.icmp_errors[0]
    assert error.four_tuple == conn.four_tuple
    assert (error.kind, error.code_name, error.reporter) == (
        "unreachable",
        "host_unreachable",
        K4,
    )
    assert error.seq == conn.iss
    assert host.loop.stats["icmp.errors.matched"] == 1
    assert host.loop.ip.stats["icmp.unreachable.host_unreachable"] == 1
    # Host unreachable is a soft error: recorded on the connection, which keeps trying
    # (RFC 9293 MUST-56; tests/net/test_icmp_delivery.py follows it to EHOSTUNREACH).
    assert conn.state is State.SYN_SENT
    assert conn.icmp_error is not None
    host.loop.call(lambda now: conn.abort(now=now))


# --------------------------------------------------------------------------- (7) netem

NETEM = ["loss", "2%", "delay", "10ms", "5ms", "reorder", "25%", "50%"]
NETEM_SIZE = 20 * MB


@pytest.mark.parametrize("impairment", ["tc-netem", "loop-netem"])
def test_bulk_both_ways_through_loss_delay_and_reordering(host: NetHost, impairment: str) -> None:
    """20 MB each way with what the kernel sends lost (2%), delayed 10 ms ± 5 ms and
    reordered. "tc-netem": a netem qdisc on the TUN inside the namespace (skipped when
    the kernel has no sch_netem); "loop-netem": the same impairment applied at the loop
    to the kernel's packets (LoopNetem), which runs everywhere."""
    dev = host.netns.config.tun
    emulated: LoopNetem | None = None
    if impairment == "tc-netem":
        if not netem_available(host.netns.name, dev):
            pytest.skip("this kernel has no netem qdisc (sch_netem)")
        host.netns.run(["tc", "qdisc", "add", "dev", dev, "root", "netem", *NETEM])
        shown = host.netns.run(["tc", "qdisc", "show", "dev", dev]).stdout
        assert "netem" in shown and "loss 2%" in shown
    else:
        emulated = LoopNetem(host.loop).install()
    ours = random.Random(71).randbytes(NETEM_SIZE)
    theirs = random.Random(72).randbytes(NETEM_SIZE)
    apps = serve(host, 5060, lambda: Transfer(ours, close_when="eof"))
    kernel = kernel_socket(host)
    kernel.settimeout(60)
    started = time.monotonic()
    kernel.connect((S4, 5060))
    count, digest = exchange(kernel, theirs)
    kernel.close()
    assert host.loop.wait_until(lambda: bool(apps) and apps[0].done, 60 * SECOND)
    elapsed = time.monotonic() - started
    app = apps[0]
    assert (count, digest) == (NETEM_SIZE, sha(ours))  # tcpstack -> kernel
    assert (app.received, app.digest_in) == (NETEM_SIZE, sha(theirs))  # kernel -> tcpstack
    assert app.closed is CloseReason.NORMAL
    assert accepted(host).state_history == [C, L, SR, E, CW, LA, C]
    print(f"\n{impairment}: 20 MB each way in {elapsed:.1f} s; {emulated}")
    if emulated is not None:
        assert emulated.lost > 0 and emulated.immediate > 0 and emulated.delayed > 0
    assert elapsed < 60


# --------------------------------------------------------------------------- linger N

LINGER_SECONDS = 2


def test_kernel_linger_n_close_blocks_then_keeps_retransmitting_without_rst(
    host: NetHost,
) -> None:
    """What Linux does with SO_LINGER {1, 2} when the peer never acknowledges.

    tcpstack accepts, then none of its segments reach the kernel (dropped at the loop),
    so the kernel's data and FIN stay unacknowledged. Finding: the kernel's blocking
    close() returns after the 2 s linger time (without an error), and the connection
    lives on as an orphan that keeps retransmitting its data and FIN: no RST. That is
    what tcpstack's Config.linger documents for N > 0.
    """
    apps = serve(host, 5070, lambda: Transfer(close_when=None))
    kernel = kernel_socket(host)
    kernel.connect((S4, 5070))
    conn = accepted(host)
    assert host.loop.wait_until(lambda: conn.state is State.ESTABLISHED, WAIT)
    tap = Tap(host.loop, drop_out=lambda d: True).install()  # tcpstack goes mute
    payload = b"linger " * 1000
    kernel.sendall(payload)
    kernel.settimeout(None)  # a blocking socket, so close() may block
    kernel.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, LINGER_SECONDS))
    started = time.monotonic()
    kernel.close()
    blocked = time.monotonic() - started
    returned_at = monotonic_us()  # the loop's clock, which stamps tap.seen
    time.sleep(2.0)  # watch what the orphan does after close() returned
    with host.loop.lock:
        arrived = [s for s in tap.seen if not s.outgoing]
    fins = [s for s in arrived if s.flags & Flag.FIN]
    resets = [s for s in arrived if s.flags & Flag.RST]
    after = [s for s in arrived if s.time >= returned_at]
    print(
        f"\nLinux SO_LINGER {{1, {LINGER_SECONDS}}}: close() blocked {blocked:.2f} s; "
        f"{len(fins)} FINs, {len(resets)} RSTs; after close() returned: "
        f"{[(s.segment.flags, len(s.segment.payload)) for s in after]}"
    )
    # close() blocked for the linger time (2 s), not less and not much more.
    assert LINGER_SECONDS - 0.05 <= blocked < LINGER_SECONDS + 0.5
    # No RST, ever: the connection closes "normally" in the background.
    assert resets == []
    # The FIN went out during close(); after close() returned the orphan went on
    # retransmitting (data and/or FIN, by its backed-off RTO).
    assert fins and fins[0].time < returned_at
    assert after and all(not (s.flags & Flag.RST) for s in after)
    # tcpstack received everything (its ACKs were dropped, not its input).
    assert host.loop.wait_until(lambda: apps[0].eof, WAIT)
    assert apps[0].received == len(payload)
    assert conn.state is State.CLOSE_WAIT
    host.loop.call(lambda now: conn.abort(now=now))
