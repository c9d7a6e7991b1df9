"""Helpers for the real-network tests: taps on the loop, the kernel side's sockets."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from tcpstack.core.codec import decode_segment
from tcpstack.core.errors import MalformedSegment
from tcpstack.core.segment import Datagram, Flag, Segment
from tcpstack.net.loop import NetLoop
from tcpstack.net.packet import TCP, PacketError, decode_ip

T = TypeVar("T")

# Linux's TCP states as tcp_info reports them (include/net/tcp_states.h).
LINUX_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
}
_TCP_INFO_LEN = 104


@dataclass(frozen=True, slots=True)
class KernelTcpInfo:
    state: str
    probes: int  # unanswered keepalive / zero-window probes
    total_retrans: int


def kernel_info(sock: socket.socket) -> KernelTcpInfo:
    """The kernel's view of its side (getsockopt TCP_INFO)."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    total_retrans = struct.unpack_from("I", raw, 100)[0]
    return KernelTcpInfo(LINUX_STATES.get(raw[0], str(raw[0])), raw[3], total_retrans)


def ss_states(netns: str, local_port: int) -> list[str]:
    """States `ss` shows in the namespace for sockets on local_port (TIME-WAIT included)."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "ss", "-tanH", "state", "all", f"sport = :{local_port}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@dataclass(slots=True)
class Seen:
    """One TCP segment that crossed the TUN."""

    time: int
    outgoing: bool
    segment: Segment

    @property
    def flags(self) -> int:
        return self.segment.flags


@dataclass
class Tap:
    """Watches, drops and holds TCP segments at the loop (runs in the loop thread).

    drop_out / drop_in: return True to drop a segment (counted in dropped_out/_in).
    hold_out: return True to hold an outgoing segment back; release_on_in: when an
    arriving segment matches, the held segments go out first, then it is delivered.
    """

    loop: NetLoop
    seen: list[Seen] = field(default_factory=list)
    drop_out: Callable[[Datagram], bool] | None = None
    drop_in: Callable[[Segment], bool] | None = None
    hold_out: Callable[[Datagram], bool] | None = None
    release_on_in: Callable[[Segment], bool] | None = None
    held: list[Datagram] = field(default_factory=list)
    dropped_out: list[Segment] = field(default_factory=list)
    dropped_in: list[Segment] = field(default_factory=list)
    record: bool = True

    def install(self) -> Tap:
        with self.loop.lock:
            self.loop.egress_filter = self._egress
            self.loop.ingress_filter = self._ingress
        return self

    def _egress(self, datagram: Datagram, now: int) -> bool:
        if self.record:
            self.seen.append(Seen(now, True, datagram.segment))
        if self.drop_out is not None and self.drop_out(datagram):
            self.dropped_out.append(datagram.segment)
            return False
        if self.hold_out is not None and self.hold_out(datagram):
            self.held.append(datagram)
            return False
        return True

    def _ingress(self, packet: bytes, now: int) -> bool:
        try:
            ip = decode_ip(packet)
            if ip.protocol != TCP:
                return True
            segment = decode_segment(ip.payload, ip.src, ip.dst)
        except (PacketError, MalformedSegment):
            return True
        if self.record:
            self.seen.append(Seen(now, False, segment))
        if self.drop_in is not None and self.drop_in(segment):
            self.dropped_in.append(segment)
            return False
        if self.release_on_in is not None and self.held and self.release_on_in(segment):
            held, self.held = self.held, []
            for datagram in held:
                self.loop.transmit(datagram)
        return True

    def segments(self, *, outgoing: bool, flags: int | None = None) -> list[Segment]:
        with self.loop.lock:
            return [
                s.segment
                for s in self.seen
                if s.outgoing == outgoing and (flags is None or s.flags == flags)
            ]


def is_fin(segment: Segment) -> bool:
    return bool(segment.flags & Flag.FIN)


class Background(Generic[T]):
    """Run fn in a thread; result() re-raises what it raised."""

    def __init__(self, fn: Callable[[], T], name: str = "kernel-side") -> None:
        self._fn = fn
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._result = self._fn()
        except BaseException as error:
            self._error = error

    def result(self, timeout: float = 60.0) -> T:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("background kernel-side work did not finish")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


def recv_all(sock: socket.socket) -> tuple[int, str, bytes]:
    """Read to end of stream: (byte count, SHA-256 hex, the first 64 bytes)."""
    import hashlib

    digest = hashlib.sha256()
    count = 0
    head = b""
    while chunk := sock.recv(1 << 20):
        if len(head) < 64:
            head += chunk[: 64 - len(head)]
        digest.update(chunk)
        count += len(chunk)
    return count, digest.hexdigest(), head


@dataclass
class LoopNetem:
    """netem's `loss L delay D J reorder R C`, emulated at the loop for what the kernel
    sends to tcpstack (where a netem qdisc on the TUN would act), for kernels without
    sch_netem. Loss: each packet with probability `loss`. Reordering: like netem, a
    packet is sent at once with probability `reorder` (correlated `correlation` with
    the previous choice), otherwise after `delay` ± `jitter` µs (uniform), so jitter
    reorders as well. Seeded: the same run loses the same packets.
    """

    loop: NetLoop = field(repr=False)
    loss: float = 0.02
    delay: int = 10_000
    jitter: int = 5_000
    reorder: float = 0.25
    correlation: float = 0.5
    seed: int = 7
    lost: int = 0
    immediate: int = 0
    delayed: int = 0
    _last: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        import random

        self._rng = random.Random(self.seed)

    def install(self) -> LoopNetem:
        with self.loop.lock:
            self.loop.ingress_filter = self._ingress
        return self

    def _ingress(self, packet: bytes, now: int) -> bool:
        rng = self._rng
        if rng.random() < self.loss:
            self.lost += 1
            return False
        # netem's correlated random number: a mix of a fresh one and the last one.
        value = (1 - self.correlation) * rng.random() + self.correlation * self._last
        self._last = value
        if value < self.reorder:
            self.immediate += 1
            return True
        self.delayed += 1
        wait = self.delay + rng.randint(-self.jitter, self.jitter)
        self.loop.deliver_later(packet, now + wait)
        return False


def netem_available(netns: str, dev: str) -> bool:
    """Can this kernel add a netem qdisc (sch_netem)? Tried on dev, then removed."""
    add = ["ip", "netns", "exec", netns, "tc", "qdisc", "add", "dev", dev, "root", "netem"]
    result = subprocess.run(add, capture_output=True, text=True, check=False, timeout=10)
    if result.returncode != 0:
        return False
    delete = ["ip", "netns", "exec", netns, "tc", "qdisc", "del", "dev", dev, "root"]
    subprocess.run(delete, capture_output=True, text=True, check=True, timeout=10)
    return True
