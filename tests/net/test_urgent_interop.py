"""Urgent data (RFC 9293 3.8.5) between tcpstack and the Linux kernel over the TUN.

Linux marks every segment it sends before its urgent pointer with URG and the pointer
SND.UP - SEG.SEQ, which may lie beyond the segment's own data (tcp_transmit_skb). Until
this test existed tcpstack dropped such segments as hostile, and a kernel peer using
MSG_OOB behind queued data stalled the connection.

The kernel reads urgent data the BSD way (net.ipv4.tcp_stdurg = 0): the pointer names
the octet after the urgent data, and the last urgent octet is the "out-of-band" byte
that recv(MSG_OOB) returns and ordinary reads skip (unless SO_OOBINLINE).
"""

from __future__ import annotations

import fcntl
import random
import socket
import struct

from tcpstack.core.connection import Connection
from tcpstack.core.events import CloseReason, UrgentData
from tcpstack.core.segment import Flag
from tcpstack.core.seq import seq_add, seq_lt
from tcpstack.core.state import State
from tcpstack.net.apps import StreamApp, Transfer
from tcpstack.net.host import NetHost

from .support import Tap, recv_all
from .test_interop import MB, S4, WAIT, accepted, kernel_socket, serve, sha, wait_for

SIOCATMARK = 0x8905  # linux/sockios.h: is the next byte the urgent mark?


def at_mark(sock: socket.socket) -> bool:
    (mark,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), SIOCATMARK, bytes(4)))
    return bool(mark)


def test_kernel_sends_urgent_data_behind_a_megabyte(host: NetHost) -> None:
    bulk = random.Random(31).randbytes(MB)
    apps = serve(host, 5061, lambda: Transfer(b"", close_when="eof"))
    tap = Tap(host.loop).install()
    kernel = kernel_socket(host)
    kernel.connect((S4, 5061))
    kernel.sendall(bulk)
    kernel.send(b"!", socket.MSG_OOB)
    kernel.shutdown(socket.SHUT_WR)
    assert host.loop.wait_until(lambda: bool(apps) and apps[0].done, WAIT)
    kernel.close()
    app = apps[0]
    # Every byte arrives in order, the urgent one in line.
    assert (app.received, app.digest_in) == (MB + 1, sha(bulk + b"!"))
    assert app.closed is CloseReason.NORMAL
    assert accepted(host).state_history[-2:] == [State.LAST_ACK, State.CLOSED]
    assert host.endpoint is not None
    assert not any(name.startswith("hostile.") for name in host.endpoint.stats)
    with host.loop.lock:
        seen = list(tap.seen)
    syn = next(s for s in seen if not s.outgoing and s.flags & Flag.SYN)
    marked = [s.segment for s in seen if not s.outgoing and s.flags & Flag.URG]
    # The kernel's URG segments point just past the '!' (ISS + 1 + MB + 1), or, when
    # that is more than 16 bits away, 0xFFFF ahead (Linux's tcp_transmit_skb) ...
    expected_up = seq_add(syn.segment.seq, MB + 2)
    near = [s for s in marked if s.urgent < 0xFFFF]
    assert near and {seq_add(s.seq, s.urgent) for s in near} == {expected_up}
    # ... past their own data: what tcpstack used to drop as hostile.
    assert all(s.urgent > len(s.payload) for s in marked if s is not near[-1])
    # Signalled (MUST-32): when urgent data appears and whenever the pointer advances
    # (each of the kernel's 0xFFFF marks moves it), always ahead of what was read.
    signals = [e for e in app.events if isinstance(e, UrgentData)]
    assert signals and all(1 <= e.remaining <= MB + 1 for e in signals)


class UrgentSender(StreamApp):
    """Sends `bulk`, then `urgent` with send(urgent=True), then closes."""

    def __init__(self, bulk: bytes, urgent: bytes) -> None:
        super().__init__()
        self.bulk = bulk
        self.urgent = urgent
        self.snd_up: int | None = None  # SND.UP right after the urgent send

    def pump(self, conn: Connection, now: int) -> None:
        while self.read_all(conn, now):
            pass
        if conn.state is not State.ESTABLISHED and conn.state is not State.CLOSE_WAIT:
            return
        while self.sent < len(self.bulk) and conn.send_space:
            self.sent += conn.send(self.bulk[self.sent : self.sent + conn.send_space], now=now)
        ready = self.sent == len(self.bulk) and self.snd_up is None
        if ready and conn.send_space >= len(self.urgent):
            conn.send(self.urgent, now=now, urgent=True)
            self.snd_up = conn.snd_up
            self.close_once(conn, now)


def test_tcpstack_sends_urgent_data_the_kernel_reads_out_of_band(host: NetHost) -> None:
    bulk = random.Random(32).randbytes(100_000)
    apps = serve(host, 5062, lambda: UrgentSender(bulk, b"URGENT"))
    tap = Tap(host.loop).install()
    kernel = kernel_socket(host)
    kernel.connect((S4, 5062))
    # Linux takes the last urgent octet ('T') out of band: ordinary reads stop at it
    # and skip it, and reading past it forgets it, so read up to the mark first.
    in_band = bytearray()
    while len(in_band) < 100_005:
        chunk = kernel.recv(100_005 - len(in_band))
        assert chunk, "end of stream before the urgent mark"
        in_band += chunk
    assert wait_for(lambda: at_mark(kernel))
    oob = kernel.recv(1, socket.MSG_OOB)
    rest, _, _ = recv_all(kernel)
    kernel.close()
    assert sha(bytes(in_band)) == sha(bulk + b"URGEN")
    assert oob == b"T"
    assert rest == 0
    assert host.loop.wait_until(
        lambda: accepted(host).state in (State.TIME_WAIT, State.CLOSED), WAIT
    )
    app = apps[0]
    assert app.snd_up is not None
    conn = accepted(host)
    assert conn.snd_up is None  # all acknowledged: urgent mode is over
    with host.loop.lock:
        seen = [s.segment for s in tap.seen if s.outgoing]
    # Every segment sent before SND.UP after the urgent send carries URG and the
    # pointer SND.UP - SEG.SEQ (past its own data when the urgent octets follow) ...
    marked = [s for s in seen if s.flags & Flag.URG]
    assert marked
    # Segments more than 16 bits before it carry 0xFFFF, as Linux sends them.
    for segment in marked:
        if segment.urgent == 0xFFFF:
            assert seq_lt(seq_add(segment.seq, 0xFFFF), app.snd_up)
        else:
            assert seq_add(segment.seq, segment.urgent) == app.snd_up
    # The segment that carries the last urgent octet is marked, its pointer at its end.
    assert any(seq_add(s.seq, len(s.payload)) == app.snd_up for s in marked)
    assert not any(s.flags & Flag.URG and s.flags & (Flag.SYN | Flag.RST) for s in seen)


def test_with_oobinline_the_kernel_reads_urgent_data_in_line(host: NetHost) -> None:
    bulk = random.Random(33).randbytes(50_000)
    apps = serve(host, 5063, lambda: UrgentSender(bulk, b"!!"))
    kernel = kernel_socket(host)
    kernel.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    kernel.connect((S4, 5063))
    count, digest, _ = recv_all(kernel)
    kernel.close()
    assert (count, digest) == (50_000 + 2, sha(bulk + b"!!"))
    assert host.loop.wait_until(
        lambda: accepted(host).state in (State.TIME_WAIT, State.CLOSED), WAIT
    )
    assert apps[0].snd_up is not None
