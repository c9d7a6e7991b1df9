"""The deterministic network: a virtual clock, an event heap, nodes and link directions.

How a run proceeds. The heap holds (time, sequence number, event) entries; the unique,
ever-increasing sequence number breaks ties, so events at the same instant run in the
order they were scheduled and the heap never compares two events. An event is either a
delivery (a datagram reaching a node) or a node's timer. Each step:

1. `flush()`: ask every node, in the order they were added, for `datagrams_to_send(now)`
   and put those on their links; then re-read every node's `next_timer()` and schedule
   it if it changed. Flushing at the start of every step (instead of only after the
   network itself called a node) is what makes it correct for test code to call into
   nodes between steps (open a connection, send data, close): whatever that produced is
   collected before the clock moves. It costs O(nodes) calls per step. Inside one
   `run_until` (and `run_for`, `run_until_idle`) only the first flush asks every node:
   after an event only the node that handled it can have new output or a new timer, so
   only that node is asked again (issue 9: no per-event scan of every node). With an
   observer attached every node is asked after every event, since an observer may call
   into any node (see `add_observer`).
2. Pop the earliest event, move the clock to its time and run it: a delivery calls
   `receive_bytes` (wire mode) or `receive_datagram` (object mode); a timer calls
   `handle_timer(now=deadline)`.

Timer entries are invalidated lazily: when a node's deadline changes a new entry is
pushed and the old one stays in the heap, recognised as stale (its sequence number is no
longer the node's current one) and skipped when it reaches the top.

Determinism: nothing here depends on wall-clock time, object ids, hash seeds or set
ordering. All randomness comes from the per-direction `random.Random` streams (see
`tcpstack.sim.link`), so the same seed and the same node behaviour give the same run,
event for event and byte for byte.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TypedDict, Unpack

from tcpstack.core.errors import TcpError
from tcpstack.core.segment import Datagram, Segment
from tcpstack.sim.link import (
    IPV4_HEADER_LEN,
    IPV6_HEADER_LEN,
    LinkDirection,
    LinkParams,
    LinkStats,
    datagram_size,
    tcp_length,
)
from tcpstack.sim.node import Encoder, Node

__all__ = [
    "DEFAULT_MAX_EVENTS_PER_INSTANT",
    "Filter",
    "Held",
    "LinkOptions",
    "NetRecord",
    "Network",
    "Observer",
    "SimulationStuck",
    "Verdict",
    "What",
]

DEFAULT_MAX_EVENTS_PER_INSTANT = 1_000_000
"""Events allowed at one instant before the run is declared stuck. A real exchange at a
single instant is a few hundred events at most; a million means a loop."""


class What(StrEnum):
    """What happened to a datagram (the `what` of a `NetRecord`).

    A StrEnum, so each member also compares equal to its plain string ("sent", ...).
    """

    SENT = "sent"  # a node emitted it (or a test injected it); always the first record
    NO_ROUTE = "no_route"  # no link from the sender to dst, or no node has address dst
    FILTERED = "filtered"  # a filter dropped it
    HELD = "held"  # a filter is holding it until `Network.release`
    RELEASED = "released"  # a held datagram was let go onto its link
    QUEUE_DROP = "queue_drop"  # tail drop: the transmitter queue was full
    LOST = "lost"  # random loss
    CORRUPTED = "corrupted"  # one bit flipped (wire mode) / discarded (object mode)
    REORDERED = "reordered"  # given the extra reorder_delay
    DUPLICATED = "duplicated"  # a second copy will arrive with the original
    DELIVERED = "delivered"  # handed to the destination node (once per copy)


@dataclass(frozen=True, slots=True)
class NetRecord:
    """One thing that happened to one datagram, as handed to observers.

    `src` is the link direction's source (the node that emitted the datagram, which
    for an endpoint is datagram.src) and `dst` is datagram.dst. `packet` numbers
    transmissions in order from 0; every record about one transmission, its duplicate's
    included, carries the same number. `data` holds the wire bytes in wire mode (the
    damaged bytes on "corrupted" and on the damaged datagram's "delivered") and None in
    object mode. `time` is the virtual time of the record: the send time for everything
    decided when the datagram enters its link, the arrival time for "delivered".
    """

    time: int
    what: What
    src: str
    dst: str
    datagram: Datagram
    packet: int
    data: bytes | None = None

    @property
    def segment(self) -> Segment:
        return self.datagram.segment


Observer = Callable[[NetRecord], None]


class Verdict(Enum):
    """A filter's decision about one datagram."""

    PASS = "pass"  # let the next filter (or the link) decide
    DROP = "drop"  # discard it, reported as "filtered"
    HOLD = "hold"  # keep it aside until the test calls `Network.release`


Filter = Callable[[Datagram], Verdict]
"""Called with every routable datagram a node emits, before it enters its link (so before
any random impairment). Filters run in the order they were added; the first verdict
other than PASS wins. `tcpstack.sim.filters` has ready-made ones (drop_where, ...)."""


@dataclass(eq=False, slots=True)
class Held:
    """A datagram a filter is holding; pass it to `Network.release` to let it go."""

    time: int  # when it was held
    src: str  # the link direction's source, as in NetRecord
    datagram: Datagram
    packet: int
    data: bytes | None


class LinkOptions(TypedDict, total=False):
    """Keyword arguments of `Network.link`: any subset of `LinkParams` fields."""

    delay: int
    jitter: int
    bandwidth: int | None
    queue_limit: int | None
    loss: float
    duplicate: float
    reorder: float
    reorder_delay: int
    corrupt: float


class SimulationStuck(TcpError):
    """The simulation loops without virtual time advancing.

    Raised when more than `max_events_per_instant` events happen at one instant: for
    example a node whose `next_timer()` keeps returning a deadline that `handle_timer`
    does not clear, or two nodes answering each other over zero-delay links forever.
    """

    def __init__(self, time: int, events: int, last_event: str) -> None:
        super().__init__(
            f"simulation stuck at t={time} us: {events} events without time advancing; "
            f"next event: {last_event}"
        )
        self.time = time
        self.events = events
        self.last_event = last_event


class _NodeState:
    """The network's bookkeeping for one node: its current timer entry."""

    __slots__ = ("address", "node", "timer_deadline", "timer_seq")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.address = node.address
        self.timer_deadline: int | None = None  # what next_timer() said last time
        self.timer_seq = -1  # sequence number of the live heap entry, -1 when none


class _Delivery:
    """A datagram (or one copy of it) on its way to `target`."""

    __slots__ = ("data", "datagram", "direction", "packet", "target")

    def __init__(
        self,
        target: _NodeState,
        datagram: Datagram,
        data: bytes | None,
        packet: int,
        direction: LinkDirection,
    ) -> None:
        self.target = target
        self.datagram = datagram
        self.data = data
        self.packet = packet
        self.direction = direction


_Entry = tuple[int, int, "_Delivery | _NodeState"]

# Compact the heap when stale timer entries are this many and more than half of it.
_COMPACT_MIN_STALE = 256


def _check_time(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int of microseconds, got {value!r}")
    return value


def _flip_bit(data: bytes, bit: int) -> bytes:
    """`data` with bit number `bit` inverted (bit 0 = most significant bit of byte 0)."""
    damaged = bytearray(data)
    damaged[bit >> 3] ^= 0x80 >> (bit & 7)
    return bytes(damaged)


class Network:
    """A deterministic simulated network of `Node`s joined by lossy, delaying links.

    `seed` seeds every link direction's random stream. With `wire=True` (the default)
    each datagram is encoded with `encoder` (by default
    `tcpstack.core.codec.encode_segment`) when it is sent and delivered as bytes to
    `receive_bytes`; with `wire=False` the `Datagram` object itself is delivered to
    `receive_datagram`, no copy made, and corruption acts as loss (see `LinkParams`).
    Both modes make the same random draws and compute the same timings, so a run differs
    between them only in what the receivers are handed.

    `max_events_per_instant` bounds the events processed without the clock advancing
    before `SimulationStuck` is raised.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        wire: bool = True,
        encoder: Encoder | None = None,
        max_events_per_instant: int = DEFAULT_MAX_EVENTS_PER_INSTANT,
    ) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self._seed = seed
        if wire and encoder is None:
            # Imported here, not at module level: object-mode users never need the codec.
            from tcpstack.core.codec import encode_segment

            encoder = encode_segment
        self._encoder: Encoder | None = encoder if wire else None
        if _check_time("max_events_per_instant", max_events_per_instant) < 1:
            raise ValueError("max_events_per_instant must be at least 1")
        self._max_events_per_instant = max_events_per_instant
        self._now = 0
        self._heap: list[_Entry] = []
        self._seq = 0  # next heap sequence number
        self._stale = 0  # stale timer entries still in the heap
        self._in_flight = 0  # delivery entries in the heap
        self._instant_events = 0  # events processed at the current instant
        self._events = 0  # events processed in total
        self._packets = 0  # next packet number
        self._states: list[_NodeState] = []
        self._by_address: dict[str, _NodeState] = {}
        self._links: dict[tuple[str, str], LinkDirection] = {}
        self._observers: list[Observer] = []
        self._filters: list[Filter] = []
        self._held: list[Held] = []

    # ------------------------------------------------------------------ inspection

    @property
    def now(self) -> int:
        """The virtual clock, in microseconds since the network was created."""
        return self._now

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def wire(self) -> bool:
        """True when datagrams travel as encoded bytes."""
        return self._encoder is not None

    @property
    def events_processed(self) -> int:
        """Deliveries and timer calls run so far (stale timer entries not counted)."""
        return self._events

    @property
    def pending_deliveries(self) -> int:
        """Datagram copies on their way (scheduled, not yet delivered)."""
        return self._in_flight

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(state.node for state in self._states)

    def node(self, address: str) -> Node:
        """The node with this address (KeyError if none)."""
        return self._by_address[address].node

    @property
    def held(self) -> tuple[Held, ...]:
        """Datagrams filters are holding, oldest first."""
        return tuple(self._held)

    # ------------------------------------------------------------------ building

    def add_node(self, node: Node) -> None:
        """Attach a node; its address must be unique in this network."""
        state = _NodeState(node)
        if state.address in self._by_address:
            raise ValueError(f"a node with address {state.address!r} is already attached")
        self._states.append(state)
        self._by_address[state.address] = state

    def link(
        self, a: str, b: str, params: LinkParams | None = None, **options: Unpack[LinkOptions]
    ) -> None:
        """Join addresses a and b with two directions of the same parameters.

        `params` (default `LinkParams()`) with any field overridden by keyword, e.g.
        `net.link("10.0.0.1", "10.0.0.2", delay=5_000, loss=0.01)`. Re-linking changes
        the parameters of existing directions (see `link_direction`).
        """
        base = params if params is not None else LinkParams()
        merged = LinkParams(
            delay=options.get("delay", base.delay),
            jitter=options.get("jitter", base.jitter),
            bandwidth=options.get("bandwidth", base.bandwidth),
            queue_limit=options.get("queue_limit", base.queue_limit),
            loss=options.get("loss", base.loss),
            duplicate=options.get("duplicate", base.duplicate),
            reorder=options.get("reorder", base.reorder),
            reorder_delay=options.get("reorder_delay", base.reorder_delay),
            corrupt=options.get("corrupt", base.corrupt),
        )
        self.link_direction(a, b, merged)
        self.link_direction(b, a, merged)

    def link_direction(self, src: str, dst: str, params: LinkParams) -> None:
        """Create direction src -> dst, or change its parameters if it exists.

        Changing parameters mid-run (e.g. loss=1.0 to cut a link) keeps the direction's
        random stream and transmitter queue; datagrams already on their way still arrive.
        Addresses need not belong to attached nodes yet (routing is checked per send).
        """
        if not isinstance(params, LinkParams):
            raise TypeError(f"params must be LinkParams, got {params!r}")
        direction = self._links.get((src, dst))
        if direction is None:
            self._links[(src, dst)] = LinkDirection(src, dst, params, self._seed)
        else:
            direction.set_params(params)

    def link_params(self, src: str, dst: str) -> LinkParams:
        """The parameters of direction src -> dst (KeyError if there is no such link)."""
        return self._links[(src, dst)].params

    def link_stats(self, src: str, dst: str) -> LinkStats:
        """The live counters of direction src -> dst (KeyError if there is no such link)."""
        return self._links[(src, dst)].stats

    def add_observer(self, observer: Observer) -> None:
        """Call `observer` with a `NetRecord` for everything that happens to a datagram.

        Observers run synchronously inside the simulation, in the order added. An
        observer may call into nodes; what they then want to send is collected at the
        next step's flush. `log = []; net.add_observer(log.append)` records everything.
        """
        self._observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        self._observers.remove(observer)

    def add_filter(self, filter_: Filter) -> None:
        """Let `filter_` pass, drop or hold each datagram before it enters its link."""
        self._filters.append(filter_)

    def remove_filter(self, filter_: Filter) -> None:
        self._filters.remove(filter_)

    # ------------------------------------------------------------------ sending

    def inject(self, datagram: Datagram, *, src: str | None = None) -> None:
        """Send `datagram` now as if node `src` (default datagram.src) had emitted it.

        For tests that play a peer by hand: `src` need not be an attached node, only
        the source of a link towards datagram.dst. It goes through filters and the link.
        """
        self._transmit(datagram, datagram.src if src is None else src)

    def release(self, held: Held) -> None:
        """Let a held datagram go: it enters its link now, skipping the filters.

        Routing is looked up again, since links may have changed while it was held.
        """
        try:
            self._held.remove(held)
        except ValueError:
            raise ValueError("that datagram is not being held") from None
        datagram = held.datagram
        if self._observers:
            self._emit(What.RELEASED, held.src, datagram, held.packet, held.data)
        direction = self._links.get((held.src, datagram.dst))
        target = self._by_address.get(datagram.dst)
        if direction is None or target is None:
            if self._observers:
                self._emit(What.NO_ROUTE, held.src, datagram, held.packet, held.data)
            return
        data = held.data
        if self._encoder is not None and data is None:
            data = self._encoder(datagram.segment, datagram.src, datagram.dst)
        self._enter_link(direction, target, datagram, held.src, held.packet, data)

    def release_all(self) -> None:
        """Release every held datagram, oldest first."""
        for held in tuple(self._held):
            self.release(held)

    def _emit(
        self, what: What, src: str, datagram: Datagram, packet: int, data: bytes | None
    ) -> None:
        record = NetRecord(self._now, what, src, datagram.dst, datagram, packet, data)
        for observer in self._observers:
            observer(record)

    def _transmit(self, datagram: Datagram, src: str) -> None:
        """A datagram leaves `src`: route it, encode it, filter it, put it on its link."""
        packet = self._packets
        self._packets += 1
        dst = datagram.dst
        direction = self._links.get((src, dst))
        target = self._by_address.get(dst) if direction is not None else None
        data: bytes | None = None
        if target is not None and self._encoder is not None:
            # Encoded once, at the sender; duplicates share the (immutable) bytes.
            data = self._encoder(datagram.segment, datagram.src, dst)
        observed = bool(self._observers)
        if observed:
            self._emit(What.SENT, src, datagram, packet, data)
        if target is None or direction is None:
            if observed:
                self._emit(What.NO_ROUTE, src, datagram, packet, data)
            return
        if self._filters:
            # A copy, so that a filter may remove itself (e.g. once it has fired).
            for filter_ in tuple(self._filters):
                verdict = filter_(datagram)
                if verdict is Verdict.PASS:
                    continue
                if verdict is Verdict.DROP:
                    if observed:
                        self._emit(What.FILTERED, src, datagram, packet, data)
                    return
                if verdict is Verdict.HOLD:
                    self._held.append(Held(self._now, src, datagram, packet, data))
                    if observed:
                        self._emit(What.HELD, src, datagram, packet, data)
                    return
                raise TypeError(f"filter {filter_!r} returned {verdict!r}, not a Verdict")
        self._enter_link(direction, target, datagram, src, packet, data)

    def _enter_link(
        self,
        direction: LinkDirection,
        target: _NodeState,
        datagram: Datagram,
        src: str,
        packet: int,
        data: bytes | None,
    ) -> None:
        """Apply the direction's queue and impairments (LinkParams order) and schedule."""
        params = direction.params
        stats = direction.stats
        stats.entered += 1
        observed = bool(self._observers)
        departure = self._now
        if params.bandwidth is not None:
            if data is not None:
                ip_header = IPV6_HEADER_LEN if ":" in datagram.dst else IPV4_HEADER_LEN
                size = ip_header + len(data)
            else:
                size = datagram_size(datagram)
            finish = direction.serialise(self._now, size)
            if finish is None:
                stats.queue_drops += 1
                if observed:
                    self._emit(What.QUEUE_DROP, src, datagram, packet, data)
                return
            departure = finish
        rng = direction.rng
        if params.loss and rng.random() < params.loss:
            stats.lost += 1
            if observed:
                self._emit(What.LOST, src, datagram, packet, data)
            return
        # Object mode discards a corrupted datagram, but only after making every draw
        # wire mode makes for it: both modes then consume identical random streams and
        # differ only in what the receiver is handed.
        discard = False
        if params.corrupt and rng.random() < params.corrupt:
            stats.corrupted += 1
            # Drawn from the same range in both modes: tcp_length is the encoded length.
            bit = rng.randrange(8 * (len(data) if data is not None else tcp_length(datagram)))
            if data is None:
                discard = True
            else:
                data = _flip_bit(data, bit)
            if observed:
                self._emit(What.CORRUPTED, src, datagram, packet, data)
        arrival = departure + params.delay
        if params.jitter:
            arrival += rng.randint(0, params.jitter)
        if params.reorder and rng.random() < params.reorder and not discard:
            arrival += params.reorder_delay
            stats.reordered += 1
            if observed:
                self._emit(What.REORDERED, src, datagram, packet, data)
        duplicate = bool(params.duplicate) and rng.random() < params.duplicate
        if discard:
            return
        delivery = _Delivery(target, datagram, data, packet, direction)
        heap = self._heap
        heapq.heappush(heap, (arrival, self._seq, delivery))
        self._seq += 1
        self._in_flight += 1
        if duplicate:
            stats.duplicated += 1
            if observed:
                self._emit(What.DUPLICATED, src, datagram, packet, data)
            # Same instant, next sequence number: the copy arrives right after the original.
            heapq.heappush(heap, (arrival, self._seq, delivery))
            self._seq += 1
            self._in_flight += 1

    # ------------------------------------------------------------------ running

    def flush(self) -> None:
        """Collect every node's outgoing datagrams and re-read every node's timer.

        Called at the start of every step and run; call it yourself only to see what
        nodes sent (e.g. in observers) without advancing the simulation.
        """
        for state in self._states:
            self._flush_node(state)
        if self._stale >= _COMPACT_MIN_STALE and 2 * self._stale > len(self._heap):
            self._compact()

    def _flush_node(self, state: _NodeState) -> None:
        """Collect one node's outgoing datagrams, then re-read its timer."""
        node = state.node
        for datagram in node.datagrams_to_send(now=self._now):
            self._transmit(datagram, state.address)
        # After draining: sending may arm a timer (a retransmission timeout).
        deadline = node.next_timer()
        if deadline != state.timer_deadline:
            self._arm(state, deadline)

    def _flush_after(self, touched: _NodeState) -> None:
        """The flush after an event inside a run: only the node that handled it, unless
        an observer (which may have called into any node) is attached."""
        if self._observers:
            self.flush()
            return
        self._flush_node(touched)
        if self._stale >= _COMPACT_MIN_STALE and 2 * self._stale > len(self._heap):
            self._compact()

    def _arm(self, state: _NodeState, deadline: int | None) -> None:
        if deadline is not None:
            _check_time(f"next_timer() of {state.address}", deadline)
        if state.timer_seq >= 0:
            self._stale += 1  # the old entry stays in the heap, to be skipped
        state.timer_deadline = deadline
        if deadline is None:
            state.timer_seq = -1
            return
        seq = self._seq
        self._seq += 1
        # A deadline already past fires now: the clock never goes backwards.
        heapq.heappush(self._heap, (max(deadline, self._now), seq, state))
        state.timer_seq = seq

    def _compact(self) -> None:
        """Drop stale timer entries. Pop order is unchanged: (time, seq) keys are unique."""
        self._heap = [
            entry
            for entry in self._heap
            if not isinstance(entry[2], _NodeState) or entry[2].timer_seq == entry[1]
        ]
        heapq.heapify(self._heap)
        self._stale = 0

    def _next_time(self) -> int | None:
        """Time of the next live event, discarding stale timer entries on the way."""
        heap = self._heap
        while heap:
            time, seq, event = heap[0]
            if isinstance(event, _NodeState) and event.timer_seq != seq:
                heapq.heappop(heap)
                self._stale -= 1
                continue
            return time
        return None

    def _process(self) -> _NodeState:
        """Run the event at the top of the heap (which `_next_time` has made live);
        returns the node that handled it."""
        heap = self._heap
        time, _, event = heap[0]
        if time != self._now:
            self._now = time
            self._instant_events = 0
        if self._instant_events >= self._max_events_per_instant:
            raise SimulationStuck(time, self._instant_events, self._describe(event))
        heapq.heappop(heap)
        self._instant_events += 1
        self._events += 1
        if isinstance(event, _Delivery):
            self._in_flight -= 1
            event.direction.stats.delivered += 1
            datagram = event.datagram
            if self._observers:
                self._emit(What.DELIVERED, event.direction.src, datagram, event.packet, event.data)
            if event.data is not None:
                event.target.node.receive_bytes(datagram.src, datagram.dst, event.data, now=time)
            else:
                event.target.node.receive_datagram(datagram, now=time)
            return event.target
        # Consumed: if the node still reports this deadline after handling it, the
        # next flush schedules it again (and the instant guard catches a loop).
        event.timer_seq = -1
        event.timer_deadline = None
        event.node.handle_timer(now=time)
        return event

    @staticmethod
    def _describe(event: _Delivery | _NodeState) -> str:
        if isinstance(event, _Delivery):
            d = event.datagram
            return f"delivery {d.src} -> {d.dst} [{d.segment}]"
        return f"timer of {event.address} (deadline {event.timer_deadline})"

    def _advance(self, time: int) -> None:
        if time > self._now:
            self._now = time
            self._instant_events = 0

    def step(self) -> bool:
        """Flush, then run the next event. False (and nothing done) if none is pending."""
        self.flush()
        if self._next_time() is None:
            return False
        self._process()
        return True

    def run_until(self, predicate: Callable[[], bool], limit: int) -> bool:
        """Run until `predicate()` is true (True) or time would pass `limit` (False).

        `limit` is an absolute time in µs; events at exactly `limit` still run. The
        predicate is checked before the first event and after each one (after a flush).
        On False the clock is left at `limit`; on True at the time of the event after
        which the predicate held.
        """
        limit = _check_time("limit", limit)
        if limit < self._now:
            raise ValueError(f"limit {limit} is in the past (now is {self._now})")
        self.flush()
        while True:
            if predicate():
                return True
            next_time = self._next_time()
            if next_time is None or next_time > limit:
                self._advance(limit)
                return False
            self._flush_after(self._process())

    def run_for(self, duration: int) -> None:
        """Run every event in the next `duration` µs; the clock ends at now + duration."""
        duration = _check_time("duration", duration)
        if duration < 0:
            raise ValueError(f"duration must not be negative, got {duration}")
        self.run_until(_never, self._now + duration)

    def run_until_idle(self, limit: int) -> bool:
        """Run until no datagram is on its way and no node timer is due by `limit`.

        True when that happened (the clock stays at the last event: timers due after
        `limit`, like keepalives, may remain); False when `limit` came first (the clock
        is then at `limit`). Held datagrams do not count as on their way.
        """
        return self.run_until(lambda: self._is_idle(limit), limit)

    def _is_idle(self, limit: int) -> bool:
        if self._in_flight:
            return False
        for state in self._states:
            deadline = state.timer_deadline
            if deadline is not None and deadline <= limit:
                return False
        return True


def _never() -> bool:
    return False
