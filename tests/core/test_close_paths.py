"""Complete close paths with two real connections back to back (seed C2-C5, C9-C12).

A tiny in-test pump moves segments between the two ends over a virtual clock with a
fixed one-way delay and can drop chosen segments; both ends have fixed ISNs (A's just
below 2**32, so its sequence numbers wrap). Ladders are written from each sender's view:
sequence numbers relative to its own ISN, ACK numbers relative to the other's.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from tcpstack.core.config import PLAIN, Config
from tcpstack.core.connection import Connection
from tcpstack.core.events import Closed, CloseReason, EndOfStream, Established, Event
from tcpstack.core.segment import Flag, Segment
from tcpstack.core.state import State

A_ADDR = ("10.0.0.1", 40_000)
B_ADDR = ("10.0.0.2", 80)
A_ISS = 2**32 - 2
B_ISS = 7_000
MS = 1_000
ONE_WAY = 10 * MS  # every segment takes 10 ms

DropRule = Callable[[str, Segment], bool]

ACTIVE_OPEN = [State.CLOSED, State.SYN_SENT, State.ESTABLISHED]
PASSIVE_OPEN = [State.CLOSED, State.LISTEN, State.SYN_RECEIVED, State.ESTABLISHED]
HANDSHAKE = [
    "0 A>B S 0:0(0) win 65535 <mss 1460>",
    "10 B>A S. 0:0(0) ack 1 win 65535 <mss 1460>",
    "20 A>B . 1:1(0) ack 1 win 65535",
]


class Wire:
    """A (active opener) and B (passive opener) joined by a lossless 10 ms link."""

    def __init__(self, *, a_config: Config | None = None) -> None:
        self.now = 0
        # PLAIN (RFC 9293 alone): every segment on the ladder follows from section 3.10.
        a_config = a_config if a_config is not None else PLAIN
        self.a = Connection(A_ADDR, B_ADDR, config=a_config, isn_generator=lambda _t, _n: A_ISS)
        self.b = Connection(B_ADDR, A_ADDR, config=PLAIN, isn_generator=lambda _t, _n: B_ISS)
        self._ends = {"A": self.a, "B": self.b}
        self._queue: list[tuple[int, int, str, Segment]] = []
        self._order = itertools.count()
        self._drops: list[DropRule] = []
        self.ladder: list[str] = []
        self.events: dict[str, list[Event]] = {"A": [], "B": []}

    def drop_once(self, rule: DropRule) -> None:
        """Lose the first segment for which rule(sender, segment) holds."""
        self._drops.append(rule)

    def run(self, until_ms: int) -> None:
        """Deliver segments and fire timers, in time order, up to `until_ms`."""
        until = until_ms * MS
        self._collect()
        for _ in range(10_000):
            due = [self._queue[0][0]] if self._queue else []
            due += [t for c in (self.a, self.b) if (t := c.next_timer()) is not None]
            if not due or min(due) > until:
                break
            self.now = min(due)
            while self._queue and self._queue[0][0] == self.now:
                _, _, receiver, seg = heapq.heappop(self._queue)
                self._ends[receiver].receive_segment(seg, now=self.now)
                self._collect()
            for conn in (self.a, self.b):
                deadline = conn.next_timer()
                if deadline is not None and deadline <= self.now:
                    conn.handle_timer(now=self.now)
            self._collect()
        else:
            raise AssertionError("pump did not settle")
        self.now = until

    def at(self, ms: int) -> int:
        """Run everything due up to `ms`, then return that instant (µs) for a user call."""
        self.run(ms)
        return self.now

    def establish(self) -> None:
        self.b.listen(now=self.now)
        self.a.open(now=self.now)
        self.run(30)
        assert self.a.state is State.ESTABLISHED
        assert self.b.state is State.ESTABLISHED
        assert self.ladder == HANDSHAKE

    def _collect(self) -> None:
        for name, conn in self._ends.items():
            for seg in conn.segments_to_send(now=self.now):
                rule = next((r for r in self._drops if r(name, seg)), None)
                if rule is not None:
                    self._drops.remove(rule)
                own, other = (A_ISS, B_ISS) if name == "A" else (B_ISS, A_ISS)
                line = f"{self.now // MS} {name}>{'B' if name == 'A' else 'A'} "
                line += seg.describe(own, other) + (" (lost)" if rule is not None else "")
                self.ladder.append(line)
                if rule is None:
                    receiver = "B" if name == "A" else "A"
                    entry = (self.now + ONE_WAY, next(self._order), receiver, seg)
                    heapq.heappush(self._queue, entry)
            while (event := conn.next_event()) is not None:
                self.events[name].append(event)


def is_pure_ack(seg: Segment) -> bool:
    return seg.flags == Flag.ACK and not seg.payload


def test_normal_close_active_and_passive_paths() -> None:
    w = Wire()
    w.establish()
    w.a.close(now=w.at(100))
    w.run(150)
    assert (w.a.state, w.b.state) == (State.FIN_WAIT_2, State.CLOSE_WAIT)
    w.b.close(now=w.at(200))
    w.run(1_000)
    assert (w.a.state, w.b.state) == (State.TIME_WAIT, State.CLOSED)
    # TIME_WAIT began when B's FIN arrived at 210 ms: CLOSED 2*MSL = 60 s later.
    assert w.a.next_timer() == (210 + 60_000) * MS
    w.run(70_000)
    assert w.ladder == [
        *HANDSHAKE,
        "100 A>B F. 1:1(0) ack 1 win 65535",
        "110 B>A . 1:1(0) ack 2 win 65535",
        "200 B>A F. 1:1(0) ack 2 win 65535",
        "210 A>B . 2:2(0) ack 2 win 65535",
    ]
    # Seed C2 and C3.
    assert w.a.state_history == [
        *ACTIVE_OPEN,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.TIME_WAIT,
        State.CLOSED,
    ]
    assert w.b.state_history == [*PASSIVE_OPEN, State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED]
    normal = [Established(), EndOfStream(), Closed(CloseReason.NORMAL)]
    assert w.events == {"A": normal, "B": normal}


def test_simultaneous_close_goes_through_closing_on_both_sides() -> None:
    w = Wire()
    w.establish()
    # Seed C5/C9: both applications close at the same instant; the FINs cross.
    w.a.close(now=w.at(100))
    w.b.close(now=w.at(100))
    w.run(115)
    assert (w.a.state, w.b.state) == (State.CLOSING, State.CLOSING)
    w.run(1_000)
    assert (w.a.state, w.b.state) == (State.TIME_WAIT, State.TIME_WAIT)
    # Each got the ACK of its FIN at 120 ms: both leave TIME_WAIT at 60.12 s.
    assert w.a.next_timer() == w.b.next_timer() == (120 + 60_000) * MS
    w.run(70_000)
    assert w.ladder == [
        *HANDSHAKE,
        "100 A>B F. 1:1(0) ack 1 win 65535",
        "100 B>A F. 1:1(0) ack 1 win 65535",
        "110 B>A . 2:2(0) ack 2 win 65535",
        "110 A>B . 2:2(0) ack 2 win 65535",
    ]
    closing = [State.FIN_WAIT_1, State.CLOSING, State.TIME_WAIT, State.CLOSED]
    assert w.a.state_history == [*ACTIVE_OPEN, *closing]
    assert w.b.state_history == [*PASSIVE_OPEN, *closing]
    normal = [Established(), EndOfStream(), Closed(CloseReason.NORMAL)]
    assert w.events == {"A": normal, "B": normal}


def test_fin_ack_close_goes_from_fin_wait_1_straight_to_time_wait() -> None:
    w = Wire()
    w.establish()
    # Seed C4/C12: B answers A's FIN with one FIN+ACK. tcpstack has no delayed ACK yet
    # (Linux's delayed ACK is what folds the two together), so B's separate bare ACK is
    # lost here and B's application closes on end of stream: three segments cross.
    w.drop_once(lambda sender, seg: sender == "B" and is_pure_ack(seg))
    w.a.close(now=w.at(100))
    w.run(110)
    assert w.b.state is State.CLOSE_WAIT
    w.b.close(now=w.at(110))
    w.run(1_000)
    assert (w.a.state, w.b.state) == (State.TIME_WAIT, State.CLOSED)
    assert w.a.next_timer() == (120 + 60_000) * MS
    w.run(70_000)
    assert w.ladder == [
        *HANDSHAKE,
        "100 A>B F. 1:1(0) ack 1 win 65535",
        "110 B>A . 1:1(0) ack 2 win 65535 (lost)",
        "110 B>A F. 1:1(0) ack 2 win 65535",
        "120 A>B . 2:2(0) ack 2 win 65535",
    ]
    assert w.a.state_history == [*ACTIVE_OPEN, State.FIN_WAIT_1, State.TIME_WAIT, State.CLOSED]
    # The passive side still passes through CLOSE_WAIT (seed correction).
    assert w.b.state_history == [*PASSIVE_OPEN, State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED]
    normal = [Established(), EndOfStream(), Closed(CloseReason.NORMAL)]
    assert w.events == {"A": normal, "B": normal}


def test_lost_final_ack_is_resent_from_time_wait_and_the_peer_closes_normally() -> None:
    w = Wire()
    w.establish()
    # Seed C11a: A's last ACK is lost. B, in LAST_ACK, retransmits its FIN after one RTO
    # (1 s); A, still in TIME_WAIT, ACKs it again and restarts 2*MSL from 1210 ms.
    w.drop_once(lambda sender, seg: sender == "A" and is_pure_ack(seg))
    w.a.close(now=w.at(100))
    w.run(150)
    w.b.close(now=w.at(200))
    w.run(1_000)
    assert (w.a.state, w.b.state) == (State.TIME_WAIT, State.LAST_ACK)
    assert w.a.next_timer() == (210 + 60_000) * MS
    assert w.b.next_timer() == (200 + 1_000) * MS
    w.run(2_000)
    assert w.b.state is State.CLOSED
    assert w.a.next_timer() == (1_210 + 60_000) * MS
    w.run(70_000)
    assert w.ladder == [
        *HANDSHAKE,
        "100 A>B F. 1:1(0) ack 1 win 65535",
        "110 B>A . 1:1(0) ack 2 win 65535",
        "200 B>A F. 1:1(0) ack 2 win 65535",
        "210 A>B . 2:2(0) ack 2 win 65535 (lost)",
        "1200 B>A F. 1:1(0) ack 2 win 65535",
        "1210 A>B . 2:2(0) ack 2 win 65535",
    ]
    assert w.a.state_history == [
        *ACTIVE_OPEN,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.TIME_WAIT,
        State.CLOSED,
    ]
    assert w.b.state_history == [*PASSIVE_OPEN, State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED]
    # The peer sees a normal close, not an error.
    normal = [Established(), EndOfStream(), Closed(CloseReason.NORMAL)]
    assert w.events == {"A": normal, "B": normal}


def test_without_time_wait_the_lost_final_ack_becomes_a_reset() -> None:
    # The counterfactual of seed C11a: with a TIME_WAIT far shorter than the peer's RTO
    # (2*MSL = 200 ms), A is CLOSED when B's FIN comes again, answers it with RST
    # (RFC 9293 3.10.7.1) and B's clean close turns into "connection reset".
    w = Wire(a_config=PLAIN.with_changes(msl=100 * MS))
    w.establish()
    w.drop_once(lambda sender, seg: sender == "A" and is_pure_ack(seg))
    w.a.close(now=w.at(100))
    w.run(150)
    w.b.close(now=w.at(200))
    w.run(2_000)
    assert w.ladder == [
        *HANDSHAKE,
        "100 A>B F. 1:1(0) ack 1 win 65535",
        "110 B>A . 1:1(0) ack 2 win 65535",
        "200 B>A F. 1:1(0) ack 2 win 65535",
        "210 A>B . 2:2(0) ack 2 win 65535 (lost)",
        "1200 B>A F. 1:1(0) ack 2 win 65535",
        "1210 A>B R 2:2(0) win 0",
    ]
    assert w.events["A"] == [Established(), EndOfStream(), Closed(CloseReason.NORMAL)]
    assert w.events["B"] == [Established(), EndOfStream(), Closed(CloseReason.RESET)]
    assert w.b.state_history == [*PASSIVE_OPEN, State.CLOSE_WAIT, State.LAST_ACK, State.CLOSED]
