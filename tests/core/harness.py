"""Exact-segment test harness: one Connection, a scripted peer, a virtual clock.

Tests feed the connection exact segments from the peer and assert the exact segments it
sends back (`expect`: exactly these, then nothing). Times are given in milliseconds on
the virtual clock. The remote ISN sits just below 2**32 so every test crosses the
sequence-number wrap. States are reached through the public API only, never by setting
fields.
"""

from __future__ import annotations

from dataclasses import replace

from tcpstack.core.config import PLAIN, Config
from tcpstack.core.connection import Connection
from tcpstack.core.events import Event
from tcpstack.core.ratelimit import ChallengeAckLimiter
from tcpstack.core.segment import NO_OPTIONS, Flag, Options, Segment
from tcpstack.core.seq import seq_add
from tcpstack.core.state import State
from tcpstack.core.trace import TraceCollector

LOCAL_IP = "10.0.0.1"
REMOTE_IP = "10.0.0.2"
LOCAL_PORT = 4242
REMOTE_PORT = 80
LOCAL_ISS = 1_000
REMOTE_ISS = 2**32 - 3  # the peer's ISN: data crosses the wrap within three bytes

SYN = Flag.SYN
ACK = Flag.ACK
FIN = Flag.FIN
RST = Flag.RST
PSH = Flag.PSH

MSS_OPTION = Options(mss=1460)
MS = 1_000  # microseconds per millisecond


class Harness:
    """A connection under test plus the clock and helpers that script its peer."""

    def __init__(
        self, config: Config | None = None, *, challenge_limiter: ChallengeAckLimiter | None = None
    ) -> None:
        # PLAIN: RFC 9293 alone (no window scaling, timestamps, SACK, congestion
        # control, delayed ACK or Nagle), so each expected segment follows from 3.10.
        self.config = config if config is not None else PLAIN
        self.trace = TraceCollector()
        self.now = 0
        self.conn = Connection(
            (LOCAL_IP, LOCAL_PORT),
            (REMOTE_IP, REMOTE_PORT),
            config=self.config,
            isn_generator=lambda _tuple, _now: LOCAL_ISS,
            tracer=self.trace,
            challenge_limiter=challenge_limiter,
        )

    # -- the clock -----------------------------------------------------------------

    def at(self, ms: float | None) -> int:
        """Move the virtual clock to `ms` milliseconds (never backwards); returns µs."""
        if ms is not None:
            target = round(ms * MS)
            assert target >= self.now, f"clock cannot go back from {self.now} to {target}"
            self.now = target
        return self.now

    # -- segments ------------------------------------------------------------------

    def peer(
        self,
        flags: int,
        seq: int,
        ack: int = 0,
        *,
        window: int = 65535,
        payload: bytes = b"",
        options: Options = NO_OPTIONS,
    ) -> Segment:
        """A segment from the peer to us; seq/ack are absolute (use the helpers)."""
        return Segment(REMOTE_PORT, LOCAL_PORT, seq, ack, flags, window, 0, options, payload)

    def ours(
        self,
        flags: int,
        seq: int,
        ack: int = 0,
        *,
        window: int | None = None,
        payload: bytes = b"",
        options: Options = NO_OPTIONS,
    ) -> Segment:
        """A segment we expect to send; the window defaults to our free buffer space."""
        if window is None:
            window = self.conn.window_field()
        return Segment(LOCAL_PORT, REMOTE_PORT, seq, ack, flags, window, 0, options, payload)

    @staticmethod
    def local_seq(offset: int) -> int:
        """Our sequence number `offset` after our ISN."""
        return seq_add(LOCAL_ISS, offset)

    @staticmethod
    def remote_seq(offset: int) -> int:
        """The peer's sequence number `offset` after its ISN (wraps past 2**32)."""
        return seq_add(REMOTE_ISS, offset)

    # -- feeding and expecting -----------------------------------------------------

    def feed(self, seg: Segment, at: float | None = None) -> None:
        self.conn.receive_segment(seg, now=self.at(at))

    def sent(self) -> list[Segment]:
        return self.conn.segments_to_send(now=self.now)

    def expect(self, *segments: Segment, at: float | None = None) -> None:
        """Exactly these segments were sent (in order), then nothing."""
        self.at(at)
        got = self.sent()
        assert got == list(segments), _diff(list(segments), got)

    def expect_nothing(self, at: float | None = None) -> None:
        self.expect(at=at)

    def fire(self, at: float) -> None:
        """Advance to `at` ms and run the timers."""
        self.conn.handle_timer(now=self.at(at))

    def events(self) -> list[Event]:
        out: list[Event] = []
        while (event := self.conn.next_event()) is not None:
            out.append(event)
        return out

    @property
    def state(self) -> State:
        return self.conn.state

    @property
    def path(self) -> list[State]:
        return self.conn.state_history

    def next_timer_ms(self) -> float | None:
        deadline = self.conn.next_timer()
        return None if deadline is None else deadline / MS

    # -- reaching states through the public API ------------------------------------

    def to_syn_sent(self) -> None:
        self.conn.open(now=self.now)
        self.expect(self.ours(SYN, LOCAL_ISS, options=MSS_OPTION))

    def to_listen(self) -> None:
        self.conn.listen(now=self.now)
        self.expect_nothing()

    def to_syn_received(self) -> None:
        """Passive open: LISTEN, then the peer's SYN."""
        self.to_listen()
        self.feed(self.peer(SYN, REMOTE_ISS, options=MSS_OPTION))
        self.expect(self.ours(SYN | ACK, LOCAL_ISS, self.remote_seq(1), options=MSS_OPTION))

    def to_established(self, *, passive: bool = False) -> None:
        if passive:
            self.to_syn_received()
            self.feed(self.peer(ACK, self.remote_seq(1), self.local_seq(1)))
            self.expect_nothing()
        else:
            self.to_syn_sent()
            self.feed(self.peer(SYN | ACK, REMOTE_ISS, self.local_seq(1), options=MSS_OPTION))
            self.expect(self.ours(ACK, self.local_seq(1), self.remote_seq(1)))
        assert self.state is State.ESTABLISHED
        self.events()

    def to_fin_wait_1(self) -> None:
        self.to_established()
        self.conn.close(now=self.now)
        self.expect(self.ours(FIN | ACK, self.local_seq(1), self.remote_seq(1)))
        assert self.state is State.FIN_WAIT_1

    def to_fin_wait_2(self) -> None:
        self.to_fin_wait_1()
        self.feed(self.peer(ACK, self.remote_seq(1), self.local_seq(2)))
        self.expect_nothing()
        assert self.state is State.FIN_WAIT_2

    def to_close_wait(self) -> None:
        self.to_established()
        self.feed(self.peer(FIN | ACK, self.remote_seq(1), self.local_seq(1)))
        self.expect(self.ours(ACK, self.local_seq(1), self.remote_seq(2)))
        assert self.state is State.CLOSE_WAIT

    def to_last_ack(self) -> None:
        self.to_close_wait()
        self.conn.close(now=self.now)
        self.expect(self.ours(FIN | ACK, self.local_seq(1), self.remote_seq(2)))
        assert self.state is State.LAST_ACK

    def to_closing(self) -> None:
        self.to_fin_wait_1()
        # The peer's FIN crosses ours: it does not acknowledge our FIN.
        self.feed(self.peer(FIN | ACK, self.remote_seq(1), self.local_seq(1)))
        self.expect(self.ours(ACK, self.local_seq(2), self.remote_seq(2)))
        assert self.state is State.CLOSING

    def to_time_wait(self) -> None:
        self.to_fin_wait_2()
        self.feed(self.peer(FIN | ACK, self.remote_seq(1), self.local_seq(2)))
        self.expect(self.ours(ACK, self.local_seq(2), self.remote_seq(2)))
        assert self.state is State.TIME_WAIT


def _diff(expected: list[Segment], got: list[Segment]) -> str:
    lines = ["segments differ:", "  expected:"]
    lines += [f"    {_show(s)}" for s in expected] or ["    (nothing)"]
    lines.append("  got:")
    lines += [f"    {_show(s)}" for s in got] or ["    (nothing)"]
    return "\n".join(lines)


def _show(seg: Segment) -> str:
    return f"{seg.src_port}>{seg.dst_port} {seg.describe()}"


def with_payload(seg: Segment, payload: bytes) -> Segment:
    return replace(seg, payload=payload)


# RFC 9293 3.8.3 R2 as Linux measures tcp_retries2 = 15: a 924.6 s budget from the first
# unanswered transmission. With RTOs of 1, 2, 4 ... 64 s and then 120 s, resends go out
# at 1, 3, 7, 15, 31, 63, 127, 247, 367, 487, 607, 727 and 847 s, and the expiry at
# 967 s (past the budget) closes the connection.
RESENDS_BEFORE_R2 = 13
