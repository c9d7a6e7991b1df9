"""An Endpoint with one connection in a chosen state, a scripted peer, and the checks that
fuzzing applies after every input (tests/security/test_fuzz_endpoint.py, fuzz/).

Each of the eleven states is reached through the public API only: listen(), connect(),
close() and segments from the peer, the way an application and a remote host would.
The tracked connection is the one on the rig's 4-tuple (CLOSED: no connection and no
listener; LISTEN: the listener, whose child for the peer's port becomes the tracked
connection once a SYN arrives; TIME_WAIT: the Endpoint's compact entry).

`Rig.feed_*`, `Rig.app` and `Rig.advance` are the inputs; after each, `Rig.check`
asserts the fuzzing properties:

- no exception escapes from peer input or timers (user calls may raise the typed
  InvalidOperation, the core's documented error for a call the state does not allow);
- every state change is an edge of core.state.TRANSITIONS (from the STATE trace records
  and from each connection's state_history);
- data the connection acknowledged to the peer is delivered to the application, in
  order and unchanged (the peer's payloads are a fixed function of their sequence
  numbers, so any reordering or loss shows);
- every dropped input increments exactly one drop counter (a named reason).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise

from tcpstack.core.config import PLAIN, Config
from tcpstack.core.connection import Connection
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.errors import TcpError
from tcpstack.core.segment import Datagram, Flag, Options, Segment
from tcpstack.core.seq import MASK, seq_add, seq_sub
from tcpstack.core.state import TRANSITIONS, State, Trigger
from tcpstack.core.trace import TraceKind, TraceRecord

HOST = "10.0.0.2"  # the Endpoint under test
PEER = "10.0.0.1"
LISTEN_PORT = 80
PEER_PORT = 40_000  # the peer's port when it connects to us
ISS = 7_000  # our ISN on every connection
PEER_ISS = 2**32 - 2  # the peer's: its data crosses the sequence wrap at once
PEER_TS0 = 1_000  # the peer's first TSval (RFC 7323) when timestamps are on
SECRET = b"fuzz-rig-secret-0123456789abcdef"

ALL_STATES = tuple(State)

# Full options (window scale, SACK, timestamps, delayed ACK, Nagle, CUBIC) and PLAIN
# (RFC 9293 alone). Small buffers so that windows fill up within a few segments.
CONFIGS: dict[str, Config] = {
    "full": Config(send_buffer_size=8192, receive_buffer_size=8192),
    "plain": PLAIN.with_changes(send_buffer_size=8192, receive_buffer_size=8192),
}

EDGES = {(state, target) for (state, _trigger), target in TRANSITIONS.items()}

# Counters that record an action or a side effect, not what became of an input: a
# challenge ACK's rate-limit decisions, per connection and stack-wide (the drop itself
# has its reason counter), the out-of-window ACK limit, a reassembly limit refusing part
# of an accepted segment, a cookie handshake completing, a TIME_WAIT entry ended by RST
# or reused by a SYN (the segment is taken), and the TIME_WAIT table overflowing when a
# connection closes.
AUXILIARY_COUNTERS = frozenset(
    {
        "challenge_ack.sent",
        "challenge_ack.rate_limited",
        "challenge_ack.conn_rate_limited",
        "invalid_ack.rate_limited",
        "limit.reassembly_bytes",
        "limit.reassembly_connection",
        "syn_cookie.accepted",
        "time_wait.kill",
        "time_wait.reuse",
        "time_wait_overflow",
    }
)
# Verdicts of a connection's SEGMENT_IN record that mean the segment (or its text) was
# not taken; each must name its counter.
DROP_VERDICTS = frozenset({"drop", "ack", "challenge"})
# A TIME_WAIT entry's verdicts that drop the segment (answered with an ACK or not).
TIME_WAIT_DROPS = frozenset({"ack", "ack_restart", "drop"})

# The peer's payload bytes are a function of their sequence number: byte(s) = s mod 251
# (251 is prime, so no segment boundary lines up with the period).
_PERIOD = 251
_PATTERN = bytes(range(_PERIOD)) * (80_000 // _PERIOD + 2)


def pattern(seq: int, size: int) -> bytes:
    """The `size` payload bytes that start at sequence number `seq`."""
    seq &= MASK
    before_wrap = 2**32 - seq
    if size > before_wrap:  # the function restarts at 0 where the sequence space wraps
        return pattern(seq, before_wrap) + pattern(0, size - before_wrap)
    start = seq % _PERIOD
    if size <= len(_PATTERN) - start:
        return _PATTERN[start : start + size]
    return bytes((seq + i) % _PERIOD for i in range(size))


def reason_counters(stats: Counter[str]) -> int:
    return sum(count for name, count in stats.items() if name not in AUXILIARY_COUNTERS)


class Recorder:
    """A tracer that keeps the records of the current input only."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: list[TraceRecord] = []

    def __call__(self, record: TraceRecord) -> None:
        self.records.append(record)


@dataclass
class Delivery:
    """What one connection delivered to the application, checked against the peer's
    pattern, and the highest data offset it ever acknowledged."""

    received: bytearray = field(default_factory=bytearray)
    acked: int = 0


class Rig:
    """An Endpoint, its tracked 4-tuple, a virtual clock and the peer's script."""

    def __init__(
        self,
        state: State,
        config_name: str = "full",
        *,
        cookies: bool = False,
        preload: bool = False,
        max_connections: int = 64,
    ) -> None:
        self.config = CONFIGS[config_name]
        self.full = config_name == "full"
        self.recorder = Recorder()
        self.endpoint = Endpoint(
            HOST,
            isn_generator=lambda _tuple, _now: ISS,
            config=self.config,
            tracer=self.recorder,
            syn_backlog=1 if cookies else 8,
            syn_cookie_secret=SECRET if cookies else None,
            max_connections=max_connections,
            max_time_wait=8,
        )
        self.now = 0
        self.passive = state in (State.CLOSED, State.LISTEN, State.SYN_RECEIVED)
        self.local_port = LISTEN_PORT if self.passive else 32_768
        self.remote_port = PEER_PORT if self.passive else LISTEN_PORT
        self.peer_nxt = PEER_ISS
        self.peer_ts = PEER_TS0
        self.ts_echo = 0
        self.connections: list[Connection] = []  # every connection seen (history check)
        self.deliveries: dict[int, Delivery] = {}  # by id() of a connection in the list
        self.sent: list[Segment] = []  # our segments to the peer from the last input
        # False once an input may have put bytes other than the pattern into the stream
        # (random wire bytes); delivered bytes are then counted but not compared.
        self.content_known = True
        self._reach(state, preload)
        assert self.state() is state, f"reached {self.state()}, wanted {state}"
        self.recorder.records.clear()

    # ------------------------------------------------------------------ observation

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (HOST, self.local_port, PEER, self.remote_port)

    def tracked(self) -> Connection | None:
        return self.endpoint.connections.get(self.key)

    def state(self) -> State:
        conn = self.tracked()
        if conn is not None:
            return conn.state
        if self.key in self.endpoint.time_wait:
            return State.TIME_WAIT
        if self.passive and LISTEN_PORT in self.endpoint.listeners:
            return State.LISTEN
        return State.CLOSED

    # ------------------------------------------------------------------ inputs

    def peer_segment(
        self,
        flags: int,
        seq: int,
        ack: int = 0,
        *,
        payload: bytes = b"",
        window: int = 65535,
        options: Options | None = None,
    ) -> Segment:
        """A segment from the peer on the rig's 4-tuple (timestamps when on)."""
        if options is None:
            options = Options(timestamp=(self.peer_ts, self.ts_echo)) if self.full else Options()
        return Segment(
            self.remote_port, self.local_port, seq, ack, flags, window, 0, options, payload
        )

    def feed_datagram(self, src: str, dst: str, seg: Segment) -> None:
        """Peer input as a decoded segment (Endpoint.receive_datagram)."""
        before = Counter(self.endpoint.stats)
        self.endpoint.receive_datagram(Datagram(src, dst, seg), now=self.now)
        self._after_input(before)

    def feed_bytes(self, src: str, dst: str, data: bytes) -> None:
        """Peer input as wire bytes (Endpoint.receive_bytes)."""
        before = Counter(self.endpoint.stats)
        self.endpoint.receive_bytes(src, dst, data, now=self.now)
        self._after_input(before)

    def advance(self, micros: int, *, run_timers: bool = True) -> None:
        """Move the clock; run the timers that are due."""
        self.now += micros
        before = Counter(self.endpoint.stats)
        if run_timers:
            deadline = self.endpoint.next_timer()
            if deadline is not None and deadline <= self.now:
                self.endpoint.handle_timer(now=self.now)
        self._collect()
        assert reason_counters(self.endpoint.stats) == reason_counters(before), (
            "a timer incremented a drop counter"
        )
        self._check_common()

    def app(self, action: str, size: int = 0) -> None:
        """A user call on the tracked connection; InvalidOperation (a TcpError) is the
        documented answer to a call its state does not allow."""
        conn = self.tracked()
        if conn is not None:
            try:
                if action == "send":
                    conn.send(bytes(size), now=self.now)
                elif action == "close":
                    conn.close(now=self.now)
                elif action == "shutdown":
                    conn.shutdown(now=self.now)
                elif action == "abort":
                    conn.abort(now=self.now)
                elif action == "read":
                    self._drain(conn)
                else:
                    raise ValueError(action)
            except TcpError:
                pass
        self._collect()
        self._check_common()

    # ------------------------------------------------------------------ checks

    def _after_input(self, before: Counter[str]) -> None:
        records = self.recorder.records
        drops = 0
        for record in records:
            data = record.data
            if record.kind == TraceKind.DROP:
                drops += 1
            elif record.kind == TraceKind.SEGMENT_IN:
                verdict = data.get("verdict")
                if record.conn == HOST:
                    # Endpoint._reply: a segment answered (RST, SYN cookie), not kept.
                    drops += 1
                elif data.get("reason") == "TIME_WAIT entry":
                    drops += verdict in TIME_WAIT_DROPS
                elif "counter" in data:
                    drops += 1
                else:
                    assert verdict not in DROP_VERDICTS, f"drop without a counter: {data}"
        delta = reason_counters(self.endpoint.stats) - reason_counters(before)
        assert drops <= 1, f"one input dropped {drops} times: {records}"
        assert delta == drops, (
            f"{drops} drop(s) but drop counters moved by {delta}: "
            f"{self.endpoint.stats - before}; {[r.data for r in records]}"
        )
        self._collect()
        self._check_common()

    def _collect(self) -> None:
        """Take the Endpoint's output, accept children, drain data, record ACKs."""
        for existing in list(self.endpoint.connections.values()):
            self._see(existing)
        while LISTEN_PORT in self.endpoint.listeners:
            child = self.endpoint.accept(LISTEN_PORT)
            if child is None:
                break
            self._see(child)
        out = self.endpoint.datagrams_to_send(now=self.now)
        self.sent = [
            d.segment
            for d in out
            if d.dst == PEER
            and d.segment.src_port == self.local_port
            and d.segment.dst_port == self.remote_port
        ]
        for seg in self.sent:
            assert 0 <= seg.seq <= MASK and 0 <= seg.ack <= MASK and 0 <= seg.window <= 0xFFFF
            if seg.options.timestamp is not None:
                self.ts_echo = seg.options.timestamp[0]
        conn = self.tracked()
        if conn is not None:
            self._drain(conn)
            delivery = self.deliveries[id(conn)]
            if conn.state is not State.SYN_SENT and conn.state is not State.LISTEN:
                base = seq_add(conn.irs, 1)
                for seg in self.sent:
                    if seg.flags & Flag.ACK and not seg.flags & Flag.RST:
                        offset = seq_sub(seg.ack, base)
                        delivery.acked = max(delivery.acked, offset)
            # Data acknowledged is data delivered (the FIN takes one sequence number).
            fin = 1 if conn.peer_closed else 0
            assert len(delivery.received) >= delivery.acked - fin, (
                f"acknowledged {delivery.acked - fin} bytes, delivered {len(delivery.received)}"
            )

    def _see(self, conn: Connection) -> None:
        if id(conn) not in self.deliveries:
            self.connections.append(conn)
            self.deliveries[id(conn)] = Delivery()

    def _drain(self, conn: Connection) -> None:
        delivery = self.deliveries[id(conn)]
        try:
            data = conn.receive(now=self.now)
        except TcpError:
            return
        if data:
            start = seq_add(conn.irs, 1 + len(delivery.received))
            if self.content_known:
                assert data == pattern(start, len(data)), "delivered bytes differ from sent"
            delivery.received += data

    def _check_common(self) -> None:
        for record in self.recorder.records:
            if record.kind == TraceKind.STATE:
                old = State(record.data["from"])
                trigger = Trigger[record.data["trigger"]]
                assert TRANSITIONS.get((old, trigger)) is State(record.data["to"]), record.data
        self.recorder.records.clear()
        for conn in self.connections:
            history = conn.state_history
            assert history[0] is State.CLOSED and history[-1] is conn.state
            for edge in pairwise(history):
                assert edge in EDGES, f"{edge[0]} -> {edge[1]} is not a TRANSITIONS edge"

    # ------------------------------------------------------------------ reaching states

    def _peer_options_syn(self) -> Options:
        if self.full:
            return Options(
                mss=1460, window_scale=7, sack_permitted=True, timestamp=(self.peer_ts, 0)
            )
        return Options(mss=1460)

    def _script(self, seg: Segment) -> list[Segment]:
        """Send one scripted peer segment; returns our answer to the peer."""
        self.feed_datagram(PEER, HOST, seg)
        self.peer_ts += 1
        return self.sent

    def _reach(self, state: State, preload: bool) -> None:
        if state is State.CLOSED:
            return
        if self.passive:
            self.endpoint.listen(LISTEN_PORT)
            self._collect()
            if state is State.SYN_RECEIVED:
                synack = self._script(
                    self.peer_segment(Flag.SYN, PEER_ISS, options=self._peer_options_syn())
                )
                assert [s.flags for s in synack] == [Flag.SYN | Flag.ACK]
                self.peer_nxt = seq_add(PEER_ISS, 1)
            return
        conn = self.endpoint.connect(PEER, LISTEN_PORT, now=self.now, local_port=self.local_port)
        self._collect()
        if state is State.SYN_SENT:
            if preload:
                conn.send(bytes(100), now=self.now)
            return
        self._script(
            self.peer_segment(
                Flag.SYN | Flag.ACK,
                PEER_ISS,
                seq_add(ISS, 1),
                options=self._peer_options_syn(),
            )
        )
        self.peer_nxt = seq_add(PEER_ISS, 1)
        ack = seq_add(ISS, 1)
        if preload:
            # 300 bytes each way: ours stay unacknowledged (in flight), the peer's are
            # delivered and acknowledged.
            conn.send(bytes(300), now=self.now)
            self._script(
                self.peer_segment(
                    Flag.ACK | Flag.PSH, self.peer_nxt, ack, payload=pattern(self.peer_nxt, 300)
                )
            )
            self.peer_nxt = seq_add(self.peer_nxt, 300)
        if state is State.ESTABLISHED:
            return
        if state in (State.CLOSE_WAIT, State.LAST_ACK):
            self._script(self.peer_segment(Flag.FIN | Flag.ACK, self.peer_nxt, ack))
            self.peer_nxt = seq_add(self.peer_nxt, 1)
            if state is State.LAST_ACK:
                conn.close(now=self.now)
                self._collect()
            return
        conn.close(now=self.now)
        self._collect()
        if state is State.FIN_WAIT_1:
            return
        if state is State.CLOSING:
            self._script(self.peer_segment(Flag.FIN | Flag.ACK, self.peer_nxt, ack))
            self.peer_nxt = seq_add(self.peer_nxt, 1)
            return
        our_fin_acked = seq_add(conn.snd_max, 0)
        self._script(self.peer_segment(Flag.ACK, self.peer_nxt, our_fin_acked))
        if state is State.FIN_WAIT_2:
            return
        self._script(self.peer_segment(Flag.FIN | Flag.ACK, self.peer_nxt, our_fin_acked))
        self.peer_nxt = seq_add(self.peer_nxt, 1)


__all__ = [
    "ALL_STATES",
    "CONFIGS",
    "HOST",
    "LISTEN_PORT",
    "PEER",
    "Rig",
    "pattern",
]
