"""Application-level heartbeats over a byte stream, sans-I/O (seed claim C18).

TCP keepalive proves that the peer's *stack* answers: the kernel ACKs a probe even when
the application above it is deadlocked, paused in a debugger or stuck on a full disk.
A heartbeat that the application itself must answer proves the application works.
`Heartbeat` is such a protocol as a state machine in the shape of the core: bytes in
(`feed`), bytes out (`data_to_send`), a deadline (`next_deadline`, `handle_timer`) and
events (`next_event`); every call takes `now` in integer microseconds and nothing here
reads a clock or touches a socket.

Framing. Every frame is a 1-byte type, a 4-byte big-endian body length and the body:

    DATA  0x01  the application's message, any bytes
    PING  0x02  4-byte sequence number
    PONG  0x03  the sequence number of the PING it answers

so heartbeats share the stream with the application's own messages (they can carry
data, unlike keepalive probes) and are answered only when the application reads.

Liveness. With an `interval`, a PING goes out every `interval` µs (the first one
`interval` after creation). At each PING time, if no PONG arrived since the previous
PING, that PING counts as missed; `miss_limit` consecutive misses declare the peer dead
(`PeerDead`), after which no more PINGs are sent. So a peer whose application stops
just after answering the PING of time t is declared dead at exactly
t + (miss_limit + 1) * interval: the first unanswered PING plus miss_limit intervals.
Any PONG, also a late one for an older PING, resets the count. With `interval=None`
the heartbeat is passive: it answers PINGs and never declares anything.

`HeartbeatChannel` runs a Heartbeat over anything with the `send` / `receive` calls of
`tcpstack.core.connection.Connection` (the `ByteStream` protocol).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DATA",
    "HEADER_LEN",
    "PING",
    "PONG",
    "ByteStream",
    "Heartbeat",
    "HeartbeatChannel",
    "HeartbeatError",
    "HeartbeatEvent",
    "Message",
    "PeerDead",
    "Pong",
    "encode_frame",
]

DATA = 0x01
PING = 0x02
PONG = 0x03
HEADER_LEN = 5
_SEQ_LEN = 4
_FRAME_TYPES = frozenset({DATA, PING, PONG})
DEFAULT_MAX_FRAME = 1 << 20


class HeartbeatError(Exception):
    """The peer sent bytes that are not a valid frame; the stream cannot be trusted."""


@dataclass(frozen=True, slots=True)
class Message:
    """A DATA frame from the peer's application."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """The peer's application answered PING `seq`; `rtt` µs after that PING was sent."""

    seq: int
    rtt: int


@dataclass(frozen=True, slots=True)
class PeerDead:
    """`missed` PINGs in a row went unanswered: the peer's application is gone or hung."""

    missed: int
    at: int


HeartbeatEvent = Message | Pong | PeerDead


def encode_frame(kind: int, body: bytes) -> bytes:
    """One frame: type, 4-byte big-endian length, body."""
    if kind not in _FRAME_TYPES:
        raise ValueError(f"unknown frame type {kind:#x}")
    return bytes([kind]) + len(body).to_bytes(4, "big") + body


class Heartbeat:
    """PING/PONG liveness and DATA framing for one end of a byte stream."""

    def __init__(
        self,
        *,
        now: int,
        interval: int | None,
        miss_limit: int = 3,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        if interval is not None and (not isinstance(interval, int) or interval <= 0):
            raise ValueError(f"interval must be a positive int of µs or None, got {interval!r}")
        if miss_limit < 1:
            raise ValueError(f"miss_limit must be at least 1, got {miss_limit}")
        self.interval = interval
        self.miss_limit = miss_limit
        self.max_frame = max_frame
        self._inbuf = bytearray()
        self._outbuf = bytearray()
        self._events: deque[HeartbeatEvent] = deque()
        self._next_ping: int | None = now + interval if interval is not None else None
        self._sent_at: dict[int, int] = {}  # seq -> when that PING left
        self._answered_since_last_ping = True
        self.missed = 0  # consecutive PINGs unanswered
        self.pings_sent = 0
        self.pongs_received = 0
        self.pings_answered = 0  # PINGs from the peer that we answered
        self.last_rtt: int | None = None
        self.dead_at: int | None = None

    # ------------------------------------------------------------------ state

    @property
    def alive(self) -> bool:
        """False once the peer has been declared dead."""
        return self.dead_at is None

    # ------------------------------------------------------------------ inputs

    def feed(self, data: bytes, *, now: int) -> None:
        """Bytes read from the stream. PINGs are answered (queued PONGs), PONGs count as
        proof of life, DATA becomes a `Message` event. Raises HeartbeatError on a frame
        of unknown type or longer than `max_frame` (nothing after it is processed)."""
        buf = self._inbuf
        buf += data
        offset = 0
        while len(buf) - offset >= HEADER_LEN:
            kind = buf[offset]
            length = int.from_bytes(buf[offset + 1 : offset + HEADER_LEN], "big")
            if kind not in _FRAME_TYPES:
                del buf[:offset]
                raise HeartbeatError(f"unknown frame type {kind:#x}")
            if length > self.max_frame:
                del buf[:offset]
                raise HeartbeatError(f"frame of {length} bytes exceeds {self.max_frame}")
            if kind != DATA and length != _SEQ_LEN:
                del buf[:offset]
                raise HeartbeatError(f"{'PING' if kind == PING else 'PONG'} body of {length}")
            end = offset + HEADER_LEN + length
            if len(buf) < end:
                break
            body = bytes(buf[offset + HEADER_LEN : end])
            offset = end
            self._on_frame(kind, body, now)
        del buf[:offset]

    def _on_frame(self, kind: int, body: bytes, now: int) -> None:
        if kind == DATA:
            self._events.append(Message(body))
        elif kind == PING:
            self._outbuf += encode_frame(PONG, body)
            self.pings_answered += 1
        else:
            seq = int.from_bytes(body, "big")
            sent_at = self._sent_at.pop(seq, None)
            if sent_at is None:
                return  # not a PING of ours (or answered twice): no proof of anything
            # Older PINGs can no longer be answered in order: forget them.
            for older in [s for s in self._sent_at if s < seq]:
                del self._sent_at[older]
            self.pongs_received += 1
            self.last_rtt = now - sent_at
            if self.alive:
                self._answered_since_last_ping = True
                self.missed = 0
            self._events.append(Pong(seq, now - sent_at))

    def send_message(self, payload: bytes) -> None:
        """Queue one application message as a DATA frame."""
        if len(payload) > self.max_frame:
            raise ValueError(f"message of {len(payload)} bytes exceeds {self.max_frame}")
        self._outbuf += encode_frame(DATA, payload)

    def handle_timer(self, *, now: int) -> None:
        """At the PING time: count a miss or send the next PING. Early calls do nothing;
        a late call acts at `now` and the next PING follows `interval` after it."""
        due = self._next_ping
        if due is None or now < due or self.interval is None:
            return
        if not self._answered_since_last_ping:
            self.missed += 1
            if self.missed >= self.miss_limit:
                self.dead_at = now
                self._next_ping = None
                self._events.append(PeerDead(self.missed, now))
                return
        seq = self.pings_sent
        self.pings_sent += 1
        self._sent_at[seq] = now
        self._answered_since_last_ping = False
        self._outbuf += encode_frame(PING, seq.to_bytes(_SEQ_LEN, "big"))
        self._next_ping = now + self.interval

    # ------------------------------------------------------------------ outputs

    def data_to_send(self) -> bytes:
        """Bytes to write to the stream (PINGs, PONGs, messages), oldest first; drains."""
        out = bytes(self._outbuf)
        self._outbuf.clear()
        return out

    def next_deadline(self) -> int | None:
        """When handle_timer has something to do (the next PING time), or None. Pure."""
        return self._next_ping

    def next_event(self) -> HeartbeatEvent | None:
        return self._events.popleft() if self._events else None


class ByteStream(Protocol):
    """What a heartbeat needs from a stream: the Connection's send and receive."""

    def send(self, data: bytes, *, now: int) -> int: ...

    def receive(self, max_bytes: int = ..., *, now: int) -> bytes: ...


class HeartbeatChannel:
    """A Heartbeat wired to a ByteStream.

    `pump(now=)` reads everything the stream has into the heartbeat and writes what the
    heartbeat wants to send (keeping what the stream did not take for the next pump);
    call it whenever the stream has data or room. `tick(now=)` runs the heartbeat's
    timer and pumps; call it at `next_deadline()`. An application that stops calling
    these (it hangs) stops answering PINGs, which is the point.
    """

    def __init__(self, stream: ByteStream, heartbeat: Heartbeat) -> None:
        self.stream = stream
        self.heartbeat = heartbeat
        self._unsent = b""

    def pump(self, *, now: int) -> None:
        while data := self.stream.receive(now=now):
            self.heartbeat.feed(data, now=now)
        pending = self._unsent + self.heartbeat.data_to_send()
        if pending:
            taken = self.stream.send(pending, now=now)
            pending = pending[taken:]
        self._unsent = pending

    def tick(self, *, now: int) -> None:
        self.heartbeat.handle_timer(now=now)
        self.pump(now=now)

    def send_message(self, payload: bytes, *, now: int) -> None:
        self.heartbeat.send_message(payload)
        self.pump(now=now)

    @property
    def unsent(self) -> int:
        """Bytes the stream has not taken yet (its send buffer was full)."""
        return len(self._unsent)

    def next_deadline(self) -> int | None:
        return self.heartbeat.next_deadline()
