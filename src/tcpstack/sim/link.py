"""Link directions: their parameters, their transmitter queue and their random stream.

A link between two nodes is two independent directions. Each direction has its own
`LinkParams`, its own FIFO transmitter and its own `random.Random`, seeded from the
network seed and the direction's (src, dst) names. Independent streams mean that what
happens on A->B never shifts the random draws of B->A, so a change to one direction's
traffic leaves the other direction's fate unchanged.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from dataclasses import dataclass

from tcpstack.core.segment import NO_OPTIONS, Datagram, Options

__all__ = [
    "IPV4_HEADER_LEN",
    "IPV6_HEADER_LEN",
    "TCP_HEADER_LEN",
    "LinkParams",
    "LinkStats",
    "datagram_size",
    "direction_seed",
    "options_length",
    "tcp_length",
]

IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
TCP_HEADER_LEN = 20
_MAX_OPTIONS_LEN = 40

# Serialisation arithmetic runs in "scaled time": microseconds multiplied by the link's
# bandwidth in bit/s. One byte then takes exactly 8 * 1_000_000 scaled units whatever the
# bandwidth, so back-to-back packets never accumulate rounding error; only the instant a
# packet leaves the transmitter is rounded (up) to a whole microsecond.
_SCALED_UNITS_PER_BYTE = 8 * 1_000_000


def _check_int(name: str, value: object, minimum: int) -> None:
    # bool is an int subclass; a True delay is surely a mistake, and floats are banned
    # because time is integer microseconds everywhere.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_probability(name: str, value: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a probability (float), got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be within 0..1, got {value}")


@dataclass(frozen=True, slots=True)
class LinkParams:
    """How one direction of a link treats the datagrams that cross it.

    Times are integer microseconds. Per datagram, in this order:

    1. Serialisation (only with a finite `bandwidth`, in bit/s): the datagram occupies the
       direction's single transmitter for size * 8 / bandwidth seconds, first come first
       served. `size` is the IP datagram size (`datagram_size`). A datagram that would
       have to wait while `queue_limit` datagrams are already waiting is tail-dropped
       ("queue_drop"); a dropped datagram does not occupy the transmitter. A lost
       datagram does (it was transmitted, then lost on the way).
    2. `loss`: probability that the datagram vanishes.
    3. `corrupt`: probability that one uniformly chosen bit of the encoded TCP segment is
       flipped. Only wire mode carries bytes, so only wire mode delivers the damaged
       segment (its checksum then fails at the receiver). In object mode there are no
       bytes to damage and a corrupted datagram is discarded instead, exactly what the
       receiver's checksum check would have done: corruption acts as loss (reported as
       "corrupted", not "lost").
    4. Propagation: arrival = departure + `delay` + a uniform integer in 0..`jitter`.
       Jitter is drawn per datagram, so with jitter datagrams may overtake each other.
    5. `reorder`: probability that the datagram is held back an extra `reorder_delay`,
       so that datagrams sent shortly after it arrive first.
    6. `duplicate`: probability that a second copy arrives at the same instant, right
       after the original (the copy is the same object / the same bytes).

    A random number is drawn only for the features that are enabled (probability > 0,
    jitter > 0), always in the order above, so a perfect link costs no draws at all.
    """

    delay: int = 1_000
    jitter: int = 0
    bandwidth: int | None = None
    queue_limit: int | None = None
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: int = 10_000
    corrupt: float = 0.0

    def __post_init__(self) -> None:
        _check_int("delay", self.delay, 0)
        _check_int("jitter", self.jitter, 0)
        _check_int("reorder_delay", self.reorder_delay, 0)
        if self.bandwidth is not None:
            _check_int("bandwidth", self.bandwidth, 1)
        if self.queue_limit is not None:
            _check_int("queue_limit", self.queue_limit, 0)
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            _check_probability(name, getattr(self, name))


@dataclass(slots=True)
class LinkStats:
    """Counters of one link direction (every datagram that entered it is in `entered`).

    entered = queue_drops + lost + corrupted_dropped + scheduled, and every scheduled
    datagram (plus every duplicate) is eventually `delivered` unless the run stops first.
    `corrupted` counts all corrupted datagrams; in wire mode they are still delivered.
    """

    entered: int = 0
    queue_drops: int = 0
    lost: int = 0
    corrupted: int = 0
    duplicated: int = 0
    reordered: int = 0
    delivered: int = 0


def direction_seed(seed: int, src: str, dst: str) -> int:
    """The seed of the random stream of direction src -> dst in a network seeded `seed`.

    A hash of the three values: stable across runs, processes and Python versions
    (unlike the salted built-in `hash()`), and different for the two directions.
    """
    digest = hashlib.sha256(f"tcpstack.sim|{seed}|{src}|{dst}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def options_length(options: Options) -> int:
    """Bytes the options occupy on the wire, padding included.

    Mirrors the layout rules of `tcpstack.core.codec.encode_options` (aligned with NOPs
    unless that overflows 40 bytes, then packed; padded to 4) without building bytes,
    so object mode computes the same sizes, and so the same timings, as wire mode. A
    test checks the two agree.
    """
    if options is NO_OPTIONS:
        return 0
    aligned = packed = 0
    if options.mss is not None:
        aligned += 4
        packed += 4
    if options.window_scale is not None:
        aligned += 4  # <nop, wscale>
        packed += 3
    has_timestamp = options.timestamp is not None
    if options.sack_permitted:
        aligned += 2 if has_timestamp else 4  # <sackOK,TS> or <nop,nop,sackOK>
        packed += 2
    if has_timestamp:
        aligned += 10 if options.sack_permitted else 12  # <nop,nop,TS>
        packed += 10
    if options.sack_blocks:
        sack = 2 + 8 * len(options.sack_blocks)
        aligned += 2 + sack  # <nop,nop,SACK>
        packed += sack
    for _, data in options.unknown:
        aligned += 2 + len(data)
        packed += 2 + len(data)
    area = aligned if aligned <= _MAX_OPTIONS_LEN else packed
    return area + (-area % 4)


def tcp_length(datagram: Datagram) -> int:
    """Size of the encoded TCP segment: header, options and payload."""
    segment = datagram.segment
    return TCP_HEADER_LEN + options_length(segment.options) + len(segment.payload)


def datagram_size(datagram: Datagram) -> int:
    """Size in bytes of the IP datagram (IP header + TCP segment) that bandwidth counts.

    IPv6 (':' in the address) has a 40-byte header, IPv4 a 20-byte one (no IP options).
    Link-layer framing is not counted.
    """
    ip_header = IPV6_HEADER_LEN if ":" in datagram.dst else IPV4_HEADER_LEN
    return ip_header + tcp_length(datagram)


class LinkDirection:
    """Mutable state of one direction: parameters, transmitter, random stream, counters."""

    __slots__ = ("_busy", "_waiting", "dst", "params", "rng", "src", "stats")

    def __init__(self, src: str, dst: str, params: LinkParams, seed: int) -> None:
        self.src = src
        self.dst = dst
        self.params = params
        self.rng = random.Random(direction_seed(seed, src, dst))
        self.stats = LinkStats()
        # Scaled time (µs * bandwidth) at which the transmitter finishes its last packet.
        self._busy = 0
        # Start instants (whole µs, rounded up) of accepted packets, in FIFO order; the
        # ones still in the future are the packets waiting for the transmitter.
        self._waiting: deque[int] = deque()

    def set_params(self, params: LinkParams) -> None:
        """Change the parameters mid-run, keeping the random stream and the queue.

        A packet already being serialised keeps its departure time; its end is converted
        to the new bandwidth's scale (rounded up to a whole microsecond).
        """
        old, new = self.params.bandwidth, params.bandwidth
        if old != new:
            busy_us = -(-self._busy // old) if old is not None else 0
            self._busy = busy_us * new if new is not None else 0
            if new is None:
                self._waiting.clear()
        self.params = params

    def waiting(self, now: int) -> int:
        """How many packets are waiting for the transmitter at `now` (not the one on it)."""
        waiting = self._waiting
        while waiting and waiting[0] <= now:
            waiting.popleft()
        return len(waiting)

    def serialise(self, now: int, size: int) -> int | None:
        """Queue a packet of `size` bytes at `now`; its departure time, or None if dropped.

        Called only when the bandwidth is finite. Departure is when its last bit has left
        the transmitter: after every packet queued before it, then its own size * 8 bits.
        """
        bandwidth = self.params.bandwidth
        assert bandwidth is not None
        scaled_now = now * bandwidth
        start = self._busy
        if start > scaled_now:
            # The transmitter is busy: the packet has to wait in the queue, if there is room.
            # (waiting() also prunes the packets that have started, keeping the deque
            # as short as the queue even when there is no limit to check.)
            waiting = self.waiting(now)
            limit = self.params.queue_limit
            if limit is not None and waiting >= limit:
                return None
            # Packets with start <= now have begun; comparing the rounded-up start with
            # an integer `now` gives exactly the same answer as comparing scaled values.
            self._waiting.append(-(-start // bandwidth))
        else:
            # Idle transmitter: everything accepted earlier has already started.
            start = scaled_now
            if self._waiting:
                self._waiting.clear()
        finish = start + size * _SCALED_UNITS_PER_BYTE
        self._busy = finish
        return -(-finish // bandwidth)
