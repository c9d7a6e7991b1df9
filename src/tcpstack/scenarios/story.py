"""The stage for the seed's stories: two hosts, one simulated link, one trace.

A Story puts a client and a server Endpoint on a deterministic simulated network, lets a
scenario script their applications (connect, send, close, react to events), and turns
the run's trace into a ladder diagram and the state path of each connection.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tcpstack.core.config import Config
from tcpstack.core.connection import Connection, FourTuple
from tcpstack.core.endpoint import Endpoint
from tcpstack.core.events import Event
from tcpstack.core.segment import Datagram, Segment
from tcpstack.core.state import State
from tcpstack.core.trace import TraceCollector, TraceKind
from tcpstack.sim import LinkParams, NetRecord, Network, What
from tcpstack.viz.ladder import LEFT, RIGHT, LadderEvent, SideInfo, render_text

CLIENT_IP = "10.0.0.1"
SERVER_IP = "10.0.0.2"
MS = 1_000
SECOND = 1_000_000

Reaction = Callable[[Connection, Event, int], None]

# Told about every Story once its network is built (see watch_stories).
_WATCHERS: list[Callable[[Story], None]] = []


@contextmanager
def watch_stories(watcher: Callable[[Story], None]) -> Iterator[None]:
    """While in the block, call watcher(story) for each Story built, once its network
    exists (a subclass that replaces the network announces again). `tcpstack ss --at`
    uses it to add a node to a scenario's network that stops the clock to look."""
    _WATCHERS.append(watcher)
    try:
        yield
    finally:
        _WATCHERS.remove(watcher)


def simulation_isn(four_tuple: FourTuple, now: int) -> int:
    """A deterministic ISN for simulations: a hash of the 4-tuple plus a clock that
    ticks every 4 µs (the shape of RFC 6528, without its secret key)."""
    return (zlib.crc32(repr(four_tuple).encode()) + now // 4) & 0xFFFFFFFF


class Host:
    """A simulated host: a TCP Endpoint plus its applications' reactions to events.

    After every delivery and timer the host drains the events of the connections that
    moved and runs the reactions at once, before the network collects what the stack
    wants to send, as an event-driven application would.
    """

    def __init__(self, name: str, endpoint: Endpoint) -> None:
        self.name = name
        self.endpoint = endpoint
        self.address = endpoint.address
        self.reactions: dict[Connection, list[Reaction]] = {}
        self.on_accept: dict[int, Callable[[Connection, int], None]] = {}
        self.event_log: list[tuple[int, Connection, Event]] = []
        self.accepted: list[Connection] = []

    # The Node interface of tcpstack.sim.
    def datagrams_to_send(self, *, now: int) -> list[Datagram]:
        self.react(now)
        return self.endpoint.datagrams_to_send(now=now)

    def receive_datagram(self, datagram: Datagram, *, now: int) -> None:
        self.endpoint.receive_datagram(datagram, now=now)
        self.react(now)

    def receive_bytes(self, src: str, dst: str, data: bytes, *, now: int) -> None:
        self.endpoint.receive_bytes(src, dst, data, now=now)
        self.react(now)

    def next_timer(self) -> int | None:
        return self.endpoint.next_timer()

    def handle_timer(self, *, now: int) -> None:
        self.endpoint.handle_timer(now=now)
        self.react(now)

    def react(self, now: int) -> None:
        """Accept waiting connections and hand every new event to its reactions."""
        for port, on_accept in self.on_accept.items():
            while (child := self.endpoint.accept(port)) is not None:
                self.accepted.append(child)
                on_accept(child, now)
        for conn in self.endpoint.woken_connections():
            while (event := conn.next_event()) is not None:
                self.event_log.append((now, conn, event))
                for reaction in self.reactions.get(conn, ()):
                    reaction(conn, event, now)

    def on(self, conn: Connection, reaction: Reaction) -> None:
        self.reactions.setdefault(conn, []).append(reaction)

    def events_of(self, conn: Connection) -> list[Event]:
        return [event for _, c, event in self.event_log if c is conn]


@dataclass
class Story:
    """Two hosts on one link; the scenario scripts them through the methods below."""

    seed: int = 0
    link: LinkParams = field(default_factory=lambda: LinkParams(delay=10 * MS))
    client_config: Config = field(default_factory=Config)
    server_config: Config = field(default_factory=Config)

    def __post_init__(self) -> None:
        self.trace = TraceCollector()
        self.network = Network(seed=self.seed, wire=True)
        self.client = Host(
            "client",
            Endpoint(
                CLIENT_IP,
                isn_generator=simulation_isn,
                config=self.client_config,
                tracer=self.trace,
            ),
        )
        self.server = Host(
            "server",
            Endpoint(
                SERVER_IP,
                isn_generator=simulation_isn,
                config=self.server_config,
                tracer=self.trace,
            ),
        )
        self.network.add_node(self.client)
        self.network.add_node(self.server)
        self.network.link_direction(CLIENT_IP, SERVER_IP, self.link)
        self.network.link_direction(SERVER_IP, CLIENT_IP, self.link)
        self.lost: dict[int, str] = {}  # id(segment) -> what happened to it
        # Everything the network reported, in order (pcap captures and pictures read it),
        # and for each record how many trace records existed then (to interleave the two).
        self.net_records: list[NetRecord] = []
        self.net_positions: list[int] = []
        self.network.add_observer(self._observe)
        self.notes: list[tuple[int, int, str]] = []  # (time, side, text)
        self.announce()

    def announce(self) -> None:
        """Tell the watchers of watch_stories() that this story's network is ready."""
        for watcher in list(_WATCHERS):
            watcher(self)

    # -- scripting -----------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.network.now

    def listen(
        self, port: int = 80, on_accept: Callable[[Connection, int], None] | None = None
    ) -> None:
        self.server.endpoint.listen(port, now=self.now)
        self.server.on_accept[port] = on_accept if on_accept is not None else _ignore

    def connect(self, port: int = 80, *, local_port: int | None = None) -> Connection:
        return self.client.endpoint.connect(SERVER_IP, port, now=self.now, local_port=local_port)

    def run_for(self, duration: int) -> None:
        self.network.run_for(duration)

    def run_until(self, predicate: Callable[[], bool], limit: int) -> bool:
        return self.network.run_until(predicate, limit=self.now + limit)

    def note(self, side: int, text: str) -> None:
        self.notes.append((self.now, side, text))

    def _observe(self, record: NetRecord) -> None:
        self.net_records.append(record)
        self.net_positions.append(len(self.trace.records))
        if record.what in (What.LOST, What.FILTERED, What.QUEUE_DROP, What.CORRUPTED):
            self.lost[id(record.datagram.segment)] = str(record.what)

    # -- reading the run -----------------------------------------------------------

    def side_of(self, label: str) -> int:
        return LEFT if label.startswith(CLIENT_IP + ":") or label == CLIENT_IP else RIGHT

    def ladder_events(self) -> list[LadderEvent]:
        events: list[LadderEvent] = []
        for record in self.trace.records:
            side = self.side_of(record.conn)
            if record.kind == TraceKind.SEGMENT_OUT and record.segment is not None:
                seg: Segment = record.segment
                events.append(
                    LadderEvent(record.time, side, "send", segment=seg, lost=id(seg) in self.lost)
                )
            elif record.kind == TraceKind.STATE:
                text = f"{record.data['from']} -> {record.data['to']}"
                events.append(LadderEvent(record.time, side, "state", text))
            elif record.kind == TraceKind.USER:
                events.append(LadderEvent(record.time, side, "call", f"{record.data['call']}()"))
        for time, side, text in self.notes:
            events.append(LadderEvent(time, side, "note", text))
        events.sort(key=lambda e: e.time)  # stable: same-time events keep trace order
        return events

    def ladder(self, client: Connection | None, server: Connection | None) -> str:
        left = SideInfo(_title("client", client, CLIENT_IP))
        right = SideInfo(_title("server", server, SERVER_IP))
        return render_text(self.ladder_events(), left, right)


def _title(role: str, conn: Connection | None, address: str) -> str:
    if conn is None:
        return f"{role} {address}"
    return f"{role} {conn.local_ip}:{conn.local_port}"


def _ignore(conn: Connection, now: int) -> None:
    return None


def path_names(conn: Connection) -> list[str]:
    """A connection's state path as RFC names, e.g. ['CLOSED', 'SYN_SENT', ...]."""
    return [state.value for state in conn.state_history]


__all__ = [
    "CLIENT_IP",
    "MS",
    "SECOND",
    "SERVER_IP",
    "Host",
    "State",
    "Story",
    "path_names",
    "simulation_isn",
    "watch_stories",
]
