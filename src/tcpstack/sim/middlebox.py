"""Middleboxes for the simulator: a NAT (and stateful firewall) that forgets idle flows.

How it sits in the network. The simulator routes a datagram straight to the node whose
address is its destination, so a middlebox cannot be a hop *on* a link. `Nat` is
instead a `Node` that wraps the inside host, the way a home router sits in front of a
laptop: the network sees one node at the NAT's public address, the wrapped node keeps
its private address and never learns the public one.

    client = Endpoint("10.0.0.1", ...)              # the inside host, private address
    nat = Nat(client, public_address="203.0.113.7", idle_timeout=350 * SECOND)
    net.add_node(nat)                               # instead of the client itself
    net.add_node(server)
    net.link("203.0.113.7", server.address, delay=10_000)

Outbound, every datagram the inside host emits is rewritten from
(private address, inside port) to (public address, public port); inbound, datagrams to
(public address, public port) from the flow's remote end are rewritten back. In wire
mode the NAT decodes the bytes (a segment with a bad checksum is dropped and counted),
rewrites, and re-encodes with a fresh checksum, as the pseudo-header changed.

Mappings. A mapping is keyed by the whole flow (inside port, remote address, remote
port): an endpoint-dependent ("symmetric") NAT, which also filters inbound traffic by
the remote end. The first mapping of an inside port keeps that port as its public port
(port preservation); a port that any mapping has used is never preserved again, and
other mappings take ports from `port_range` round robin, skipping ports in use. So a
flow that is mapped again after its mapping was forgotten always appears from a
*different* public port: to the remote host it is a stranger.

Idle expiry. A mapping used last at t (a datagram through it, in either direction) is
forgotten at exactly t + idle_timeout: a datagram at t + idle_timeout - 1 µs still
finds it, one at t + idle_timeout does not. Nothing else ends a mapping (real NATs
also shorten it after FIN or RST; this one does not, so that idleness is the only
variable). The NAT has a timer for each expiry, so the forgetting is visible in
`log` at the instant it happens.

A datagram of a forgotten (or never seen) flow:

- from the inside creates a new mapping with a new public port. For a connection in
  the middle of its life the remote host sees a segment for no connection and
  answers with RST (RFC 9293 3.10.7.1), which the NAT carries back to the inside.
- from the outside meets `outside` (`Outside.DROP`: silence, what most home NATs and
  conntrack-based firewalls do; `Outside.REJECT`: the middlebox answers with a RST
  from the public address, as firewalls with a "reject with tcp-reset" rule do and
  some carrier NATs do). A RST is never answered with a RST.

A stateful firewall without address translation forgets flows in the same way; its
inbound half is exactly the `outside` behaviour above.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from tcpstack.core.codec import decode_segment, encode_segment
from tcpstack.core.connection import reset_for
from tcpstack.core.errors import MalformedSegment
from tcpstack.core.segment import Datagram, Flag, Segment
from tcpstack.sim.node import Node

__all__ = ["Mapping", "Nat", "NatEvent", "NatEventKind", "Outside"]

DEFAULT_PORT_RANGE = (20000, 29999)


class Outside(StrEnum):
    """What the NAT does with an inbound datagram that matches no mapping."""

    DROP = "drop"  # silence: the sender retransmits into the void
    REJECT = "reject"  # answer with RST, so the sender learns at once


class NatEventKind(StrEnum):
    MAPPED = "mapped"  # a new mapping was created for an outbound datagram
    EXPIRED = "expired"  # a mapping was idle for idle_timeout and was forgotten
    DROPPED = "dropped"  # an inbound datagram matched no mapping and was dropped
    REJECTED = "rejected"  # ... and was answered with RST
    MALFORMED = "malformed"  # wire bytes that did not decode (bad checksum, ...)


@dataclass(slots=True)
class Mapping:
    """One flow through the NAT: inside (address, port) <-> public port, for one remote."""

    inside_address: str
    inside_port: int
    remote_address: str
    remote_port: int
    public_port: int
    created_at: int
    last_used: int

    @property
    def flow(self) -> tuple[int, str, int]:
        """The key of the flow on the inside: (inside port, remote address, remote port)."""
        return (self.inside_port, self.remote_address, self.remote_port)


@dataclass(frozen=True, slots=True)
class NatEvent:
    """Something the NAT did, for logs, ladders and tests."""

    time: int
    kind: NatEventKind
    detail: str
    mapping: Mapping | None = None
    datagram: Datagram | None = None


class Nat:
    """A NAT in front of one inside node, forgetting mappings idle for `idle_timeout` µs.

    It is a `tcpstack.sim.Node` at `public_address` (see the module docstring).
    `on_event`, when given, is called with every `NatEvent` as it happens; all of them
    are also kept in `log`, and counted by kind in `stats`.
    """

    def __init__(
        self,
        inside: Node,
        *,
        public_address: str,
        idle_timeout: int,
        outside: Outside = Outside.DROP,
        port_range: tuple[int, int] = DEFAULT_PORT_RANGE,
        preserve_ports: bool = True,
        on_event: Callable[[NatEvent], None] | None = None,
    ) -> None:
        if not isinstance(idle_timeout, int) or isinstance(idle_timeout, bool):
            raise TypeError(f"idle_timeout must be an int of microseconds, got {idle_timeout!r}")
        if idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout}")
        low, high = port_range
        if not 0 < low <= high < 65536:
            raise ValueError(f"port_range {port_range} is not a range of ports")
        self.inside = inside
        self.address = public_address
        self.idle_timeout = idle_timeout
        self.outside = Outside(outside)
        self.preserve_ports = preserve_ports
        self.on_event = on_event
        self._low, self._high = low, high
        self._next_port = low
        self._by_flow: dict[tuple[int, str, int], Mapping] = {}
        self._by_public_port: dict[int, Mapping] = {}
        self._ever_used: set[int] = set()
        self._outbox: list[Datagram] = []  # the NAT's own RSTs (Outside.REJECT)
        self.log: list[NatEvent] = []
        self.stats: dict[NatEventKind, int] = dict.fromkeys(NatEventKind, 0)

    # ------------------------------------------------------------------ inspection

    @property
    def mappings(self) -> tuple[Mapping, ...]:
        """The live mappings, oldest first."""
        return tuple(self._by_flow.values())

    def mapping_for(
        self, inside_port: int, remote_address: str, remote_port: int
    ) -> Mapping | None:
        """The live mapping of a flow as the inside host names it, or None."""
        return self._by_flow.get((inside_port, remote_address, remote_port))

    # ------------------------------------------------------------------ the Node interface

    def datagrams_to_send(self, *, now: int) -> list[Datagram]:
        self._expire(now)
        out = self._outbox
        self._outbox = []
        for datagram in self.inside.datagrams_to_send(now=now):
            out.append(self._outbound(datagram, now))
        return out

    def receive_datagram(self, datagram: Datagram, *, now: int) -> None:
        inner = self._inbound(datagram, now)
        if inner is not None:
            self.inside.receive_datagram(inner, now=now)

    def receive_bytes(self, src: str, dst: str, data: bytes, *, now: int) -> None:
        try:
            segment = decode_segment(data, src, dst)
        except MalformedSegment as error:
            self._record(now, NatEventKind.MALFORMED, f"{src} -> {dst}: {error}")
            return
        inner = self._inbound(Datagram(src, dst, segment), now)
        if inner is not None:
            data = encode_segment(inner.segment, inner.src, inner.dst)
            self.inside.receive_bytes(inner.src, inner.dst, data, now=now)

    def next_timer(self) -> int | None:
        inner = self.inside.next_timer()
        expiry = self._next_expiry()
        if expiry is None:
            return inner
        return expiry if inner is None else min(inner, expiry)

    def handle_timer(self, *, now: int) -> None:
        self._expire(now)
        inner = self.inside.next_timer()
        if inner is not None and inner <= now:
            self.inside.handle_timer(now=now)

    # ------------------------------------------------------------------ translation

    def _outbound(self, datagram: Datagram, now: int) -> Datagram:
        seg = datagram.segment
        flow = (seg.src_port, datagram.dst, seg.dst_port)
        mapping = self._by_flow.get(flow)
        if mapping is None:
            port = self._allocate(seg.src_port)
            mapping = Mapping(
                datagram.src, seg.src_port, datagram.dst, seg.dst_port, port, now, now
            )
            self._by_flow[flow] = mapping
            self._by_public_port[port] = mapping
            self._ever_used.add(port)
            self._record(
                now,
                NatEventKind.MAPPED,
                f"{datagram.src}:{seg.src_port} -> {self.address}:{port} "
                f"for {datagram.dst}:{seg.dst_port}",
                mapping,
                datagram,
            )
        mapping.last_used = now
        return Datagram(self.address, datagram.dst, replace(seg, src_port=mapping.public_port))

    def _inbound(self, datagram: Datagram, now: int) -> Datagram | None:
        """The datagram rewritten for the inside, or None when it goes no further."""
        self._expire(now)
        seg = datagram.segment
        mapping = self._by_public_port.get(seg.dst_port)
        if (
            mapping is None
            or mapping.remote_address != datagram.src
            or mapping.remote_port != seg.src_port
            or datagram.dst != self.address
        ):
            self._unmatched(datagram, now)
            return None
        mapping.last_used = now
        return Datagram(
            datagram.src, mapping.inside_address, replace(seg, dst_port=mapping.inside_port)
        )

    def _unmatched(self, datagram: Datagram, now: int) -> None:
        seg = datagram.segment
        what = f"{datagram.src}:{seg.src_port} -> {datagram.dst}:{seg.dst_port}: no mapping"
        if self.outside is Outside.REJECT and not seg.flags & Flag.RST:
            answer: Segment = reset_for(seg)
            self._outbox.append(Datagram(self.address, datagram.src, answer))
            self._record(now, NatEventKind.REJECTED, what + ", answered with RST", None, datagram)
        else:
            self._record(now, NatEventKind.DROPPED, what + ", dropped", None, datagram)

    def _allocate(self, inside_port: int) -> int:
        if self.preserve_ports and inside_port not in self._ever_used:
            return inside_port
        span = self._high - self._low + 1
        for _ in range(span):
            port = self._next_port
            self._next_port = self._low if port == self._high else port + 1
            if port not in self._by_public_port:
                return port
        raise RuntimeError(f"NAT {self.address}: every port of {self._low}-{self._high} is in use")

    # ------------------------------------------------------------------ expiry

    def _next_expiry(self) -> int | None:
        if not self._by_flow:
            return None
        return min(m.last_used for m in self._by_flow.values()) + self.idle_timeout

    def _expire(self, now: int) -> None:
        if not self._by_flow:
            return
        timeout = self.idle_timeout
        for mapping in [m for m in self._by_flow.values() if now >= m.last_used + timeout]:
            del self._by_flow[mapping.flow]
            del self._by_public_port[mapping.public_port]
            self._record(
                mapping.last_used + timeout,
                NatEventKind.EXPIRED,
                f"{mapping.inside_address}:{mapping.inside_port} <-> "
                f"{self.address}:{mapping.public_port} idle for {timeout} us, forgotten",
                mapping,
            )

    def _record(
        self,
        time: int,
        kind: NatEventKind,
        detail: str,
        mapping: Mapping | None = None,
        datagram: Datagram | None = None,
    ) -> None:
        event = NatEvent(time, kind, detail, mapping, datagram)
        self.log.append(event)
        self.stats[kind] += 1
        if self.on_event is not None:
            self.on_event(event)
