"""One run as data for pictures: segments, state changes, timer spans, calls and notes.

A `Timeline` is read from a `Story` (its trace, its network observer's records, what it
marked lost, its notes). Every picture of a run (the SVG ladder, the pcapng comments, the
report's replay) is drawn from the same Timeline, so they agree about the order of events,
which segment arrived when, and what state each end was in.

Sides are the ladder's: LEFT is the client host, RIGHT the server host.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tcpstack.core.segment import Flag, Segment, flags_text
from tcpstack.core.seq import seq_add, seq_lt, seq_sub
from tcpstack.core.trace import TraceKind, TraceRecord
from tcpstack.viz.ladder import LEFT, RIGHT, RelativeNumbers

if TYPE_CHECKING:
    from tcpstack.core.connection import Connection
    from tcpstack.scenarios.story import Story

SIDE_NAMES = ("client", "server")

# Short tags and full names of the timers the core traces (TraceRecord data["timer"]).
TIMER_NAMES: dict[str, str] = {
    "retransmit": "retransmission timeout",
    "delayed_ack": "delayed ACK",
    "keepalive": "keepalive",
    "time_wait": "TIME_WAIT 2*MSL",
    "fin_wait_2": "orphan FIN_WAIT_2 timeout",
    "persist": "persist (zero window probe)",
    "linger": "linger",
    "user_timeout": "user timeout",
}
TIMER_TAGS: dict[str, str] = {
    "retransmit": "RTO",
    "delayed_ack": "dACK",
    "keepalive": "KA",
    "time_wait": "2MSL",
    "fin_wait_2": "FW2",
    "persist": "PST",
    "linger": "LNG",
    "user_timeout": "UTO",
}


# Timers that live only while their connection is in one state.
_STATE_TIMERS = {"FIN_WAIT_2": "fin_wait_2", "TIME_WAIT": "time_wait"}


def timer_name(timer: str) -> str:
    return TIMER_NAMES.get(timer, timer.replace("_", " "))


def timer_tag(timer: str) -> str:
    return TIMER_TAGS.get(timer, timer[:4].upper())


@dataclass(frozen=True, slots=True)
class SegmentStep:
    """One segment a host sent, numbered from 1 in the order they left."""

    number: int
    time: int  # µs, when it left
    side: int  # the sender
    conn: str  # the sender's trace label
    segment: Segment
    fate: str | None  # None when it got through, else what happened ("lost", "filtered", ...)
    arrival: int | None  # µs, when the other host got it (None: lost or not seen)
    seq: int  # relative sequence number (tcpdump style)
    ack: int  # relative acknowledgment number
    retransmission: bool
    keepalive_probe: bool
    order: int  # index of its segment_out record in the trace

    @property
    def lost(self) -> bool:
        return self.fate is not None

    @property
    def flags(self) -> str:
        return flags_text(self.segment.flags)

    @property
    def length(self) -> int:
        return len(self.segment.payload)

    def label(self) -> str:
        """'F. 1:1(0) ack 1 win 65535': flags, relative seq range, length, ack, window."""
        seg = self.segment
        text = f"{self.flags} {self.seq}:{seq_add(self.seq, self.length)}({self.length})"
        if seg.flags & Flag.ACK:
            text += f" ack {self.ack}"
        text += f" win {seg.window}"
        if seg.flags & Flag.URG:
            text += f" urg {seg.urgent}"
        return text

    def options_label(self) -> str:
        """The options in packetdrill syntax, or '' when there are none."""
        options = self.segment.options
        return "" if options.is_empty() else options.describe()

    def describe(self) -> str:
        extra = self.options_label()
        return self.label() + (" " + extra if extra else "")


@dataclass(frozen=True, slots=True)
class StateChange:
    time: int
    side: int
    conn: str
    before: str
    after: str
    trigger: str  # the Trigger's name, e.g. "RCV_FIN"
    order: int  # index of its record in the trace


@dataclass(frozen=True, slots=True)
class TimerSpan:
    """A timer from the moment it was armed to the moment it fired or was cancelled.

    outcome: "fired", "cancelled", "rearmed" (armed again before either), "closed" (its
    connection reached CLOSED), "cleared" (its deadline passed with no record: the stack
    dropped it quietly, so the span ends at the deadline) or "running" (still armed when
    the run ended).
    """

    side: int
    conn: str
    timer: str
    start: int
    end: int
    deadline: int | None
    outcome: str
    order: int  # index of the timer_armed record


@dataclass(frozen=True, slots=True)
class Mark:
    """A user call ("call") or a scenario's note ("note") on one side."""

    time: int
    side: int
    kind: str
    text: str
    order: int


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """One step of a replay: the segment it highlights and each end's states then."""

    title: str
    time: int
    segment: int | None  # SegmentStep.number, None for the start and end steps
    states: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]  # per side
    position: int  # the states are those after the trace records before this index


@dataclass
class Timeline:
    titles: tuple[str, str]
    segments: list[SegmentStep] = field(default_factory=list)
    states: list[StateChange] = field(default_factory=list)
    timers: list[TimerSpan] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    end_time: int = 0
    # Each connection label seen, with its side (insertion order = first appearance).
    conns: dict[str, int] = field(default_factory=dict)
    listeners: dict[str, int] = field(default_factory=dict)  # listening label -> side
    listen_order: dict[str, int] = field(default_factory=dict)  # label -> trace index
    records: list[TraceRecord] = field(default_factory=list)

    # -------------------------------------------------------------------- reading

    def conns_of(self, side: int) -> list[str]:
        """The connection labels of one side that changed state, in order of appearance."""
        changed = {change.conn for change in self.states}
        return [c for c, s in self.conns.items() if s == side and c in changed]

    def conn_name(self, conn: str) -> str:
        """A short name for a label: '' when its side has one connection, else ':port'."""
        side = self.conns.get(conn, self.listeners.get(conn, LEFT))
        if conn in self.listeners:
            return f":{_local_port(conn)} listener"
        conns = self.conns_of(side)
        if len(conns) <= 1:
            return ""
        again = _incarnation(conn)
        ports = {_local_port(c) for c in conns}
        if len(ports) == len({c.split("#", 1)[0] for c in conns}):
            return f":{_local_port(conn)}{again}"
        return f"peer :{_remote_port(conn)}{again}"  # one listening port: tell by the peer

    def key_of(self, conn: Connection) -> str:
        """The connection key of a Connection: its label, or 'label#n' when the label was
        used by several connections (picked by matching the state path)."""
        label = conn_label(conn)
        keys = [k for k in self.conns if k == label or k.startswith(label + "#")]
        path = [state.value for state in conn.state_history]
        for key in keys:
            if self.state_path(key) == path:
                return key
        return keys[0] if keys else label

    def states_of(self, conn: str) -> list[StateChange]:
        return [change for change in self.states if change.conn == conn]

    def state_path(self, conn: str) -> list[str]:
        changes = self.states_of(conn)
        if not changes:
            return []
        return [changes[0].before, *(change.after for change in changes)]

    def states_at(self, position: int) -> tuple[tuple[tuple[str, str], ...], ...]:
        """Each side's (connection name, state) pairs after the trace records before
        `position` (listeners in LISTEN until their connection takes over)."""
        current: dict[str, str] = {}
        for listener, _side in self.listeners.items():
            order = self.listen_order.get(listener, 0)
            if order < position:
                current[listener] = "LISTEN"
        for change in self.states:
            if change.order < position:
                current[change.conn] = change.after
        out: list[tuple[tuple[str, str], ...]] = []
        for side in (LEFT, RIGHT):
            pairs = [
                (self.conn_name(conn), current[conn])
                for conn in (*self.listeners, *self.conns)
                if conn in current and self._side(conn) == side
            ]
            out.append(tuple(pairs))
        return tuple(out)

    def _side(self, conn: str) -> int:
        if conn in self.listeners:
            return self.listeners[conn]
        return self.conns[conn]

    def replay(self) -> list[ReplayStep]:
        """The steps of a segment-by-segment replay.

        Step 0 is the start (before the first segment leaves). Step k highlights segment
        k and shows the states once it has arrived and been handled (or, if it was lost,
        right after it left), but never past the moment segment k+1 leaves. The last
        step is the end of the run.
        """
        steps: list[ReplayStep] = []
        first = self.segments[0].order if self.segments else len(self.records)
        steps.append(self._step("start", 0, None, first))
        for index, seg in enumerate(self.segments):
            until = seg.arrival if seg.arrival is not None else seg.time
            position = next(
                (
                    i
                    for i in range(seg.order + 1, len(self.records))
                    if self.records[i].time > until
                ),
                len(self.records),
            )
            if index + 1 < len(self.segments):
                position = min(position, self.segments[index + 1].order)
            who = SIDE_NAMES[seg.side]
            fate = f" ({seg.fate})" if seg.fate else ""
            title = f"#{seg.number} {who}: {seg.label()}{fate}"
            steps.append(self._step(title, seg.time, seg.number, position))
        steps.append(self._step("end of run", self.end_time, None, len(self.records)))
        return steps

    def _step(self, title: str, time: int, segment: int | None, position: int) -> ReplayStep:
        left, right = self.states_at(position)
        return ReplayStep(title, time, segment, (left, right), position)

    def state_of(self, conn: str, position: int) -> str | None:
        """The state of connection `conn` after the trace records before `position`:
        the state it started in before its first change, None if it never changed."""
        changes = self.states_of(conn)
        if not changes:
            return None
        state = changes[0].before
        for change in changes:
            if change.order < position:
                state = change.after
        return state


def _local_port(label: str) -> str:
    local = label.split("#", 1)[0].split(">", 1)[0]
    return local.rsplit(":", 1)[-1] if ":" in local else local


def _remote_port(label: str) -> str:
    remote = label.split("#", 1)[0].split(">", 1)[-1]
    return remote.rsplit(":", 1)[-1]


def _incarnation(key: str) -> str:
    """' (2nd)' for the second connection that used a label, and so on."""
    if "#" not in key:
        return ""
    n = int(key.rsplit("#", 1)[1])
    suffix = {2: "nd", 3: "rd"}.get(n if n < 20 else n % 10, "th")
    return f" ({n}{suffix})"


def incarnation_keys(records: Sequence[TraceRecord]) -> list[str]:
    """Each record's connection key: its trace label, with '#2', '#3', ... appended for
    later connections that reuse a label (a 4-tuple opened again after CLOSED)."""
    count: dict[str, int] = {}
    ended: set[str] = set()
    keys: list[str] = []
    for record in records:
        label = record.conn
        if ">" in label and record.kind == TraceKind.STATE:
            if label in ended and record.data.get("from") == "CLOSED":
                count[label] = count.get(label, 1) + 1
                ended.discard(label)
            if record.data.get("to") == "CLOSED":
                ended.add(label)
        n = count.get(label, 1)
        keys.append(label if n == 1 else f"{label}#{n}")
    return keys


def conn_label(conn: Connection) -> str:
    """The trace label of a connection: 'local_ip:port>remote_ip:port'."""
    return f"{conn.local_ip}:{conn.local_port}>{conn.remote_ip}:{conn.remote_port}"


def _segment_key(seg: Segment) -> tuple[int, int, int, int]:
    return (seg.seq, seg.ack, seg.flags, len(seg.payload))


def build_timeline(
    story: Story, client: Connection | None = None, server: Connection | None = None
) -> Timeline:
    """Read a finished Story into a Timeline."""
    from tcpstack.sim import What

    records = list(story.trace.records)
    titles = (
        _title("client", client, story, LEFT),
        _title("server", server, story, RIGHT),
    )
    timeline = Timeline(titles=titles, records=records)
    keys = incarnation_keys(records)
    for position, record in enumerate(records):
        if record.kind == TraceKind.USER and record.data.get("call") == "listen":
            if record.conn not in timeline.listeners:
                timeline.listeners[record.conn] = story.side_of(record.conn)
                timeline.listen_order[record.conn] = position
        elif ">" in record.conn and keys[position] not in timeline.conns:
            timeline.conns[keys[position]] = story.side_of(record.conn)

    # When each transmitted segment object arrived, from the network's own records.
    arrivals: dict[int, int] = {}
    for net in story.net_records:
        if net.what is What.DELIVERED:
            arrivals.setdefault(id(net.datagram.segment), net.time)
    # Segments the hosts' stacks took in, per side, for matching what the network rewrote
    # (a NAT) or what was not observed.
    incoming: dict[int, list[tuple[int, tuple[int, int, int, int], int]]] = {LEFT: [], RIGHT: []}
    for index, record in enumerate(records):
        if record.kind in (TraceKind.SEGMENT_IN, TraceKind.DROP) and record.segment is not None:
            side = story.side_of(record.conn)
            incoming[side].append((record.time, _segment_key(record.segment), index))
    used: set[int] = set()

    numbers = RelativeNumbers()
    highest: dict[tuple[int, int, int], int] = {}
    open_timers: dict[tuple[str, str], tuple[int, int | None, int]] = {}

    def close_timer(key: tuple[str, str], end: int, outcome: str) -> None:
        start, deadline, order = open_timers.pop(key)
        if outcome in ("rearmed", "closed", "running") and deadline is not None and deadline < end:
            # Past its deadline without a fired record: the stack cleared it silently
            # (a delayed ACK that rode on data, say). It cannot have lived longer.
            end, outcome = max(start, deadline), "cleared"
        side = story.side_of(key[0])
        timeline.timers.append(
            TimerSpan(side, key[0], key[1], start, end, deadline, outcome, order)
        )

    for index, record in enumerate(records):
        side = story.side_of(record.conn)
        conn = keys[index]
        kind = record.kind
        if kind == TraceKind.SEGMENT_OUT and record.segment is not None:
            seg = record.segment
            fate = story.lost.get(id(seg))
            arrival: int | None = None
            if fate is None:
                arrival = arrivals.get(id(seg))
                if arrival is None:
                    arrival = _match_arrival(incoming[1 - side], seg, record.time, used)
            seq_base, ack_base = numbers.bases(side, seg)
            flow = (side, seg.src_port, seg.dst_port)
            top = highest.get(flow)
            retrans = top is not None and seg.seg_len > 0 and seq_lt(seg.seq, top)
            probe = (
                top is not None
                and seg.seg_len <= 1
                and seg.flags == Flag.ACK
                and seq_add(seg.seq, 1) == top
            )
            if probe:
                retrans = False
            if top is None or seq_lt(top, seg.end_seq):
                highest[flow] = seg.end_seq
            timeline.segments.append(
                SegmentStep(
                    number=len(timeline.segments) + 1,
                    time=record.time,
                    side=side,
                    conn=conn,
                    segment=seg,
                    fate=fate,
                    arrival=arrival,
                    seq=_relative(seg.seq, seq_base),
                    ack=_relative(seg.ack, ack_base),
                    retransmission=retrans,
                    keepalive_probe=probe,
                    order=index,
                )
            )
        elif kind == TraceKind.STATE:
            before = str(record.data["from"])
            after = str(record.data["to"])
            timeline.states.append(
                StateChange(
                    record.time,
                    side,
                    conn,
                    before,
                    after,
                    str(record.data["trigger"]),
                    index,
                )
            )
            if after == "CLOSED":
                for key in [k for k in open_timers if k[0] == conn]:
                    outcome = "fired" if key[1] == "time_wait" else "closed"
                    close_timer(key, record.time, outcome)
            else:
                # A timer that belongs to one state ends when its connection leaves it.
                own = _STATE_TIMERS.get(before)
                if own is not None and (conn, own) in open_timers:
                    fired = record.data["trigger"] in ("TIMEOUT_2MSL", "TIMEOUT_FIN_WAIT_2")
                    close_timer((conn, own), record.time, "fired" if fired else "cleared")
        elif kind == TraceKind.TIMER_ARMED:
            key = (conn, str(record.data.get("timer")))
            if key in open_timers:
                close_timer(key, record.time, "rearmed")
            deadline = record.data.get("deadline")
            open_timers[key] = (record.time, deadline if isinstance(deadline, int) else None, index)
        elif kind in (TraceKind.TIMER_FIRED, TraceKind.TIMER_CANCELLED):
            key = (conn, str(record.data.get("timer")))
            if key in open_timers:
                outcome = "fired" if kind == TraceKind.TIMER_FIRED else "cancelled"
                close_timer(key, record.time, outcome)
        elif kind == TraceKind.USER:
            call = str(record.data.get("call", "?"))
            timeline.marks.append(Mark(record.time, side, "call", f"{call}()", index))
    for time, side, text in story.notes:
        timeline.marks.append(Mark(time, side, "note", text, len(records)))
    timeline.marks.sort(key=lambda m: (m.time, m.order))
    last = max(
        [story.now, *(r.time for r in records), *(m.time for m in timeline.marks)], default=0
    )
    timeline.end_time = last
    for key in list(open_timers):
        close_timer(key, last, "running")
    timeline.timers.sort(key=lambda t: (t.start, t.order))
    return timeline


class RunLike(Protocol):
    """What a picture needs of a run (tcpstack.scenarios.catalog.ScenarioRun has it)."""

    @property
    def story(self) -> Story: ...

    @property
    def client(self) -> Connection | None: ...

    @property
    def server(self) -> Connection | None: ...


def timeline_of_run(run: RunLike) -> Timeline:
    """The Timeline of a ScenarioRun."""
    return build_timeline(run.story, run.client, run.server)


def _relative(value: int, base: int) -> int:
    return seq_sub(value, base)


def _match_arrival(
    candidates: Iterable[tuple[int, tuple[int, int, int, int], int]],
    seg: Segment,
    sent: int,
    used: set[int],
) -> int | None:
    key = _segment_key(seg)
    for time, other, index in candidates:
        if time >= sent and other == key and index not in used:
            used.add(index)
            return time
    return None


def _title(role: str, conn: Connection | None, story: Story, side: int) -> str:
    from tcpstack.scenarios.story import CLIENT_IP, SERVER_IP

    if conn is None:
        return f"{role} {CLIENT_IP if side == LEFT else SERVER_IP}"
    return f"{role} {conn.local_ip}:{conn.local_port}"


__all__ = [
    "SIDE_NAMES",
    "TIMER_NAMES",
    "Mark",
    "ReplayStep",
    "RunLike",
    "SegmentStep",
    "StateChange",
    "Timeline",
    "TimerSpan",
    "build_timeline",
    "conn_label",
    "incarnation_keys",
    "timeline_of_run",
    "timer_name",
    "timer_tag",
]
